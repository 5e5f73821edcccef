/**
 * Refusing peers: a private swarm refuses a peer with the wrong key; an allow-list refuses an
 * unknown peer; a hostile peer that sends malformed or forged frames (gossip or session) is
 * disconnected, and nothing it sent is stored.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import test from 'ava';
import { Database, type NoatunError, s } from '../../src/index.js';
import { FrameType, bytesFrame, eventsFrame, statusFrame } from '../../src/net/frames.js';
import { FINGERPRINT_BYTES } from '../../src/net/fingerprint-index.js';
import { createSwarmKey, Libp2pLink, loadOrCreatePrivateKey } from '../../src/net/libp2p-link.js';
import type { Link } from '../../src/net/link.js';
import { MemoryNetwork } from '../../src/net/memory-link.js';
import { Replicator } from '../../src/net/replicator.js';
import { killAll, run } from '../helpers/child.js';
import { removeTempDirs, tempDir } from '../helpers/temp.js';

test.after.always(() => {
  killAll();
  removeTempDirs();
});

const Root = s.object({ total: s.u32() });
type Event = { add: number };
const open = () =>
  Database.open<Event, typeof Root>({
    path: tempDir(),
    root: Root,
    apply(event, root) {
      root.total += event.add;
    },
  });

const LOOPBACK = ['/ip4/127.0.0.1/tcp/0'];

/** Polls `condition` until it holds (a state, not a fixed sleep); fails after `timeoutMs`. */
async function until(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error('condition not reached');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Dials and expects the connection to be refused: the dial fails, or the connection is dropped. */
async function refusedDial(from: Libp2pLink, to: Libp2pLink): Promise<boolean> {
  try {
    await from.dial(to.multiaddrs[0]!);
  } catch {
    return true;
  }
  await until(() => !from.connectedPeers().includes(to.peerId) && !to.connectedPeers().includes(from.peerId));
  return true;
}

test('a private swarm refuses a peer with the wrong key and accepts one with the right key', async (t) => {
  const key = createSwarmKey();
  const a = await Libp2pLink.start({ listen: LOOPBACK, topic: 'psk', psk: key });
  const wrong = await Libp2pLink.start({ listen: LOOPBACK, topic: 'psk', psk: createSwarmKey() });
  const none = await Libp2pLink.start({ listen: LOOPBACK, topic: 'psk' });
  const right = await Libp2pLink.start({ listen: LOOPBACK, topic: 'psk', psk: key });
  try {
    await t.throwsAsync(wrong.dial(a.multiaddrs[0]!));
    await t.throwsAsync(none.dial(a.multiaddrs[0]!));
    await right.dial(a.multiaddrs[0]!);
    await until(() => a.connectedPeers().includes(right.peerId));
    t.deepEqual(right.connectedPeers(), [a.peerId]);
    t.false(a.connectedPeers().includes(wrong.peerId));
    t.false(a.connectedPeers().includes(none.peerId));
  } finally {
    await Promise.all([a, wrong, none, right].map((link) => link.stop()));
  }
});

test('an allow-list refuses an unknown peer', async (t) => {
  const friend = await Libp2pLink.start({ listen: LOOPBACK, topic: 'allow' });
  const stranger = await Libp2pLink.start({ listen: LOOPBACK, topic: 'allow' });
  const a = await Libp2pLink.start({ listen: LOOPBACK, topic: 'allow', allowPeers: [friend.peerId] });
  try {
    t.true(await refusedDial(stranger, a));
    await t.throwsAsync(a.dial(stranger.multiaddrs[0]!), undefined, 'nor does it dial one');
    await friend.dial(a.multiaddrs[0]!);
    await until(() => a.connectedPeers().includes(friend.peerId));
    t.deepEqual(a.connectedPeers(), [friend.peerId]);
  } finally {
    await Promise.all([a, friend, stranger].map((link) => link.stop()));
  }
});

test('an allow-list entry that is not a peer id is refused with INVALID_ARGUMENT (it admitted nobody, silently)', async (t) => {
  for (const wrong of ['xyz', '', '12D3KooWnot-a-peer-id', 42]) {
    const error = await t.throwsAsync(Libp2pLink.start({ listen: LOOPBACK, topic: 'allow', allowPeers: [wrong as string] }));
    t.is((error as NoatunError).code, 'INVALID_ARGUMENT', String(wrong));
    t.regex((error as Error).message, /allowPeers: not a peer id|allowPeers must be a list of strings/);
  }
});

test("dial's failures carry codes: a bad address or the node itself INVALID_ARGUMENT, a peer refused or gone or a stopped node CLOSED", async (t) => {
  const db = await open();
  const a = await Libp2pLink.start({ listen: LOOPBACK, topic: 'dial' });
  const b = await Libp2pLink.start({ listen: LOOPBACK, topic: 'dial' });
  const node = await Replicator.start(db, { listen: LOOPBACK, topic: 'dial' });
  const code = async (dialing: Promise<unknown>) => ((await t.throwsAsync(dialing)) as NoatunError).code;
  try {
    // Before: libp2p's own errors, without a code ("Can not dial self", a gater's refusal).
    for (const wrong of ['not an address', '/ip4/999.1.1.1/tcp/1', '', 42]) t.is(await code(a.dial(wrong as string)), 'INVALID_ARGUMENT', String(wrong));
    // Multiaddrs no dial can use: CLOSED before, as if a peer had not answered.
    for (const wrong of ['/ip4/127.0.0.1/tcp/1/p2p/garbage', '/ip4/127.0.0.1/udp/1', '/ip4/127.0.0.1', `/p2p/${b.peerId}`]) {
      t.is(await code(node.dial(wrong)), 'INVALID_ARGUMENT', wrong);
    }
    t.regex(((await t.throwsAsync(node.dial('/ip4/127.0.0.1/tcp/1/p2p/garbage'))) as Error).message, /^dial: "\/ip4\/127\.0\.0\.1\/tcp\/1\/p2p\/garbage" ends in \/p2p\/ and something that is not a peer id: "garbage"/);
    t.is(await code(a.dial(a.multiaddrs[0]!)), 'INVALID_ARGUMENT');
    t.is(await code(a.dial(a.peerId)), 'INVALID_ARGUMENT');
    const gone = b.multiaddrs[0]!;
    await b.stop();
    t.is(await code(a.dial(gone)), 'CLOSED');
    await a.stop();
    t.is(await code(a.dial(gone)), 'CLOSED');
    await node.stop();
    t.is(await code(node.dial(gone)), 'CLOSED');
  } finally {
    await Promise.all([a, b].map((link) => link.stop()));
    await node.stop();
    await db.close();
  }
});

test('link options of the wrong kind, and options Replicator.start does not know, are refused with INVALID_ARGUMENT naming them, before libp2p meets them', async (t) => {
  // Before: a string for a list was walked letter by letter, a missing listen, a key that is not
  // one or a negative limit came out as libp2p's or the language's errors, mdns: 'yes' was taken.
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ listen: LOOPBACK[0] }, /listen must be a list of strings/],
    [{ listen: undefined }, /listen must be a list of strings/],
    [{ bootstrap: '/ip4/127.0.0.1/tcp/1' }, /bootstrap must be a list of strings/],
    [{ allowPeers: 'xyz' }, /allowPeers must be a list of strings/],
    [{ mdns: 'yes' }, /mdns must be true or false/],
    [{ psk: 'abc' }, /psk must be the bytes of a swarm key file/],
    [{ privateKey: {} }, /privateKey must be a libp2p private key/],
    [{ maxConnections: -1 }, /maxConnections must be a whole number greater than 0, got -1/],
    [{ maxConnections: '5' }, /maxConnections must be a whole number greater than 0, got "5"/],
    // (Both were taken, and dialled again and again for as long as the node ran.)
    [{ bootstrap: ['/ip4/127.0.0.1/tcp/4201/p2p/notapeerid'] }, /^bootstrap: "\/ip4\/127\.0\.0\.1\/tcp\/4201\/p2p\/notapeerid" ends in \/p2p\/ and something that is not a peer id: "notapeerid"/],
    [{ bootstrap: ['/ip4/127.0.0.1/udp/1'] }, /^bootstrap: cannot dial "\/ip4\/127\.0\.0\.1\/udp\/1": peers are reached over TCP only/],
  ];
  for (const [options, message] of cases) {
    const error = await t.throwsAsync(Libp2pLink.start({ listen: LOOPBACK, topic: 'kinds', ...options } as never));
    t.is((error as NoatunError).code, 'INVALID_ARGUMENT', JSON.stringify(options));
    t.regex((error as Error).message, message);
  }
  // Replicator.start refuses an option it does not know, before a node starts: a misspelt
  // `bootstrap` was ignored, and the peer waited for nobody.
  const db = await open();
  const unknown: [unknown, RegExp][] = [
    [{ listen: LOOPBACK, topic: 'kinds', bootsrap: [] }, /Replicator\.start has no option "bootsrap" \(did you mean bootstrap\?\)/],
    [{ listen: LOOPBACK, topic: 'kinds', statusIntervalMS: 10 }, /no option "statusIntervalMS" \(did you mean statusIntervalMs\?\)/],
    [{ listen: LOOPBACK, topic: 'kinds', speed: 'fast' }, /no option "speed"$/],
    [null, /Replicator\.start takes an options object, got null/],
  ];
  for (const [options, message] of unknown) {
    const error = await t.throwsAsync(Replicator.start(db, options as never));
    t.is((error as NoatunError).code, 'INVALID_ARGUMENT', JSON.stringify(options));
    t.regex((error as Error).message, message);
  }
  await db.close();
});

