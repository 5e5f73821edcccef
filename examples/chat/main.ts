/**
 * A terminal chat peer: every peer keeps the whole conversation in its own Noatun database,
 * writes while offline, and catches up with the others over libp2p when it can.
 *
 * Run (from the repository): npm start -- [options]   (npm start is node --import=tsx examples/chat/main.ts)
 *
 *   --name <nick>             your name in the chat (default: $USER, else anonymous)
 *   --db <dir>                database directory (default: data/chat); one running peer per directory
 *   --listen <addr|port>      listen on a multiaddr, or on 127.0.0.1 at a port number (repeatable);
 *                             turns the loopback discovery off
 *   --bootstrap <addr>        connect to a peer's multiaddr (repeatable)
 *   --topic <name>            swarm name (default: chat)
 *   --mdns                    also discover peers on the LAN by multicast DNS (off unless given)
 *   --discover-ports <a-b>    the loopback discovery's port range (default: 4101-4108)
 *
 * Type a line to say it. `/peers` lists the connected peers, `/quit` (or Ctrl-D, Ctrl-C) leaves.
 *
 * Without --listen, peers on one machine find each other with no address to copy: each listens on
 * 127.0.0.1 at the first free port of a small range and dials the others in the range every few
 * seconds. No multicast is involved, so nothing leaves the machine. A dial needs no peer id (the
 * Noise handshake authenticates whoever answers), so no file has to pass addresses around.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { parseArgs } from 'node:util';
import { ErrorCode, type MessageId, NoatunError } from 'noatun';
import { loadOrCreatePrivateKey, Replicator, type ReplicatorEvent } from 'noatun/net';
import { type ChatDb, type ChatMessage, history, MAX_NAME_LENGTH, MAX_TEXT_LENGTH, messagesWithIds, openChat } from './app.js';

const USAGE =
  'usage: npm start -- [--name nick] [--db dir] [--listen addr|port]... [--bootstrap addr]... [--topic name] [--mdns] [--discover-ports from-to]';

/** The loopback discovery's ports: eight peers on one machine need no configuration. */
const DEFAULT_PORTS = '4101-4108';

/** How often the loopback discovery dials the ports of the range that have no connected peer. */
const RESCAN_MS = 2000;

/** The file in the database directory that keeps the peer's identity (the name `noatun peer` uses too). */
const PEER_KEY_FILE = 'peer.key';

/** The exit status for wrong usage and a database already in use. */
const EXIT_USAGE = 2;

/** Writes one line to stdout. Writes to pipes and terminals are synchronous on Linux, so a reader sees each line at once. */
function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** A bare port number means the loopback interface: a peer stays on this machine unless told otherwise. */
function listenAddress(value: string): string {
  return /^\d+$/.test(value) ? `/ip4/127.0.0.1/tcp/${value}` : value;
}

