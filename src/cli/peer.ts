/**
 * `noatun peer`: runs one peer of an app until it is stopped (Ctrl-C, SIGTERM). It opens the
 * database (showing a progress bar when the view is rebuilt), joins the swarm, and prints one line
 * per thing that happened: addresses, peers connecting, syncing and leaving, and the count of
 * stored events as it changes. Everything it prints is line-oriented, so scripts and tests can
 * follow it through a pipe.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { AnyApp } from '../core/app.js';
import { Database } from '../core/database.js';
import { ErrorCode, NoatunError, systemErrorFrom } from '../errors.js';
import { checkAddress, checkLinkOptions, checkSwarmKey, loadOrCreatePrivateKey } from '../net/libp2p-link.js';
import { type BootstrapUnreachable, type PeerInfo, Replicator, type ReplicatorEvent } from '../net/replicator.js';
import { loadApp, recordedAppName, writeAppRecord } from './app-module.js';
import { type InspectorHandle, startInspector } from './inspector/server.js';
import { openingProgress, type Progress, progress } from './progress.js';
import { type StopSignal, stopSignal } from './signals.js';

/** The options of `noatun peer` (as the command line gives them). */
export interface PeerCommandOptions {
  /** The app module. */
  readonly app: string;
  /** The database directory (created if missing). */
  readonly db: string;
  /** Multiaddrs, or bare port numbers meaning 127.0.0.1 (default: 127.0.0.1, any port). */
  readonly listen: readonly string[];
  readonly bootstrap: readonly string[];
  readonly mdns: boolean;
  /** A private swarm key file (swarm.key format). */
  readonly pskFile?: string;
  /** Peer ids allowed to connect (everyone when empty). */
  readonly allow: readonly string[];
  /** The swarm's name (default: the app's name). */
  readonly topic?: string;
  /** Serve the inspector on this port of 127.0.0.1. */
  readonly inspect?: number;
}

/** The file in the database directory that keeps the peer's identity, so its peer id survives restarts. */
export const PEER_KEY_FILE = 'peer.key';

/** An initial copy shows a progress bar once a peer owes us at least this many events. */
const BAR_THRESHOLD = 1000;

/** A bare port number means the loopback interface: a peer stays on this machine unless told otherwise. */
export function listenAddress(value: string): string {
  const address = /^\d+$/.test(value) ? `/ip4/127.0.0.1/tcp/${value}` : value;
  checkAddress(address);
  return address;
}

/** The first characters of a peer id and its last six, enough to tell peers apart in a line. */
export function shortPeerId(peerId: string): string {
  return peerId.length <= 16 ? peerId : `${peerId.slice(0, 6)}…${peerId.slice(-6)}`;
}

/** A line's part at most `limit` characters long (a peer's error can quote whole frames). */
function shorten(text: string, limit = 200): string {
  return text.length <= limit ? text : `${text.slice(0, limit - 1)}…`;
}

/** Reads and checks the private swarm key in `file`. */
function readSwarmKey(file: string): Uint8Array {
  let bytes: Uint8Array;
  try {
    bytes = fs.readFileSync(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new NoatunError(ErrorCode.NOT_FOUND, `no swarm key file at ${file}`);
    if (code === 'EISDIR') throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `${file} is a directory, not a swarm key file`);
    throw systemErrorFrom(error, 'read', file);
  }
  try {
    checkSwarmKey(bytes);
  } catch (error) {
    throw new NoatunError(ErrorCode.KEY_INVALID, `${file}: ${(error as Error).message}`);
  }
  return bytes;
}

/**
 * Starts the peer and resolves once it has stopped again, cleanly, after SIGINT or SIGTERM (also
 * one that came while it was starting). Failures to start reject with a `NoatunError` and leave
 * nothing open.
 */
export async function runPeer(options: PeerCommandOptions, out: NodeJS.WritableStream = process.stdout): Promise<void> {
  const say = (line: string) => out.write(`${line}\n`);
  const stop = stopSignal();
  try {
    return await serve(options, say, stop);
  } finally {
    stop.dispose();
  }
}