test('an identity key file that is a directory or garbage is KEY_INVALID, and left as it is', async (t) => {
  const dir = tempDir();
  // (A directory was Node's raw EISDIR, a stack trace out of `noatun peer`.)
  const folder = path.join(dir, 'peer.key');
  fs.mkdirSync(folder);
  const error = await t.throwsAsync(loadOrCreatePrivateKey(folder));
  t.is((error as NoatunError).code, 'KEY_INVALID');
  t.regex((error as Error).message, /peer\.key is a directory, not a libp2p private key$/);
  t.true(fs.statSync(folder).isDirectory());
  const garbage = path.join(dir, 'garbage.key');
  fs.writeFileSync(garbage, 'garbage');
  t.is(((await t.throwsAsync(loadOrCreatePrivateKey(garbage))) as NoatunError).code, 'KEY_INVALID');
  t.is(fs.readFileSync(garbage, 'utf8'), 'garbage');
  // One that cannot be written (its directory is missing) is the system's refusal, with a code.
  t.is(((await t.throwsAsync(loadOrCreatePrivateKey(path.join(dir, 'none', 'peer.key')))) as NoatunError).code, 'SYSTEM_CALL_FAILED');
  const made = path.join(dir, 'made.key');
  const key = await loadOrCreatePrivateKey(made);
  t.deepEqual((await loadOrCreatePrivateKey(made)).raw, key.raw, 'made once, then read back');
});

