/**
 * The chat example as child processes, run the way a user runs it (`node --import=tsx
 * examples/chat/main.ts`, lines through stdin): peers exchanging messages, a message written
 * offline reaching the others once its writer is back, history across restarts, the clear error
 * for a database already in use, and the loopback discovery on a port range the test picks.
 * Every peer has an explicit address or a random range, so tests never meet on fixed ports; the
 * tests run one at a time, since each starts up to three Node processes.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import type { ExecutionContext } from 'ava';
import test from 'ava';
import { history, openChat } from '../../examples/chat/app.js';
import { type Child, killAll, run } from '../helpers/child.js';
import { removeTempDirs, tempDir } from '../helpers/temp.js';

test.after.always(() => {
  killAll();
  removeTempDirs();
});

const ANY_PORT = '/ip4/127.0.0.1/tcp/0';
/** Generous: several peers start at once on a loaded two-core machine. */
const WAIT_MS = 30_000;

/** Starts a chat peer; it is killed when the test ends if it is still running. */
function chat(t: ExecutionContext, name: string, db: string, ...more: string[]): Child {
  const child = run(['--import=tsx', 'examples/chat/main.ts', '--name', name, '--db', db, ...more]);
  t.teardown(() => {
    child.process.kill('SIGKILL');
  });
  return child;
}

/** Starts a chat peer and waits until it listens; resolves with it, its address and its peer id. */
async function startChat(
  t: ExecutionContext,
  name: string,
  db: string,
  ...more: string[]
): Promise<{ child: Child; address: string; peerId: string }> {
  const child = chat(t, name, db, ...more);
  const [, address] = await child.waitFor(new RegExp(`^chat: ${name} listening on (\\S+)`), WAIT_MS);
  return { child, address: address!, peerId: address!.split('/p2p/')[1]! };
}

/** The line a message is printed as (`late`: marked as belonging further up). */
function messageLine(from: string, text: string, late = false): RegExp {
  return new RegExp(`^${late ? '\\(earlier\\) ' : ''}\\[\\d\\d:\\d\\d:\\d\\d\\] ${from}: ${text}$`);
}

/** How many printed lines match `pattern`. */
function count(child: Child, pattern: RegExp): number {
  return child.lines.filter((line) => pattern.test(line)).length;
}

/** A peer id as the chat's peer lines show it. */
function short(peerId: string): string {
  return peerId.slice(-8);
}

test.serial('two peers exchange messages both ways, list each other, and leave cleanly', async (t) => {
  const root = tempDir();
  const a = await startChat(t, 'alice', path.join(root, 'a'), '--listen', ANY_PORT);
  const b = await startChat(t, 'bob', path.join(root, 'b'), '--listen', ANY_PORT, '--bootstrap', a.address);
  await a.child.waitFor(new RegExp(`^peer ${short(b.peerId)} synced$`), WAIT_MS);
  await b.child.waitFor(new RegExp(`^peer ${short(a.peerId)} synced$`), WAIT_MS);

  a.child.send('hello bob');
  await b.child.waitFor(messageLine('alice', 'hello bob'), WAIT_MS);
  b.child.send('hi alice');
  await a.child.waitFor(messageLine('bob', 'hi alice'), WAIT_MS);
  await b.child.waitFor(messageLine('bob', 'hi alice'), WAIT_MS);

  a.child.send('/peers');
  await a.child.waitFor(new RegExp(`^peers: ${b.peerId} (connected|syncing|synced|differs) \\(`), WAIT_MS);

  b.child.send('/quit');
  t.is(await b.child.exited(), 0, b.child.output);
  await a.child.waitFor(new RegExp(`^peer ${short(b.peerId)} disconnected$`), WAIT_MS);
  t.is(await a.child.stop(), 0, 'SIGTERM stops a peer cleanly');
  for (const peer of [a.child, b.child]) {
    t.is(count(peer, messageLine('alice', 'hello bob')), 1, peer.output);
    t.is(count(peer, messageLine('bob', 'hi alice')), 1, peer.output);
    t.is(peer.lines.at(-1), 'chat: bye');
  }
});

test.serial('a message written offline reaches the other peer after reconnecting, marked as earlier; history is in time order', async (t) => {
  const root = tempDir();
  const dirA = path.join(root, 'a');
  const dirB = path.join(root, 'b');
  const a = await startChat(t, 'alice', dirA, '--listen', ANY_PORT);

  // Bob alone: no bootstrap, so nobody hears him.
  const offline = await startChat(t, 'bob', dirB, '--listen', ANY_PORT);
  offline.child.send('written offline');
  await offline.child.waitFor(messageLine('bob', 'written offline'), WAIT_MS);
  t.is(await offline.child.stop(), 0, offline.child.output);

  // Alice writes while bob is stopped; her newest message is now later than bob's.
  a.child.send('while bob was away');
  await a.child.waitFor(messageLine('alice', 'while bob was away'), WAIT_MS);

  const b = await startChat(t, 'bob', dirB, '--listen', ANY_PORT, '--bootstrap', a.address);
  await a.child.waitFor(messageLine('bob', 'written offline', true), WAIT_MS);
  await b.child.waitFor(messageLine('alice', 'while bob was away'), WAIT_MS);
  await b.child.waitFor(new RegExp(`^peer ${short(a.peerId)} synced$`), WAIT_MS);
  t.is(await b.child.stop(), 0, b.child.output);
  t.is(await a.child.stop(), 0, a.child.output);

  t.is(count(b.child, messageLine('bob', 'written offline')), 1, 'shown once, in the history');
  t.is(count(a.child, /written offline/), 1, a.child.output);
  t.is(count(b.child, /while bob was away/), 1, b.child.output);
  for (const dir of [dirA, dirB]) {
    const db = await openChat(dir);
    const messages = history(db);
    await db.close();
    t.deepEqual(
      messages.map((m) => `${m.from}: ${m.text}`),
      ['bob: written offline', 'alice: while bob was away'],
    );
    t.true(messages[0]!.time <= messages[1]!.time);
  }
});