/** {@link runPeer} once the stop signals are caught: open, join, report until `stop`, close. */
async function serve(options: PeerCommandOptions, say: (line: string) => void, stop: StopSignal): Promise<void> {
  const app: AnyApp = await loadApp(options.app);
  // Another app's database would be taken over: its view rebuilt with this app's schema and its
  // events offered to this app's swarm.
  const recordedName = recordedAppName(options.db);
  if (recordedName !== undefined && recordedName !== app.name) {
    throw new NoatunError(
      ErrorCode.APP_INVALID,
      `${options.db} holds the database of the app ${JSON.stringify(recordedName)}, and ${options.app} is the app ${JSON.stringify(app.name)}: pass the module of ${JSON.stringify(recordedName)}, or another --db`,
    );
  }
  const psk = options.pskFile === undefined ? undefined : readSwarmKey(options.pskFile);
  // Checked before the open: a bad address, peer id or topic must not leave a database directory behind.
  const listen = options.listen.length === 0 ? ['/ip4/127.0.0.1/tcp/0'] : options.listen.map(listenAddress);
  const link = {
    listen,
    bootstrap: options.bootstrap,
    mdns: options.mdns,
    topic: options.topic ?? app.name,
    ...(psk === undefined ? {} : { psk }),
    ...(options.allow.length === 0 ? {} : { allowPeers: options.allow }),
  };
  checkLinkOptions(link);
  // A start refused later (a busy port) must not leave a new database behind either: one this
  // command made is removed again then.
  const made = !fs.existsSync(options.db);
  const opening = openingProgress();
  const db = await Database.open({
    ...app,
    path: options.db,
    onProgress: opening.onProgress,
  }).catch((error: unknown) => {
    if (error instanceof NoatunError && error.code === ErrorCode.DATABASE_LOCKED) {
      throw new NoatunError(error.code, `${error.message}: is a peer already running on it? (one process per database)`);
    }
    throw error;
  });
  opening.stop();

  let replicator: Replicator | undefined;
  let inspector: InspectorHandle | undefined;
  try {
    writeAppRecord(options.db, options.app, app);
    const privateKey = await loadOrCreatePrivateKey(path.join(options.db, PEER_KEY_FILE));
    replicator = await Replicator.start(db, {
      ...link,
      privateKey,
    });
    if (options.inspect !== undefined) {
      inspector = await startInspector({ db, replicator, port: options.inspect, ...(app.codec === undefined ? {} : { codec: app.codec }) });
    }
  } catch (error) {
    await inspector?.close();
    await replicator?.stop();
    await db.close();
    if (made) fs.rmSync(options.db, { recursive: true, force: true });
    throw error;
  }

  const stats = db.stats();
  say(`noatun peer: app ${app.name}, database ${options.db} (${stats.stored} events, opened by ${stats.openedBy})`);
  say(`peer id ${replicator.peerId}`);
  for (const address of replicator.multiaddrs) say(`listening on ${address}`);
  say(`swarm ${options.topic ?? app.name}${psk === undefined ? '' : ' (private)'}${options.mdns ? ', mDNS on' : ''}`);
  if (inspector !== undefined) say(`inspector on ${inspector.url}`);

  const node = replicator;
  const peerLine = (event: Event, what: string) => {
    const { peerId, reason } = (event as ReplicatorEvent).detail;
    const info = node.peers().find((peer) => peer.peerId === peerId);
    let line = `peer ${shortPeerId(peerId)} ${what}`;
    if (what === 'synced') line += ` (${info?.received ?? 0} received, ${info?.sent ?? 0} sent; ${db.stats().stored} events here)`;
    if (reason !== undefined) line += `: ${reason}`;
    say(line);
  };
  // Events stored from each peer when it connected: a copy's progress counts from there.
  const storedAtConnect = new Map<string, number>();
  node.addEventListener('peer:connect', (event) => {
    const { peerId } = (event as ReplicatorEvent).detail;
    storedAtConnect.set(peerId, node.peers().find((peer) => peer.peerId === peerId)?.stored ?? 0);
    peerLine(event, 'connected');
  });
  node.addEventListener('peer:synced', (event) => peerLine(event, 'synced'));
  node.addEventListener('peer:disconnect', (event) => peerLine(event, 'disconnected'));
  node.addEventListener('peer:refused', (event) => peerLine(event, 'refused'));
  // A wrong bootstrap address or swarm key would otherwise show as nothing at all.
  node.addEventListener('bootstrap:unreachable', (event) => {
    const { address, reason } = (event as BootstrapUnreachable).detail;
    say(`bootstrap ${address} unreachable: ${shorten(reason)} (retrying; is that peer up, with the same --psk-file?)`);
  });

  // The count of stored events, printed at most every 250 ms while it changes, and the progress
  // of initial copies (a peer that owes us many events), looked at every 100 ms: a copy of tens of
  // thousands of events takes well under a second.
  let shown = stats.stored;
  let shownAt = 0;
  const copies = new Map<string, CopyProgress>();
  const tick = setInterval(() => {
    const stored = db.stats().stored;
    if (stored !== shown && Date.now() - shownAt >= 250) {
      shown = stored;
      shownAt = Date.now();
      say(`events: ${stored} stored`);
    }
    trackCopies(node.peers(), copies, storedAtConnect);
  }, 100);

  await stop.stopped;
  clearInterval(tick);
  for (const { bar } of copies.values()) bar.stop();
  say('stopping');
  await inspector?.close();
  await node.stop();
  await db.close();
  say('stopped');
}

/** A copy's progress bar, and how many of the peer's events we had stored before it started. */
interface CopyProgress {
  readonly bar: Progress;
  readonly base: number;
  total: number;
}

/**
 * Starts, advances and ends the progress bars of initial copies. Done is what we stored of the
 * peer's events since it connected (the bar may first be seen part-way through a copy); the total
 * is that plus what it still owes us (`expecting` counts down as its events are stored).
 */
function trackCopies(peers: readonly PeerInfo[], copies: Map<string, CopyProgress>, storedAtConnect: ReadonlyMap<string, number>): void {
  for (const peer of peers) {
    let copy = copies.get(peer.peerId);
    if (copy === undefined) {
      if (peer.expecting < BAR_THRESHOLD) continue;
      const base = storedAtConnect.get(peer.peerId) ?? peer.stored;
      copy = { bar: progress(`copying from ${shortPeerId(peer.peerId)}`), base, total: 0 };
      copies.set(peer.peerId, copy);
    }
    const done = Math.max(0, peer.stored - copy.base);
    copy.total = Math.max(copy.total, done + peer.expecting);
    copy.bar.update(Math.min(done, copy.total), copy.total);
    if (peer.expecting === 0) {
      copy.bar.stop();
      copies.delete(peer.peerId);
    }
  }
}