/** A valid envelope (from a scratch database) and a forged copy (payload changed, id kept). */
async function envelopes(): Promise<{ valid: Uint8Array; forged: Uint8Array }> {
  const source = await open();
  await source.append({ add: 7 });
  const valid = [...source.messages()][0]!.bytes.slice();
  await source.close();
  const forged = valid.slice();
  forged[forged.length - 1]! ^= 0x01;
  return { valid, forged };
}

/** Waits until `replicator` has refused `peerId`. */
function refused(replicator: Replicator, peerId: string): Promise<void> {
  return new Promise((resolve) => {
    const check = () => replicator.peers().some((p) => p.peerId === peerId && p.state === 'refused');
    if (check()) resolve();
    else replicator.addEventListener('peer:refused', () => check() && resolve());
  });
}

async function hostileCase(
  t: import('ava').ExecutionContext,
  attack: (hostile: Link, victim: string) => Promise<void>,
  reason?: RegExp,
): Promise<void> {
  const network = new MemoryNetwork({ latencyMs: 1 });
  const db = await open();
  const victim = new Replicator(db, network.join('victim'), { statusIntervalMs: 50 });
  const hostile = network.join('hostile');
  await attack(hostile, 'victim');
  await refused(victim, 'hostile');
  const why = victim.peers().find((peer) => peer.peerId === 'hostile')?.reason ?? '';
  t.log(`refused: ${why}`);
  if (reason !== undefined) t.regex(why, reason, 'refused for what it sent, not for something else');
  t.is(db.stats().stored, 0, 'nothing the hostile peer sent is stored');
  t.false(hostile.connectedPeers().includes('victim'), 'the hostile peer is disconnected');
  await victim.stop();
  await hostile.stop();
  await db.close();
}

test('gossip garbage gets the sender disconnected', async (t) => {
  await hostileCase(t, async (hostile) => hostile.publish(Uint8Array.of(0xee, 1, 2, 3)));
});

test('a gossiped forged event gets the sender disconnected and is not stored', async (t) => {
  const { forged } = await envelopes();
  await hostileCase(t, async (hostile) => hostile.publish(bytesFrame(FrameType.EVENT, forged)), /does not match its content hash/);
});

test('a forged event in a session batch is refused with the whole batch', async (t) => {
  const { valid, forged } = await envelopes();
  await hostileCase(t, async (hostile, victim) => {
    const session = await hostile.openSession(victim);
    // The victim holds nothing, so both sides skip reconciliation (the HELLOs say so) and the
    // hostile peer may send its batch at once: the batch itself must be what gets it refused.
    const status = { cutoffTime: 0, cutoffHash: new Uint8Array(16), previousTime: 0, previousHash: new Uint8Array(16), count: 2, fingerprint: new Uint8Array(FINGERPRINT_BYTES) };
    await session.send(statusFrame(FrameType.HELLO, status));
    await session.send(eventsFrame([valid, forged]));
  }, /does not match its content hash/);
});