test.serial('history survives a restart and is printed before the address', async (t) => {
  const db = path.join(tempDir(), 'a');
  const first = await startChat(t, 'alice', db, '--listen', ANY_PORT);
  first.child.send('first');
  await first.child.waitFor(messageLine('alice', 'first'), WAIT_MS);
  first.child.send('second');
  await first.child.waitFor(messageLine('alice', 'second'), WAIT_MS);
  first.child.process.stdin!.end(); // the end of input quits too
  t.is(await first.child.exited(), 0, first.child.output);

  const again = await startChat(t, 'alice', db, '--listen', ANY_PORT);
  const before = again.child.lines.slice(
    0,
    again.child.lines.findIndex((line) => line.startsWith('chat: alice listening on')),
  );
  t.is(before.length, 2, again.child.output);
  t.regex(before[0]!, messageLine('alice', 'first'));
  t.regex(before[1]!, messageLine('alice', 'second'));
  t.is(await again.child.stop(), 0);
});

test.serial('a second peer on a database in use exits with status 2 and says how to start one', async (t) => {
  const db = path.join(tempDir(), 'a');
  const a = await startChat(t, 'alice', db, '--listen', ANY_PORT);
  const second = chat(t, 'bob', db, '--listen', ANY_PORT);
  t.is(await second.exited(), 2);
  await second.waitFor(/^! chat: .* is in use by another chat peer; .*: npm start -- --name bob --db data\/bob$/, WAIT_MS);
  t.false(second.output.includes('    at '), 'no stack trace');

  a.child.send('still here');
  await a.child.waitFor(messageLine('alice', 'still here'), WAIT_MS);
  t.is(await a.child.stop(), 0);
});

test.serial("a database of another app, or a path that is a file, exits with status 2 and one line, and the database is left as it was", async (t) => {
  const other = path.join(tempDir(), 'tracker');
  fs.mkdirSync(other);
  fs.writeFileSync(path.join(other, 'app.json'), JSON.stringify({ name: 'issue-tracker', module: 'app.ts' }));
  const taken = chat(t, 'bob', other, '--listen', ANY_PORT);
  t.is(await taken.exited(), 2);
  await taken.waitFor(/^! chat: .* holds the database of the app "issue-tracker", not the chat's; pass another --db$/, WAIT_MS);
  t.deepEqual(fs.readdirSync(other), ['app.json'], 'nothing opened there');
  const file = path.join(tempDir(), 'a-file');
  fs.writeFileSync(file, 'not a directory');
  const wrong = chat(t, 'bob', file, '--listen', ANY_PORT);
  t.is(await wrong.exited(), 2);
  await wrong.waitFor(/^! chat: .*\[INVALID_ARGUMENT\]$/, WAIT_MS);
  t.false(wrong.output.includes('    at '), 'no stack trace');
});

/** Whether nobody listens on `port` of 127.0.0.1 now. */
function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * Three free consecutive ports below Linux's ephemeral range (32768+), where no port-0 listener
 * or outgoing connection of a concurrent test can take them.
 */
async function freeRange(): Promise<number> {
  for (;;) {
    const base = 20_000 + Math.floor(Math.random() * 12_000);
    if ((await isFree(base)) && (await isFree(base + 1)) && (await isFree(base + 2))) return base;
  }
}

test.serial('without --listen, peers on one machine find each other on the discovery ports, also ones that start later', async (t) => {
  const root = tempDir();
  const base = await freeRange();
  const range = `${base}-${base + 2}`;
  const a = await startChat(t, 'alice', path.join(root, 'a'), '--discover-ports', range);
  t.true(a.address.startsWith(`/ip4/127.0.0.1/tcp/${base}/p2p/`), a.address);
  await a.child.waitFor(new RegExp(`^chat: to join .*: npm start -- --name bob --db data/bob --discover-ports ${range}$`), WAIT_MS);

  // Bob takes the next port himself and dials nobody: alice's rescan must find him.
  const b = await startChat(t, 'bob', path.join(root, 'b'), '--listen', String(base + 1));
  await a.child.waitFor(new RegExp(`^peer ${short(b.peerId)} synced$`), WAIT_MS);
  a.child.send('found you');
  await b.child.waitFor(messageLine('alice', 'found you'), WAIT_MS);

  // Carol discovers too: the first free port of the range, and both others through it.
  const c = await startChat(t, 'carol', path.join(root, 'c'), '--discover-ports', range);
  t.true(c.address.startsWith(`/ip4/127.0.0.1/tcp/${base + 2}/p2p/`), c.address);
  await c.child.waitFor(messageLine('alice', 'found you'), WAIT_MS);
  await c.child.waitFor(new RegExp(`^peer ${short(a.peerId)} synced$`), WAIT_MS);
  await c.child.waitFor(new RegExp(`^peer ${short(b.peerId)} synced$`), WAIT_MS);
  c.child.send('me too');
  await a.child.waitFor(messageLine('carol', 'me too'), WAIT_MS);
  await b.child.waitFor(messageLine('carol', 'me too'), WAIT_MS);

  for (const peer of [a, b, c]) t.is(await peer.child.stop(), 0, peer.child.output);
});
