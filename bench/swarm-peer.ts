/**
 * One peer of the `swarm` benchmark (bench/swarm.ts), in its own process, driven by JSON lines on
 * stdin and answering with JSON lines on stdout:
 *
 * - at launch it opens its database and says `{"type":"loaded"}` (the parent launches every peer
 *   at once, so their slow module loading overlaps, and starts them one by one afterwards);
 * - `{"cmd":"start","bootstrap":[…]}`: starts replicating on 127.0.0.1 (TCP, port 0, no mDNS),
 *   answers `ready` with its peer id and address; from then on it says `conn` whenever its number
 *   of connections changes;
 * - `{"cmd":"go","events":100,"target":…,"others":[…],"deadline":…}`: appends its events one by
 *   one; says `appended` when they are written and `converged` when it holds `target` events; then
 *   waits for `syncedWith` of every other peer (until `deadline`, wall-clock ms) and says `synced`
 *   (or `sync-failed` with the peers still pending);
 * - `idle-start` / `idle-end`: the CPU time, RSS, connections and gossip received in between;
 * - `envelope`: the mean size of its stored envelopes and payloads (`db.messages()`);
 * - `stop`: stops the replicator, closes the database, says `stopped` and exits.
 *
 * Times are wall-clock ms with sub-ms precision (`performance.timeOrigin + performance.now()`),
 * comparable between the processes of one machine.
 *
 * Usage: swarm-peer.ts <dir> <topic> <index> [statusIntervalMs]
 */
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { Database, s } from '../src/index.js';
import { decodeFrame, FrameType } from '../src/net/frames.js';
import { Libp2pLink, LOOPBACK_NETWORKS } from '../src/net/libp2p-link.js';
import type { Session } from '../src/net/link.js';
import { Replicator } from '../src/net/replicator.js';
import { seeded } from './harness.js';

/** The event: author, sequence number and ~94 characters of text, so the payload is ~100 bytes. */
export type SwarmEvent = [peer: number, seq: number, text: string];
const Root = s.object({ written: s.map(s.u32(), s.u32()) });
const TEXT_CHARS = 94;
const ALPHABET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';

function wallMs(): number {
  return performance.timeOrigin + performance.now();
}