/** The ports of a range such as `4101-4108` (or one port), or undefined if it is not one. */
function portRange(value: string): number[] | undefined {
  const match = /^(\d+)(?:-(\d+))?$/.exec(value);
  if (match === null) return undefined;
  const from = Number(match[1]);
  const to = Number(match[2] ?? match[1]);
  if (from < 1 || to > 65535 || from > to || to - from >= 64) return undefined;
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

/** The tail of a peer id: its first characters are the same for every Ed25519 key. */
function shortId(peerId: string): string {
  return peerId.slice(-8);
}

/** HH:MM:SS in local time. */
function clock(time: number): string {
  const date = new Date(time);
  return [date.getHours(), date.getMinutes(), date.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
}

/** Text from other peers with its control characters replaced, so nobody can drive your terminal with escape codes. */
function printable(text: string): string {
  let out = '';
  for (const char of text) {
    const code = char.codePointAt(0)!;
    out += code < 0x20 || (code >= 0x7f && code < 0xa0) ? '\uFFFD' : char;
  }
  return out;
}

/**
 * The command that starts another peer beside the one on `db`: its own database directory (one
 * process per database, so following the hint must not hit the lock) and, when `name` is a
 * running peer's, another name.
 */
function secondPeer(db: string, name?: string): string {
  const other = ['bob', 'carol', 'dave'].find((nick) => nick !== name && path.resolve('data', nick) !== path.resolve(db))!;
  return `npm start -- --name ${other} --db data/${other}`;
}

/** Prints an error line and gives the exit status for it. */
/** The app named by `app.json` in `directory` (left there by `noatun peer`), if any. */
function recordedApp(directory: string): string | undefined {
  try {
    const record = JSON.parse(fs.readFileSync(path.join(directory, 'app.json'), 'utf8')) as { name?: unknown };
    return typeof record.name === 'string' ? record.name : undefined;
  } catch {
    return undefined;
  }
}

function fail(message: string): number {
  process.stderr.write(`chat: ${message}\n`);
  return EXIT_USAGE;
}

/** The command line, parsed; throws a `TypeError` for an unknown option or a missing value. */
function parseOptions() {
  return parseArgs({
    options: {
      name: { type: 'string' },
      db: { type: 'string', default: 'data/chat' },
      listen: { type: 'string', multiple: true },
      bootstrap: { type: 'string', multiple: true },
      topic: { type: 'string', default: 'chat' },
      mdns: { type: 'boolean', default: false },
      'discover-ports': { type: 'string', default: DEFAULT_PORTS },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }).values;
}

type Options = ReturnType<typeof parseOptions>;

async function main(): Promise<number> {
  let values: Options;
  try {
    values = parseOptions();
  } catch (error) {
    return fail(`${(error as Error).message}\n${USAGE}`);
  }
  if (values.help) {
    say(USAGE);
    return 0;
  }
  const name = (values.name ?? process.env.USER ?? 'anonymous').trim();
  if (name === '' || name.length > MAX_NAME_LENGTH) return fail(`--name must be 1 to ${MAX_NAME_LENGTH} characters`);
  const ports = portRange(values['discover-ports']);
  if (ports === undefined) return fail(`--discover-ports must be a port or a range of at most 64 ports, like ${DEFAULT_PORTS}`);

  // Signals are caught from the start: whoever read our address may stop us at once, and the
  // default action would kill the process with the database open. A signal during start-up is
  // acted on once the chat is up.
  const leave = new AbortController();
  const onSignal = (): void => leave.abort();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await runChat(values, name, ports, leave);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/**
 * Runs the peer until `leave` aborts (a signal, `/quit`, the end of input) and closes everything;
 * resolves with the exit status.
 */
async function runChat(values: Options, name: string, ports: readonly number[], leave: AbortController): Promise<number> {
  // A database `noatun peer` ran another app on (its app.json says which) is not the chat's: the
  // open would rebuild its view with the chat's schema and offer its events to the chat's swarm.
  const recorded = recordedApp(values.db);
  if (recorded !== undefined && recorded !== 'chat') {
    return fail(`${values.db} holds the database of the app ${JSON.stringify(recorded)}, not the chat's; pass another --db`);
  }
  let db: ChatDb;
  try {
    db = await openChat(values.db);
  } catch (error) {
    if (error instanceof NoatunError && error.code === ErrorCode.DATABASE_LOCKED) {
      return fail(`${values.db} is in use by another chat peer; start a second peer with its own database: ${secondPeer(values.db)}`);
    }
    // A path that is a file, a damaged database: one line, not a stack.
    if (error instanceof NoatunError) return fail(`${error.message} [${error.code}]`);
    throw error;
  }

  // What was printed, so a message is never shown twice, and the time of the newest one shown:
  // a message older than that arrived late and is marked, since it belongs further up.
  const printed = new Set<string>();
  let newest = Number.NEGATIVE_INFINITY;
  let output = say;
  const show = (message: ChatMessage): void => {
    if (printed.has(message.id)) return;
    printed.add(message.id);
    const late = message.time < newest;
    if (!late) newest = message.time;
    output(`${late ? '(earlier) ' : ''}[${clock(message.time)}] ${printable(message.from)}: ${printable(message.text)}`);
  };

  // Listeners run inside the database call that stored the events and must not read it, so the
  // new ids are collected and looked up once that call is over (one lookup per burst).
  let arrived: MessageId[] = [];
  let closed = false;
  const unsubscribe = db.subscribe({
    stored(events) {
      if (arrived.length === 0) {
        setImmediate(() => {
          const ids = arrived;
          arrived = [];
          if (!closed) for (const message of messagesWithIds(db, ids)) show(message);
        });
      }
      for (const event of events) arrived.push(event.id);
    },
  });
  for (const message of history(db)) show(message);

  const discovering = values.listen === undefined;
  // mDNS announces the addresses we listen on; loopback ones are no use to another machine.
  const lan = values.mdns ? ['/ip4/0.0.0.0/tcp/0'] : [];
  let replicator: Replicator | undefined;
  let ownPort: number | undefined;
  try {
    const shared = {
      bootstrap: values.bootstrap ?? [],
      mdns: values.mdns,
      topic: values.topic,
      // A kept identity: after a restart the others see the same peer come back.
      privateKey: await loadOrCreatePrivateKey(path.join(values.db, PEER_KEY_FILE)),
    };
    if (discovering) {
      // Trying to listen is the only race-free test of a free port: a probe could lose it to a
      // peer starting at the same moment.
      for (const port of ports) {
        try {
          replicator = await Replicator.start(db, { ...shared, listen: [`/ip4/127.0.0.1/tcp/${port}`, ...lan] });
          ownPort = port;
          break;
        } catch (error) {
          if (!(error instanceof NoatunError && error.code === ErrorCode.ADDRESS_IN_USE)) throw error;
        }
      }
      if (replicator === undefined) {
        say(`chat: every port of ${values['discover-ports']} is taken; listening on another one (peers in the range are still dialled)`);
        replicator = await Replicator.start(db, { ...shared, listen: ['/ip4/127.0.0.1/tcp/0', ...lan] });
      }
    } else {
      replicator = await Replicator.start(db, { ...shared, listen: values.listen!.map(listenAddress) });
    }
  } catch (error) {
    unsubscribe();
    closed = true;
    await db.close();
    const wrongInput: readonly string[] = [ErrorCode.ADDRESS_IN_USE, ErrorCode.INVALID_ARGUMENT, ErrorCode.KEY_INVALID];
    if (error instanceof NoatunError && wrongInput.includes(error.code)) {
      return fail(error.message);
    }
    throw error;
  }
  const node = replicator;

  // One "synced" line per connection: a connected peer drops out of sync for a moment with each
  // message in flight, which is not news in a chat.
  const syncedOnce = new Set<string>();
  const peerLine = (event: Event, what: string): void => {
    const { peerId, reason } = (event as ReplicatorEvent).detail;
    if (what === 'synced') {
      if (syncedOnce.has(peerId)) return;
      syncedOnce.add(peerId);
    } else {
      syncedOnce.delete(peerId);
    }
    output(`peer ${shortId(peerId)} ${what}${reason === undefined ? '' : `: ${reason}`}`);
  };
  node.addEventListener('peer:connect', (event) => peerLine(event, 'connected'));
  node.addEventListener('peer:synced', (event) => peerLine(event, 'synced'));
  node.addEventListener('peer:disconnect', (event) => peerLine(event, 'disconnected'));
  node.addEventListener('peer:refused', (event) => peerLine(event, 'refused'));

  say(`chat: ${name} listening on ${node.multiaddrs.join(' ')}`);
  const join = secondPeer(values.db, name);
  if (discovering) {
    const range = values['discover-ports'] === DEFAULT_PORTS ? '' : ` --discover-ports ${values['discover-ports']}`;
    say(`chat: to join from another terminal of this machine: ${join}${range}`);
  } else {
    say(`chat: to join: ${join} --bootstrap ${node.multiaddrs[0] ?? '<address>'}`);
  }

  // The loopback discovery: remember which peer answered at each port, and dial the ports whose
  // peer is not connected (never started yet, stopped, or restarted) again on every round.
  const answered = new Map<number, string>();
  const dialling = new Set<number>();
  const scan = (): void => {
    const connected = new Set(
      node
        .peers()
        .filter((peer) => peer.state !== 'disconnected' && peer.state !== 'refused')
        .map((peer) => peer.peerId),
    );
    for (const port of ports) {
      const peerId = answered.get(port);
      if (port === ownPort || dialling.has(port) || (peerId !== undefined && connected.has(peerId))) continue;
      dialling.add(port);
      node
        .dial(`/ip4/127.0.0.1/tcp/${port}`)
        .then(
          (id) => answered.set(port, id),
          () => answered.delete(port), // nobody there (yet)
        )
        .finally(() => dialling.delete(port));
    }
  };
  const scanner = discovering ? setInterval(scan, RESCAN_MS) : undefined;
  if (discovering) scan();

  // A terminal gets a prompt that survives incoming lines; a pipe (a script, a test) gets plain lines.
  const terminal = process.stdin.isTTY === true && process.stdout.isTTY === true;
  const input = readline.createInterface({
    input: process.stdin,
    ...(terminal ? { output: process.stdout, terminal: true, prompt: `${name}> ` } : { terminal: false }),
  });
  if (terminal) {
    output = (line) => {
      readline.clearLine(process.stdout, 0);
      readline.cursorTo(process.stdout, 0);
      say(line);
      input.prompt(true);
    };
    input.prompt();
  }

  const writes = new Set<Promise<unknown>>();
  const quit = (): void => leave.abort();
  input.on('line', (line) => {
    if (terminal) {
      // The typed line is shown again as a message once stored: take the echo away.
      const rows = Math.max(1, Math.ceil((name.length + 2 + line.length) / (process.stdout.columns || 80)));
      readline.moveCursor(process.stdout, 0, -rows);
      readline.clearScreenDown(process.stdout);
    }
    const text = line.trim();
    if (text === '') {
      if (terminal) input.prompt();
      return;
    }
    if (text === '/quit') quit();
    else if (text === '/peers') {
      const peers = node.peers().filter((peer) => peer.state !== 'disconnected');
      if (peers.length === 0) output('peers: none connected');
      for (const peer of peers) {
        output(`peers: ${peer.peerId} ${peer.state} (${peer.received} received, ${peer.sent} sent)`);
      }
    } else if (text.startsWith('/')) {
      output(`chat: unknown command ${text.split(/\s/)[0]}; /peers lists peers, /quit leaves`);
    } else if (text.length > MAX_TEXT_LENGTH) {
      output(`chat: not sent, a message has at most ${MAX_TEXT_LENGTH} characters`);
    } else {
      // Shown when the database reports it stored, like every other message.
      const write = db.append({ type: 'say', from: name, text }).catch((error: unknown) => {
        output(`chat: not sent: ${(error as Error).message}`);
      });
      writes.add(write);
      void write.finally(() => writes.delete(write));
    }
    if (terminal && !leave.signal.aborted) input.prompt();
  });
  input.on('close', quit); // end of input: Ctrl-D, or the end of a pipe
  input.on('SIGINT', quit); // Ctrl-C while the prompt owns the terminal

  if (!leave.signal.aborted) await new Promise((resolve) => leave.signal.addEventListener('abort', resolve, { once: true }));
  if (scanner !== undefined) clearInterval(scanner);
  input.close();
  await Promise.all(writes);
  await node.stop();
  unsubscribe();
  closed = true;
  await db.close();
  if (terminal) process.stdout.write('\n');
  say('chat: bye');
  return 0;
}

process.exitCode = await main();