test('a malformed session frame gets the peer disconnected', async (t) => {
  await hostileCase(t, async (hostile, victim) => {
    const session = await hostile.openSession(victim);
    await session.send(Uint8Array.of(FrameType.HELLO, 1, 2, 3));
  });
});

test('over libp2p: a peer gossiping a forged event is disconnected and nothing is stored', async (t) => {
  const { forged } = await envelopes();
  const db = await open();
  const victim = await Replicator.start(db, { listen: LOOPBACK, topic: 'hostile', statusIntervalMs: 100 });
  const hostile = await Libp2pLink.start({ listen: LOOPBACK, topic: 'hostile' });
  try {
    await hostile.dial(victim.multiaddrs[0]!);
    const done = refused(victim, hostile.peerId);
    // Gossip reaches the victim once it has seen the hostile peer's subscription; publish until then,
    // a different forgery each time: gossipsub never sends a message id (an event's id) twice, so a
    // first one published before the subscription arrived would be the only one.
    let sent = 0;
    const timer = setInterval(() => {
      const copy = Uint8Array.from(forged);
      copy[16] = sent++ & 0xff; // the last byte of the id
      hostile.publish(bytesFrame(FrameType.EVENT, copy));
    }, 50);
    await done;
    clearInterval(timer);
    t.is(db.stats().stored, 0);
    t.false(victim.peers().some((p) => p.peerId === hostile.peerId && p.state !== 'refused'));
    await until(() => hostile.connectedPeers().length === 0);
    t.true(await refusedDial(hostile, { multiaddrs: victim.multiaddrs, peerId: victim.peerId, connectedPeers: () => [] } as unknown as Libp2pLink), 'the victim refuses it for a while');
  } finally {
    await victim.stop();
    await hostile.stop();
    await db.close();
  }
});

test('a refused Replicator.start (an option out of range, a closed database) leaves no node running: the process exits by itself', async (t) => {
  // Before: the libp2p node was started first and the refusal came after; it listened on, and the
  // process never exited.
  const child = run(['--import=tsx', 'test/net/fixtures/refused-start.ts', tempDir()]);
  await child.waitFor(/refused CLOSED/);
  const exited = await Promise.race([child.exited(), new Promise<'running'>((resolve) => setTimeout(() => resolve('running'), 15_000).unref())]);
  t.is(exited, 0, child.output);
  t.deepEqual(
    child.lines.filter((line) => !line.startsWith('!')),
    ['refused INVALID_ARGUMENT', 'refused CLOSED'],
  );
});

test('after its replicators stop and its database closes, no timer keeps a process alive', async (t) => {
  // Before: gossipsub's next heartbeat and libp2p's debounced address update, both left behind
  // by the node's stop, kept every peer process alive up to a second after it was done.
  const child = run(['--import=tsx', 'test/net/fixtures/stopped-timers.ts', tempDir(), tempDir()]);
  await child.waitFor(/"alive"/);
  t.is(await child.exited(), 0, child.output);
  const report = JSON.parse(child.lines.find((line) => line.includes('"alive"'))!) as { alive: string[] };
  t.deepEqual(report.alive, [], child.output);
});

test('syncedWith refuses what could never settle: no peer id, a signal that is not one (INVALID_ARGUMENT); with itself it is in sync at once', async (t) => {
  const db = await open();
  const node = await Replicator.start(db, { listen: LOOPBACK, topic: 'synced-with' });
  const other = await Libp2pLink.start({ listen: LOOPBACK, topic: 'synced-with' });
  try {
    const code = async (waiting: Promise<unknown>) => ((await t.throwsAsync(waiting)) as NoatunError).code;
    // Before: each of these waited for its signal, or for ever, and left an entry in the peer table.
    for (const wrong of ['', 'garbage', '12D3KooWAbc', 42, null, undefined]) {
      t.is(await code(node.syncedWith(wrong as string, { signal: AbortSignal.timeout(5_000) })), 'INVALID_ARGUMENT', String(wrong));
    }
    t.is(await code(node.syncedWith(other.peerId, { signal: 'soon' as never })), 'INVALID_ARGUMENT');
    t.is(await code(node.syncedWith(other.peerId, 5 as never)), 'INVALID_ARGUMENT');
    t.deepEqual(node.peers(), [], 'nothing entered the peer table');
    // Itself: in sync at once. A well-formed id of a peer nobody reaches waits for its signal.
    await node.syncedWith(node.peerId);
    const aborted = await t.throwsAsync(node.syncedWith(other.peerId, { signal: AbortSignal.timeout(200) }));
    t.is((aborted as Error).name, 'TimeoutError');
  } finally {
    await node.stop();
    await other.stop();
    await db.close();
  }
});