function say(message: object): void {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

const [dir, topic, indexArg, statusArg] = process.argv.slice(2) as [string, string, string, string?];
const index = Number(indexArg);
const db = await Database.open<SwarmEvent, typeof Root>({
  path: path.join(dir, 'db'),
  root: Root,
  // Every event writes its own key, so none is ever overwritten, hence none is pruned.
  apply([peer, seq, text], root) {
    root.written.set(peer * 1_000_000 + seq, text.length);
  },
});

let stored = 0;
let target = Number.POSITIVE_INFINITY;
let convergedAt: number | undefined;
let onConverged: (() => void) | undefined;
db.subscribe({
  stored: (events) => {
    stored += events.length;
    if (convergedAt === undefined && stored >= target) {
      convergedAt = wallMs();
      // Not from inside the engine's commit.
      setImmediate(() => onConverged?.());
    }
  },
});

say({ type: 'loaded' });

let link: Libp2pLink | undefined;
let replicator: Replicator | undefined;
let disconnects = 0;
/** Wall-clock ms of every lost connection, and the replicator's `failure` reasons. */
const disconnectedAt: number[] = [];
const failures: string[] = [];
const gossip = { status: 0, statusBytes: 0, events: 0, eventBytes: 0 };
let idleStart: { cpu: NodeJS.CpuUsage; at: number; gossip: typeof gossip; sessions: number; disconnects: number } | undefined;

/**
 * Frames we sent, by channel and frame type, with their bytes (our frames only: libp2p's framing
 * around them is what the kernel's counters add), from the `go` command to convergence.
 */
const sentFrames = new Map<string, { count: number; bytes: number }>();
let countFrames = false;
function countFrame(channel: string, frame: Uint8Array): void {
  if (!countFrames) return;
  const key = `${channel}:${FRAME_NAMES[frame[0]!] ?? frame[0]}`;
  const entry = sentFrames.get(key);
  if (entry === undefined) sentFrames.set(key, { count: 1, bytes: frame.length });
  else {
    entry.count++;
    entry.bytes += frame.length;
  }
}
const FRAME_NAMES: Record<number, string> = Object.fromEntries(Object.entries(FrameType).map(([name, type]) => [type, name]));

/** Counts what a session sends. */
function counted(session: Session): Session {
  const send = session.send.bind(session);
  session.send = (frame: Uint8Array) => {
    countFrame('session', frame);
    return send(frame);
  };
  return session;
}

function sessions(): number {
  return (replicator?.peers() ?? []).reduce((sum, peer) => sum + peer.sessions, 0);
}

async function start(bootstrap: string[]): Promise<void> {
  const options = {
    listen: ['/ip4/127.0.0.1/tcp/0'],
    bootstrap,
    topic,
    mdns: false,
    // Many peers on one address: without this, the per-address limits (8 connections, 5 new ones a
    // second) would refuse connections that peers on their own hosts would make.
    trustedNetworks: LOOPBACK_NETWORKS,
    ...(statusArg === undefined ? {} : { statusIntervalMs: Number(statusArg) }),
  };
  // What Replicator.start does, keeping the link to count connections and gossip.
  const started = await Libp2pLink.start(options);
  link = started;
  // Counting what we send: direct frames, gossip and session frames.
  const sendDirect = started.sendDirect.bind(started);
  started.sendDirect = (peerId: string, frame: Uint8Array) => {
    countFrame('direct', frame);
    return sendDirect(peerId, frame);
  };
  const publish = started.publish.bind(started);
  started.publish = (frame: Uint8Array) => {
    countFrame('gossip', frame);
    publish(frame);
  };
  const openSession = started.openSession.bind(started);
  started.openSession = async (peerId: string) => counted(await openSession(peerId));
  const onSession = started.onSession.bind(started);
  started.onSession = (handler: (session: Session) => void) => onSession((session) => handler(counted(session)));
  started.onPeer((event) => {
    if (event === 'disconnect') {
      disconnects++;
      disconnectedAt.push(wallMs());
    }
    say({ type: 'conn', connections: started.connectedPeers().length });
  });
  started.onGossip((_from, frame) => {
    try {
      const decoded = decodeFrame(frame);
      // (Statuses for neighbours only are taken by the replicator's validator, before this.)
      if (decoded.type === FrameType.STATUS || decoded.type === FrameType.PEER_STATUS) {
        gossip.status++;
        gossip.statusBytes += frame.length;
      } else if (decoded.type === FrameType.EVENT || decoded.type === FrameType.EVENTS) {
        gossip.events += decoded.type === FrameType.EVENT ? 1 : decoded.envelopes.length;
        gossip.eventBytes += frame.length;
      }
    } catch {
      // The replicator's validator deals with it.
    }
  });
  replicator = new Replicator(db, started, options);
  replicator.addEventListener('failure', (event) => {
    if (failures.length < 20) failures.push((event as CustomEvent<{ reason: string }>).detail.reason);
  });
  say({ type: 'ready', peerId: replicator.peerId, multiaddr: replicator.multiaddrs[0] });
}

async function go(command: { events: number; target: number; others: string[]; deadline: number }): Promise<void> {
  const node = replicator!;
  const random = seeded(index + 1);
  const startedAt = wallMs();
  const converged = new Promise<void>((resolve) => {
    onConverged = resolve;
  });
  target = command.target;
  countFrames = true;
  if (stored >= target) {
    convergedAt = wallMs();
    onConverged?.();
  }
  for (let seq = 0; seq < command.events; seq++) {
    let text = '';
    for (let i = 0; i < TEXT_CHARS; i++) text += ALPHABET[Math.floor(random() * ALPHABET.length)];
    await db.append([index, seq, text]);
  }
  say({ type: 'appended', startedAt, at: wallMs() });
  await converged;
  countFrames = false;
  say({ type: 'converged', at: convergedAt, stored: db.stats().stored, frames: Object.fromEntries(sentFrames), relay: node.relayStats() });
  const pending = new Set(command.others);
  const signal = AbortSignal.timeout(Math.max(1, command.deadline - Date.now()));
  const results = await Promise.allSettled(
    command.others.map((peerId) => node.syncedWith(peerId, { signal }).then(() => void pending.delete(peerId))),
  );
  if (results.every((r) => r.status === 'fulfilled')) say({ type: 'synced', at: wallMs() });
  else say({ type: 'sync-failed', at: wallMs(), pending: [...pending] });
}

function envelope(): object {
  let count = 0;
  let bytes = 0;
  let payload = 0;
  for (const message of db.messages()) {
    count++;
    bytes += message.bytes.length;
    payload += message.payload.length;
  }
  return { type: 'envelope', count, meanBytes: bytes / count, meanPayload: payload / count };
}

for await (const line of createInterface({ input: process.stdin })) {
  const command = JSON.parse(line) as { cmd: string } & Record<string, unknown>;
  if (command.cmd === 'start') await start(command.bootstrap as string[]);
  else if (command.cmd === 'go') void go(command as never);
  else if (command.cmd === 'idle-start') {
    idleStart = { cpu: process.cpuUsage(), at: wallMs(), gossip: { ...gossip }, sessions: sessions(), disconnects };
    say({ type: 'idle-started' });
  } else if (command.cmd === 'idle-end') {
    const begun = idleStart!;
    const cpu = process.cpuUsage(begun.cpu);
    say({
      type: 'idle',
      cpuMicros: cpu.user + cpu.system,
      ms: wallMs() - begun.at,
      rss: process.memoryUsage().rss,
      peakRss: process.resourceUsage().maxRSS * 1024,
      connections: link!.connectedPeers().length,
      stored: db.stats().stored,
      statusReceived: gossip.status - begun.gossip.status,
      statusBytes: gossip.statusBytes - begun.gossip.statusBytes,
      eventsReceived: gossip.events - begun.gossip.events,
      sessions: sessions() - begun.sessions,
      disconnects: disconnects - begun.disconnects,
      disconnectsTotal: disconnects,
      disconnectedAt,
      failures,
      states: replicator!.peers().map((peer) => peer.state),
    });
  } else if (command.cmd === 'envelope') say(envelope());
  else if (command.cmd === 'stop') break;
}
await replicator?.stop();
await db.close();
say({ type: 'stopped' });
process.exit(0);
