/**
 * Issue 14, "a peer cannot be knocked over": one test per row, each as an attacker (or an unlucky
 * honest user) would try it. Every test asserts that the victim stays up (it runs in this process:
 * a crash or an unhandled rejection fails the file), how much its memory may grow (heap and
 * external, measured on this isolate), that honest peers still reach `synced` within a stated
 * time, and that nothing invalid is stored.
 *
 * Rows 1, 3, 4, 7, 9, 10, 12 and 13 run on the in-memory link; rows 1, 4, 7, 10, 12 and 13 also
 * over real libp2p on 127.0.0.1 (13 with peers in child processes). Tests run one at a time, so
 * that each measures its own memory.
 *
 * The engine's rows, on the in-memory link (the engine is the same under libp2p):
 * - row 2: events whose parent never comes (parking: per-peer and total caps, O(1), time limit);
 * - row 5: events dated before the cutoff (a budget of re-application time, not a rebuild each);
 * - row 6: events dated far in the future (the time window; the peer reported as clock-drift);
 * - row 8: applies that fail, then a full view (failures pruned when final; a full view refuses
 *   the batch, with no unhandled rejection);
 * - row 11: `append` of an event over the envelope limit (refused with a clear error).
 */
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { Database, s } from '../../src/index.js';
import { FINGERPRINT_BYTES, timeBound } from '../../src/net/fingerprint-index.js';
import { ackFrame, bytesFrame, decodeFrame, FrameType, idsFrame, type Status, statusFrame } from '../../src/net/frames.js';
import { LOOPBACK_NETWORKS, Libp2pLink } from '../../src/net/libp2p-link.js';
import type { Link, Session } from '../../src/net/link.js';
import { MemoryNetwork } from '../../src/net/memory-link.js';
import { type PeerInfo, type ReplicatedDatabase, Replicator, type ReplicatorFailure } from '../../src/net/replicator.js';
import { type Child, killAll, run } from '../helpers/child.js';
import { describeGrowth, type MemoryGrowth, MemoryWatch } from '../helpers/memory.js';
import { removeTempDirs, tempDir } from '../helpers/temp.js';

test.after.always(removeTempDirs);
test.after.always(killAll);

const LOOPBACK = ['/ip4/127.0.0.1/tcp/0'];
const MIB = 1024 * 1024;

const Root = s.object({ total: s.u32(), bytes: s.u32() });
type Event = { add: number; blob?: Uint8Array };
type Db = Database<Event, typeof Root>;

function openDb(dir = tempDir(), options: { now?: () => number } = {}): Promise<Db> {
  return Database.open<Event, typeof Root>({
    path: dir,
    root: Root,
    ...options,
    apply(event, root) {
      root.total += event.add;
      if (event.blob !== undefined) root.bytes += event.blob.length;
    },
  });
}

/** Appends `n` small events in one transaction. */
async function fill(db: Db, n: number): Promise<void> {
  await db.transaction((tx) => {
    for (let i = 0; i < n; i++) tx.append({ add: 1 });
  });
}

const hexIds = (db: Db) => [...db.ids()].map((id) => Buffer.from(id).toString('hex'));

/** Polls until `condition` holds (a state, never a fixed sleep); fails after `timeoutMs`. */
async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function peer(replicator: Replicator, peerId: string): PeerInfo | undefined {
  return replicator.peers().find((p) => p.peerId === peerId);
}

/** Resolves once `replicator` has refused `peerId`, with the reason. */
async function refused(replicator: Replicator, peerId: string, timeoutMs = 10_000): Promise<string> {
  await until(() => peer(replicator, peerId)?.state === 'refused', `${peerId} refused`, timeoutMs);
  return peer(replicator, peerId)!.reason ?? '';
}

/** Collects a replicator's `failure` events (our own failures: a hostile peer must cause none). */
function failures(replicator: Replicator): string[] {
  const seen: string[] = [];
  replicator.addEventListener('failure', (event) => seen.push((event as CustomEvent<ReplicatorFailure>).detail.reason));
  return seen;
}

/** A status frame's contents with every field chosen. */
function status(fields: Partial<Status> = {}): Status {
  return {
    cutoffTime: 0,
    cutoffHash: new Uint8Array(16),
    previousTime: 0,
    previousHash: new Uint8Array(16),
    count: 0,
    fingerprint: new Uint8Array(FINGERPRINT_BYTES),
    ...fields,
  };
}

/** The status a peer with the same finalized past as `db` would send, claiming `count` events after it. */
function sameCutoff(db: Db, count: number): Status {
  const cutoff = db.cutoffState();
  return status({ cutoffTime: cutoff.time, cutoffHash: cutoff.hash, previousTime: cutoff.previousTime, previousHash: cutoff.previousHash, count, fingerprint: new Uint8Array(FINGERPRINT_BYTES).fill(7) });
}

/** Asserts a memory growth within bounds (MiB) and logs it. */
function assertMemory(t: ExecutionContext, growth: MemoryGrowth, peakMiB: number, keptMiB: number): void {
  t.log(`victim memory: ${describeGrowth(growth)}; bounds: peak +${peakMiB} MiB, kept +${keptMiB} MiB (each of heap and external)`);
  t.true(growth.peakHeapMiB <= peakMiB, `heap peak +${growth.peakHeapMiB.toFixed(1)} MiB`);
  t.true(growth.peakExternalMiB <= peakMiB, `external peak +${growth.peakExternalMiB.toFixed(1)} MiB`);
  t.true(growth.heapMiB <= keptMiB, `heap kept +${growth.heapMiB.toFixed(1)} MiB`);
  t.true(growth.externalMiB <= keptMiB, `external kept +${growth.externalMiB.toFixed(1)} MiB`);
}

/** A reconciliation message over `[lower, ∞)`: an id list of `ids` up to `upper`, then `DEFER` to the end. */
function listThenDefer(lower: Uint8Array, ids: readonly Uint8Array[], upper: Uint8Array): Uint8Array {
  const out: number[] = [1, lower.length, ...lower];
  // The list's range: its upper bound written whole (no bytes shared with the lower bound).
  out.push(upper.length - 1, ...upper, 2);
  let count = ids.length;
  while (count >= 0x80) {
    out.push((count & 0x7f) | 0x80);
    count >>>= 7;
  }
  out.push(count);
  for (const id of ids) out.push(0, ...id);
  out.push(0xff, 4); // the rest of the span: DEFER
  return Uint8Array.from(out);
}

/** An id at `time` (ms) with random low bytes. */
function idAt(time: number): Uint8Array {
  const id = new Uint8Array(16);
  id.set(timeBound(time), 0);
  for (let i = 6; i < 16; i++) id[i] = Math.floor(Math.random() * 256);
  return id;
}

/** An honest peer on the network, with `n` events of its own. */
async function honestPeer(network: MemoryNetwork, id: string, n: number, options: { bootstrap?: string[] } = {}) {
  const db = await openDb();
  await fill(db, n);
  const replicator = new Replicator(db, network.join(id), { statusIntervalMs: 200, ...options });
  return { db, replicator };
}

// ----------------------------------------------------------------------- the engine's rows

/** `n` envelopes of a chain on a database of its own, each the child of the one before. */
async function chainOf(n: number, clock: () => number = Date.now): Promise<Uint8Array[]> {
  const source = await openDb(tempDir(), { now: clock });
  await source.transaction((tx) => {
    for (let i = 0; i < n; i++) tx.append({ add: 1 });
  });
  const bytes = [...source.messages()].map((m) => m.bytes.slice());
  await source.close();
  return bytes;
}

test.serial('row 2, memory: 20k events whose parent never comes are capped per peer, O(1) each; re-sending them and honest ingests stay fast', async (t) => {
  const network = new MemoryNetwork({ latencyMs: 1 });
  const victimDb = await openDb();
  const victim = new Replicator(victimDb, network.join('victim'), { statusIntervalMs: 100 });
  const honest = await honestPeer(network, 'honest', 5);
  const orphans = (await chainOf(20_001)).slice(1); // the first (every other's ancestor) never comes
  const watch = await MemoryWatch.start();
  // What the replicator hands the engine for one peer (its gossip queue and sessions batch it).
  let started = performance.now();
  for (let i = 0; i < orphans.length; i += 500) await victimDb.ingest(orphans.slice(i, i + 500), { peer: 'attacker' });
  const parkMs = performance.now() - started;
  t.is(victimDb.stats().parked, 20_000, 'capped at the per-peer limit');
  // Sending 4,000 of them again: each one found in O(1).
  started = performance.now();
  const again = await victimDb.ingest(orphans.slice(0, 4000), { peer: 'attacker' });
  const duplicateMs = performance.now() - started;
  t.is(again.duplicates, 4000);
  // One more is refused (the sender offers it later), not parked.
  const more = await victimDb.ingest([(await chainOf(2)).at(-1)!], { peer: 'attacker' });
  t.is(more.refused, 1);
  // An honest peer's event still gets in, at once, and the honest peer syncs.
  await honest.db.append({ add: 1 });
  await victim.syncedWith('honest', { signal: AbortSignal.timeout(10_000) });
  t.log(`parking 20,000: ${parkMs.toFixed(0)} ms (was 7.2 s); 4,000 duplicates: ${duplicateMs.toFixed(0)} ms (was 8 s)`);
  t.true(duplicateMs < 2000, 'duplicates are found without scanning');
  // The attacker leaves: what it parked goes.
  victimDb.peerLeft('attacker');
  t.is(victimDb.stats().parked, 0);
  t.is(victimDb.stats().stored, 6, 'the honest events, nothing of the attacker');
  assertMemory(t, await watch.stop(), 64, 24);
  await Promise.all([victim.stop(), honest.replicator.stop()]);
  await Promise.all([victimDb.close(), honest.db.close()]);
});

test.serial('row 5, memory: events dated before the cutoff share a budget of re-application time instead of a rebuild each', async (t) => {
  const now = Date.now();
  const network = new MemoryNetwork({ latencyMs: 1 });
  const victimDb = await openDb();
  await fill(victimDb, 20_000);
  const victim = new Replicator(victimDb, network.join('victim'), { statusIntervalMs: 100 });
  // Old events, each with a fresh salt, from a clock an hour back.
  const old: Uint8Array[] = [];
  const source = await openDb(tempDir(), { now: () => now - 3_600_000 });
  for (let i = 0; i < 30; i++) {
    const id = await source.append({ add: 0 }, { time: now - 3_600_000 + i * 1000 });
    old.push(source.message(id)!.bytes.slice());
  }
  await source.close();
  const watch = await MemoryWatch.start();
  const started = performance.now();
  let deferred = 0;
  // The newest first: every later one lands before all the others, behind the cutoff.
  for (let i = old.length - 1; i >= 0; i--) deferred += (await victimDb.ingest([old[i]!], { peer: 'old-timer' })).deferred;
  const floodMs = performance.now() - started;
  t.true(deferred > 0, 'some waited for the budget');
  t.log(`30 old events: ${floodMs.toFixed(0)} ms in the ingest calls, ${victimDb.stats().rebuilds} rebuilds, ${victimDb.stats().reapplied} events re-applied, ${deferred} deferred`);
  t.true(victimDb.stats().rebuilds + Math.ceil(victimDb.stats().reapplied / 20_000) < 30, 'far fewer re-applications than events');
  await until(() => victimDb.stats().deferred === 0, 'the queue is stored within the budget', 30_000);
  t.is(victimDb.stats().stored, 20_030);
  // Honest peers still sync.
  const honest = await honestPeer(network, 'honest', 5);
  await victim.syncedWith('honest', { signal: AbortSignal.timeout(15_000) });
  // Each turn re-applies the 20,000 events after the late ones (their decoded envelopes are
  // garbage soon after): the peak is a turn's, and there are a couple of turns, not thirty.
  assertMemory(t, await watch.stop(), 160, 48);
  await Promise.all([victim.stop(), honest.replicator.stop()]);
  await Promise.all([victimDb.close(), honest.db.close()]);
});

test.serial('row 6, memory: events dated in the year 2100 are refused, the sender is reported as clock-drift, nothing of them is stored', async (t) => {
  const network = new MemoryNetwork({ latencyMs: 1 });
  const victimDb = await openDb();
  const victim = new Replicator(victimDb, network.join('victim'), { statusIntervalMs: 100 });
  const future = await Database.open<Event, typeof Root>({
    path: tempDir(),
    root: Root,
    now: () => Date.UTC(2100, 0, 1),
    apply(event, root) {
      root.total += event.add;
    },
  });
  const fromTheFuture = new Replicator(future, network.join('future'), { statusIntervalMs: 100 });
  const watch = await MemoryWatch.start();
  for (let i = 0; i < 200; i++) await future.append({ add: 1 });
  await until(() => peer(victim, 'future')?.state === 'clock-drift', 'the peer from the future is reported as clock-drift');
  t.is(victimDb.stats().stored, 0);
  // Honest appends are not slowed down by 200 future heads: there are none.
  t.deepEqual(victimDb.heads(), []);
  const honest = await honestPeer(network, 'honest', 5);
  await victim.syncedWith('honest', { signal: AbortSignal.timeout(10_000) });
  t.is(victimDb.stats().stored, 5);
  assertMemory(t, await watch.stop(), 64, 24);
  await Promise.all([victim.stop(), fromTheFuture.stop(), honest.replicator.stop()]);
  await Promise.all([victimDb.close(), future.close(), honest.db.close()]);
});

test.serial('row 8, memory: events whose apply fails are pruned once final; a view that is full refuses the batch without an unhandled rejection', async (t) => {
  const network = new MemoryNetwork({ latencyMs: 1 });
  let clock = Date.now();
  const Small = s.object({ texts: s.list(s.string()) });
  type Text = { text: string; fail?: boolean };
  const victimDb = await Database.open<Text, typeof Small>({
    path: tempDir(),
    root: Small,
    now: () => clock,
    maxViewBytes: 256 * 1024,
    apply(event, root) {
      if (event.fail === true) throw new Error('refused here');
      root.texts.push(event.text);
    },
  });
  const victim = new Replicator(victimDb, network.join('victim'), { statusIntervalMs: 100 });
  const failed = failures(victim);
  // The attacker's build accepts what the victim's apply refuses.
  const attackerDb = await Database.open<Text, typeof Small>({
    path: tempDir(),
    root: Small,
    now: () => clock,
    apply(event, root) {
      root.texts.push(event.text);
    },
  });
  const attacker = new Replicator(attackerDb, network.join('attacker'), { statusIntervalMs: 100 });
  const watch = await MemoryWatch.start();
  await attackerDb.transaction((tx) => {
    for (let i = 0; i < 500; i++) tx.append({ text: 'x', fail: true });
  });
  await victim.syncedWith('attacker', { signal: AbortSignal.timeout(10_000) });
  t.is(victimDb.stats().failedApplies, 500);
  clock += 60 * 60_000;
  victimDb.advanceCutoff();
  attackerDb.advanceCutoff();
  t.is(victimDb.stats().failedApplies, 0, 'failed events go once the cutoff passes them');
  // Then enough text to fill the view: the batch is refused, the peer is not blamed, nothing crashes.
  await attackerDb.transaction((tx) => {
    for (let i = 0; i < 400; i++) tx.append({ text: 'y'.repeat(1000) });
  });
  await until(() => failed.some((reason) => /VIEW_FULL|view/.test(reason)) || victimDb.stats().stored !== 0, 'the full view is reported');
  t.not(peer(attacker, 'victim')?.state, 'refused');
  t.not(peer(victim, 'attacker')?.state, 'refused', 'a full view is our own failure, not the sender\'s');
  t.log(`the victim reported: ${failed.join('; ') || 'nothing'}; stored ${victimDb.stats().stored}`);
  t.notThrows(() => victimDb.read((root) => root.texts.length));
  assertMemory(t, await watch.stop(), 96, 32);
  await Promise.all([victim.stop(), attacker.stop()]);
  await Promise.all([victimDb.close(), attackerDb.close()]);
});

test.serial('row 11: append refuses an event over the envelope limit (EVENT_TOO_LARGE) instead of losing it at the next rebuild', async (t) => {
  const db = await openDb();
  const error = await t.throwsAsync(db.append({ add: 1, blob: blob(16 * MIB + 1) }));
  t.is((error as { code?: string }).code, 'EVENT_TOO_LARGE');
  t.regex((error as Error).message, /limit is 16777216 bytes/);
  t.is(db.stats().stored, 0);
  await db.compact();
  t.deepEqual(db.discarded(), []);
  await db.close();
});

// ------------------------------------------------------------------------------------- row 1

test.serial('row 1, memory: a STATUS or HELLO with a cutoff time of 2^48 gets the sender refused; the victim stays up and syncs with honest peers', async (t) => {
  const network = new MemoryNetwork({ latencyMs: 1 });
  const victimDb = await openDb();
  const victim = new Replicator(victimDb, network.join('victim'), { statusIntervalMs: 100 });
  const failed = failures(victim);
  const honest = await honestPeer(network, 'honest', 10);
  const watch = await MemoryWatch.start();
  const gossiper = network.join('gossiper');
  // 94 bytes: a status whose cutoff no id can carry. It once killed the process.
  gossiper.publish(statusFrame(FrameType.STATUS, status({ cutoffTime: 2 ** 48, previousTime: 2 ** 48 - 60_000 })));
  t.regex(await refused(victim, 'gossiper'), /48-bit/);
  const greeter = network.join('greeter');
  const session = await greeter.openSession('victim');
  await session.send(statusFrame(FrameType.HELLO, status({ cutoffTime: 2 ** 48 })));
  t.regex(await refused(victim, 'greeter'), /48-bit/, 'the same value in a HELLO is a refusal too, not just an aborted session');
  t.true(network.rejected >= 1, 'the gossip validator rejected the frame before any handler saw it');
  await victim.syncedWith('honest', { signal: AbortSignal.timeout(10_000) });
  t.deepEqual(hexIds(victimDb), hexIds(honest.db), 'the victim holds exactly the honest events');
  t.deepEqual(failed, []);
  assertMemory(t, await watch.stop(), 32, 8);
  await Promise.all([victim.stop(), honest.replicator.stop(), gossiper.stop(), greeter.stop()]);
  await Promise.all([victimDb.close(), honest.db.close()]);
});

// ------------------------------------------------------------------------------------- row 3

test.serial('row 3, memory: a peer that lists a range and defers the rest, again and again, is refused at once; memory stays flat', async (t) => {
  const network = new MemoryNetwork({ latencyMs: 1 });
  const victimDb = await openDb();
  await fill(victimDb, 2000);
  const victim = new Replicator(victimDb, network.join('victim'), { statusIntervalMs: 100 });
  const failed = failures(victim);
  const watch = await MemoryWatch.start();

  // As initiator: every message lists 500 made-up ids and defers the rest of the span.
  const hostile = network.join('deferrer');
  const session = await hostile.openSession('victim');
  await session.send(statusFrame(FrameType.HELLO, sameCutoff(victimDb, 5)));
  const lower = timeBound(victimDb.cutoffState().time);
  const upper = idAt(Date.now() + 86_400_000);
  let sent = 0;
  const attack = (async () => {
    for (let round = 0; round < 2000; round++) {
      const ids = Array.from({ length: 500 }, () => idAt(Date.now())).sort(Buffer.compare);
      const message = listThenDefer(lower, ids, upper);
      sent += message.length;
      await session.send(bytesFrame(FrameType.RECONCILE, message));
    }
  })().catch(() => {});
  t.regex(await refused(victim, 'deferrer'), /DEFER/);
  await attack;
  t.log(`the deferring peer sent ${sent} bytes before it was cut off`);

  // As responder to the victim's questions: tiny messages that defer everything.
  const staller = network.join('zz-staller'); // a larger id than the victim's: the victim starts
  staller.onSession((incoming: Session) => {
    void (async () => {
      await incoming.send(statusFrame(FrameType.HELLO, sameCutoff(victimDb, 5)));
      for await (const frame of incoming) {
        if (frame[0] === FrameType.RECONCILE) await incoming.send(bytesFrame(FrameType.RECONCILE, Uint8Array.of(1, lower.length, ...lower, 0xff, 4)));
      }
    })().catch(() => {});
  });
  t.regex(await refused(victim, 'zz-staller'), /deferred/);

  const honest = await honestPeer(network, 'honest', 20);
  await victim.syncedWith('honest', { signal: AbortSignal.timeout(10_000) });
  t.is(victimDb.stats().stored, 2020, 'nothing of the hostile peers is stored');
  t.deepEqual(failed, []);
  // The peak is the victim's and the garbage collector's: alone it is about 16 MiB, in a loaded
  // full run it was seen at 40 (before: +100 MiB a second, without end).
  assertMemory(t, await watch.stop(), 64, 8);
  await Promise.all([victim.stop(), honest.replicator.stop(), hostile.stop(), staller.stop()]);
  await Promise.all([victimDb.close(), honest.db.close()]);
});

// ------------------------------------------------------------------------------------- row 4

/** Opens `count` sessions that each claim to hold nothing (so the victim sends all it has) and read nothing. */
async function emptyHellos(attacker: Link, victim: string, count: number): Promise<Session[]> {
  const sessions: Session[] = [];
  for (let i = 0; i < count; i++) {
    try {
      const session = await attacker.openSession(victim);
      sessions.push(session);
      void session.send(statusFrame(FrameType.HELLO, status())).catch(() => {});
    } catch {
      // refused: the attacker was disconnected
    }
  }
  return sessions;
}

test.serial('row 4, memory: 60 sessions of HELLOs claiming nothing are capped at 2 for the peer, which is then refused; memory stays bounded', async (t) => {
  const network = new MemoryNetwork({ latencyMs: 1 });
  const victimDb = await openDb();
  await fill(victimDb, 20_000);
  const victim = new Replicator(victimDb, network.join('victim'), { statusIntervalMs: 200 });
  const failed = failures(victim);
  const watch = await MemoryWatch.start();
  const attacker = network.join('attacker');
  await emptyHellos(attacker, 'victim', 60);
  t.regex(await refused(victim, 'attacker'), /sessions over the limit of 2/);
  // Without the caps and the lazy range: ~287 MiB for this attack at 20k events.
  assertMemory(t, await watch.stop(), 48, 16);
  // The honest peer copies the victim's 20k events (measured apart: both run in this isolate).
  const honest = await honestPeer(network, 'honest', 50);
  await victim.syncedWith('honest', { signal: AbortSignal.timeout(20_000) });
  t.is(victimDb.stats().stored, 20_050);
  t.deepEqual(failed, []);
  await Promise.all([victim.stop(), honest.replicator.stop(), attacker.stop()]);
  await Promise.all([victimDb.close(), honest.db.close()]);
});

test.serial('row 4, memory: a peer that opens a session and goes silent is let go after the idle time, not refused', async (t) => {
  const network = new MemoryNetwork({ latencyMs: 1 });
  const victimDb = await openDb();
  await fill(victimDb, 100);
  const victim = new Replicator(victimDb, network.join('victim'), { statusIntervalMs: 200, sessionIdleMs: 300 });
  const silent = network.join('silent');
  const session = await silent.openSession('victim');
  await session.send(statusFrame(FrameType.HELLO, sameCutoff(victimDb, 5)));
  // The victim answers the HELLO and waits for the reconciliation the silent peer never starts.
  await until(() => /sent nothing for 300 ms/.test(peer(victim, 'silent')?.reason ?? ''), 'the session timed out', 5000);
  t.is(peer(victim, 'silent')!.state, 'differs', 'a stall is nobody\'s fault: retried later, not refused');
  await Promise.all([victim.stop(), silent.stop()]);
  await victimDb.close();
});

test.serial('row 4, memory: strangers holding every session they can get leave room for a peer we dialled', async (t) => {
  const network = new MemoryNetwork({ latencyMs: 1, autoConnect: false });
  const honest = await honestPeer(network, 'honest', 50);
  const victimDb = await openDb();
  await fill(victimDb, 2000);
  // A peer we dialled (a bootstrap peer) is trusted; strangers are the peers that dialled us.
  const victim = new Replicator(victimDb, network.join('victim'), { statusIntervalMs: 200, maxSessions: 4, bootstrap: ['honest'] });
  await victim.syncedWith('honest', { signal: AbortSignal.timeout(10_000) });
  // Four strangers each open a session claiming nothing and read nothing: each session waits for
  // the stranger's next frame, for the idle time (30 s).
  const strangers = ['s1', 's2', 's3', 's4'].map((id) => network.join(id));
  const held: Session[] = [];
  for (const stranger of strangers) {
    await stranger.dial('victim');
    held.push(...(await emptyHellos(stranger, 'victim', 1)));
  }
  await until(() => ['s1', 's2', 's3', 's4'].filter((id) => peer(victim, id)?.state === 'syncing').length === 2, 'two stranger sessions run');
  // Half the slots at most went to strangers: the trusted peer's next session starts at once.
  await honest.db.append({ add: 1 });
  const started = Date.now();
  await victim.syncedWith('honest', { signal: AbortSignal.timeout(5000) });
  t.log(`synced with the trusted peer ${Date.now() - started} ms after its append, with strangers holding sessions`);
  t.is(victimDb.stats().stored, 2051);
  await Promise.all([victim.stop(), honest.replicator.stop(), ...strangers.map((stranger) => stranger.stop())]);
  await Promise.all([victimDb.close(), honest.db.close()]);
});

test.serial('row 4, memory: a peer that keeps its session alive with EVENTS frames of no events is refused', async (t) => {
  const network = new MemoryNetwork({ latencyMs: 1 });
  const victimDb = await openDb();
  await fill(victimDb, 10);
  const victim = new Replicator(victimDb, network.join('victim'), { statusIntervalMs: 200 });
  const failed = failures(victim);
  const attacker = network.join('keepalive');
  const session = await attacker.openSession('victim');
  await session.send(statusFrame(FrameType.HELLO, sameCutoff(victimDb, 5)));
  // An EVENTS frame: its type, then a count of 0 (u32).
  await session.send(Uint8Array.of(FrameType.EVENTS, 0, 0, 0, 0)).catch(() => {});
  t.regex(await refused(victim, 'keepalive'), /EVENTS frame without events/);
  t.deepEqual(failed, []);
  await Promise.all([victim.stop(), attacker.stop()]);
  await victimDb.close();
});

test.serial('row 4, memory: a peer that takes a whole copy and hangs up at the end, again and again, gets three copies in three minutes', async (t) => {
  const network = new MemoryNetwork({ latencyMs: 1 });
  const victimDb = await openDb();
  await fill(victimDb, 3000);
  const victim = new Replicator(victimDb, network.join('victim'), { statusIntervalMs: 200 });
  const failed = failures(victim);
  const attacker = network.join('copier');
  const received: number[] = [];
  for (let round = 0; round < 8; round++) {
    const session = await attacker.openSession('victim');
    await session.send(statusFrame(FrameType.HELLO, status()));
    await session.send(idsFrame(FrameType.WANT, []));
    let events = 0;
    try {
      // Every batch acknowledged, so that the victim sends the whole copy; then, at its END, gone.
      for await (const bytes of session) {
        const frame = decodeFrame(bytes);
        if (frame.type === FrameType.EVENTS) {
          events += frame.envelopes.length;
          await session.send(ackFrame(frame.envelopes.length));
        } else if (frame.type === FrameType.END) break;
      }
    } catch {
      // the victim ended the session
    }
    session.abort(new Error('hanging up'));
    received.push(events);
  }
  t.log(`events sent per session: ${received.join(', ')}`);
  t.deepEqual(received.slice(0, 3), [3000, 3000, 3000], 'three whole copies');
  t.true(received.slice(3).reduce((a, b) => a + b, 0) <= 300, 'then next to nothing until the budget refills');
  t.not(peer(victim, 'copier')?.state, 'refused', 'nobody is refused for it: it may ask again later');
  t.deepEqual(failed, []);
  await Promise.all([victim.stop(), attacker.stop()]);
  await victimDb.close();
});

test.serial('row 4, memory: a neighbour that pushes an event we hold over and over is refused', async (t) => {
  const network = new MemoryNetwork({ latencyMs: 1 });
  const victimDb = await openDb();
  await victimDb.append({ add: 1 });
  const held = [...victimDb.messages()][0]!.bytes.slice();
  const victim = new Replicator(victimDb, network.join('victim'), { statusIntervalMs: 200 });
  const failed = failures(victim);
  const pusher = network.join('pusher');
  await pusher.dial('victim');
  // Each copy is dropped unread (its hash not checked); more than 10,000 in 10 s is a fault.
  for (let i = 0; i < 10_500 && peer(victim, 'pusher')?.state !== 'refused'; i++) {
    pusher.sendDirect('victim', bytesFrame(FrameType.EVENT, held));
    if (i % 500 === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  t.regex(await refused(victim, 'pusher'), /pushed events within 10 s that we held already/);
  t.is(victimDb.stats().stored, 1);
  t.deepEqual(failed, []);
  await Promise.all([victim.stop(), pusher.stop()]);
  await victimDb.close();
});

// --------------------------------------------------------------------------------- rows 7, 12

/** A payload of `bytes` bytes (with a pattern, so a damaged copy would show). */
function blob(bytes: number): Uint8Array {
  const out = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i += 4093) out[i] = (i >>> 12) & 0xff;
  return out;
}

/** The largest blob whose event the engine accepts: the payload limit (16 MiB) minus MessagePack's framing. */
const LARGEST_BLOB = 16 * MIB - 64;

/**
 * Writes, reads and ingests one event of the largest size in scratch databases, before memory is
 * measured: the codec and the log keep their grown buffers for reuse (about 80 MiB once a 16 MiB
 * event went through, the same after any number of them), which is not what the tests measure.
 */
async function warmUpLargeEvents(): Promise<void> {
  const [from, to] = [await openDb(), await openDb()];
  const id = await from.append({ add: 0, blob: blob(LARGEST_BLOB) });
  await to.ingest([from.message(id)!.bytes]);
  await Promise.all([from.close(), to.close()]);
}

test.serial('row 7, memory: honest events of 5 MiB and of the largest size the engine accepts replicate; nobody is refused', async (t) => {
  const network = new MemoryNetwork({ latencyMs: 1 });
  const a = await honestPeer(network, 'a', 3);
  const b = await honestPeer(network, 'b', 3);
  const refusals = [failures(a.replicator), failures(b.replicator)];
  await warmUpLargeEvents();
  const watch = await MemoryWatch.start();
  await a.db.append({ add: 1, blob: blob(5 * MIB) });
  await a.db.append({ add: 1, blob: blob(LARGEST_BLOB) });
  await b.replicator.syncedWith('a', { signal: AbortSignal.timeout(30_000) });
  t.deepEqual(hexIds(b.db), hexIds(a.db), 'b holds every event of a, the large ones included');
  t.is(b.db.read((root) => root.bytes), 5 * MIB + LARGEST_BLOB);
  for (const [r, other] of [[a.replicator, 'b'], [b.replicator, 'a']] as const) {
    t.not(peer(r, other)?.state, 'refused', 'honest peers never refuse each other');
  }
  t.deepEqual(refusals, [[], []]);
  await Promise.all([a.replicator.stop(), b.replicator.stop()]);
  await Promise.all([a.db.close(), b.db.close()]);
  // Both peers run in this isolate: the writer's event, encoding and log copies, the reader's
  // assembly, decoding and log copies of a 16 MiB event (the network's share is the assembly,
  // bounded by largeEventBytes, 64 MiB). Bound: 16 times the largest event. What is kept is
  // measured once the databases are closed: an open database keeps its codec's and log's buffers
  // grown to the largest event it saw (tens of MiB), and up to two such copies were seen to stay
  // after the close; none of it is the network's (stopping the replicators frees nothing more).
  assertMemory(t, await watch.stop(), 256, 48);
});

test.serial('row 12, memory: a 5 MiB event written while connected does not hold back the events after it', async (t) => {
  const network = new MemoryNetwork({ latencyMs: 1 });
  const a = await honestPeer(network, 'a', 3);
  const b = await honestPeer(network, 'b', 3);
  await b.replicator.syncedWith('a', { signal: AbortSignal.timeout(10_000) });
  // One large event first, so that buffers that grow once (LMDB's write buffer, say) have grown
  // before the watch starts: what is kept is then what the scenario keeps.
  await a.db.append({ add: 0, blob: blob(5 * MIB) });
  await until(() => b.db.stats().stored === a.db.stats().stored, 'b holds the first large event', 10_000);
  const watch = await MemoryWatch.start();
  for (let i = 0; i < 3; i++) await a.db.append({ add: 1 });
  await a.db.append({ add: 1, blob: blob(5 * MIB) });
  for (let i = 0; i < 3; i++) await a.db.append({ add: 1 });
  // Not syncedWith (which starts a session at once): the events must get there on their own.
  await until(() => b.db.stats().stored === a.db.stats().stored, 'b holds all of a', 10_000);
  t.deepEqual(hexIds(b.db), hexIds(a.db));
  await until(() => peer(b.replicator, 'a')?.expecting === 0, 'nothing expected any more', 5000);
  t.true(b.replicator.peers().every((p) => p.state !== 'refused' && p.state !== 'disconnected'), JSON.stringify(b.replicator.peers()));
  // Both peers in this isolate. The peak counts the copies of the event that garbage collection
  // has not freed yet, so it spreads widely from run to run of the same code: 0.1–96.8 MiB in six
  // runs on 5 Dec (three of them on the code before that day's changes, one of those over 80);
  // on 6 Dec +60 to +92 MiB alone, on the code before and after that day's change alike, and up to
  // +121 MiB in CI runs with the other test files beside it. So 32 times the event: what it guards
  // against, events held back or piling up, grows with their number, not with when the collector
  // runs; what stays after a collection is bounded tightly.
  assertMemory(t, await watch.stop(), 160, 16);
  await Promise.all([a.replicator.stop(), b.replicator.stop()]);
  await Promise.all([a.db.close(), b.db.close()]);
});

// ------------------------------------------------------------------------------------- row 9

test.serial('row 9, memory: peers whose clocks are hours apart report clock-drift and back off instead of retrying every 20 ms', async (t) => {
  const network = new MemoryNetwork({ latencyMs: 1 });
  const victimDb = await openDb();
  await fill(victimDb, 10);
  const driftDb = await openDb(tempDir(), { now: () => Date.now() + 3 * 3_600_000 });
  await fill(driftDb, 10);
  const watch = await MemoryWatch.start();
  const victim = new Replicator(victimDb, network.join('victim'), { statusIntervalMs: 100 });
  const drifting = new Replicator(driftDb, network.join('drifting'), { statusIntervalMs: 100 });
  const events: string[] = [];
  victim.addEventListener('peer:clock-drift', (event) => events.push((event as CustomEvent<{ peerId: string }>).detail.peerId));
  await until(() => peer(victim, 'drifting')?.state === 'clock-drift', 'clock-drift reported');
  t.regex(peer(victim, 'drifting')!.reason!, /clock drift/);
  t.deepEqual(events, ['drifting'], 'one event for it');
  // Three seconds of a drifting peer: sessions every 20 ms would be ~150. The backoff doubles
  // from 100 ms: about log2(3000 / 100) + 1 of them, whichever side starts them.
  const before = peer(victim, 'drifting')!.sessions;
  const started = Date.now();
  await until(() => Date.now() - started >= 3000, 'three seconds', 5000);
  const sessions = peer(victim, 'drifting')!.sessions - before;
  t.log(`${sessions} sessions in 3 s`);
  t.true(sessions <= 12, `${sessions} sessions in 3 s`);
  t.is(peer(victim, 'drifting')!.state, 'clock-drift');
  t.true((peer(victim, 'drifting')!.retryAt ?? 0) > Date.now(), 'the next attempt waits');
  assertMemory(t, await watch.stop(), 32, 8);
  await Promise.all([victim.stop(), drifting.stop()]);
  await Promise.all([victimDb.close(), driftDb.close()]);
});

test.serial('issue 13: peers whose stored sets legitimately differ report differs with the reason and back off, never spin', async (t) => {
  const network = new MemoryNetwork({ latencyMs: 1 });
  const dbA = await openDb();
  const dbB = await openDb();
  await fill(dbA, 10);
  // B's database claims another finalized past than it stores: every session ends with statuses
  // that still differ, as with two peers that pruned differently.
  const lying: ReplicatedDatabase = {
    ids: () => dbB.ids(),
    subscribe: (listener) => dbB.subscribe(listener),
    cutoffState: () => ({ ...dbB.cutoffState(), hash: new Uint8Array(16).fill(9) }),
    cutoffStrideMs: dbB.cutoffStrideMs,
    advanceCutoff: () => dbB.advanceCutoff(),
    ingest: (batch) => dbB.ingest(batch),
    message: (id) => dbB.message(id),
  };
  const a = new Replicator(dbA, network.join('a'), { statusIntervalMs: 100 });
  const b = new Replicator(lying, network.join('b'), { statusIntervalMs: 100 });
  const differs: string[] = [];
  a.addEventListener('peer:differs', (event) => differs.push((event as CustomEvent<{ reason: string }>).detail.reason));
  await until(() => peer(a, 'b')?.state === 'differs', 'differs reported');
  const started = Date.now();
  const before = peer(a, 'b')!.sessions;
  await until(() => Date.now() - started >= 3000, 'three seconds', 5000);
  const sessions = peer(a, 'b')!.sessions - before;
  t.log(`${sessions} sessions in 3 s; reason: ${peer(a, 'b')!.reason}`);
  t.true(sessions <= 12, `${sessions} sessions in 3 s (every 20 ms would be ~150)`);
  t.is(peer(a, 'b')!.state, 'differs');
  t.regex(peer(a, 'b')!.reason!, /finalized pasts differ/);
  t.true(differs.length >= 1 && differs.every((reason) => /finalized pasts differ/.test(reason)));
  t.is(dbB.stats().stored, 10, 'the events still crossed');
  await Promise.all([a.stop(), b.stop()]);
  await Promise.all([dbA.close(), dbB.close()]);
});

// ------------------------------------------------------------------------------------ row 10

test.serial('row 10, memory: over 1100 fresh peer ids committing every kind of fault are all refused, tables stay bounded, an honest newcomer still gets in', async (t) => {
  const network = new MemoryNetwork({ latencyMs: 1, autoConnect: false });
  const victimDb = await openDb();
  await fill(victimDb, 100);
  const victim = new Replicator(victimDb, network.join('victim'), { statusIntervalMs: 200, maxStrangers: 12, strangerGraceMs: 300 });
  const failed = failures(victim);
  const { forged } = await (async () => {
    const scratch = await openDb();
    await scratch.append({ add: 5 });
    const valid = [...scratch.messages()][0]!.bytes.slice();
    await scratch.close();
    const copy = valid.slice();
    copy[copy.length - 1]! ^= 1;
    return { forged: copy };
  })();
  const faults: ((link: Link) => Promise<void>)[] = [
    async (link) => link.publish(Uint8Array.of(0xee, 1, 2)),
    async (link) => link.publish(bytesFrame(FrameType.EVENT, forged)),
    async (link) => {
      const session = await link.openSession('victim');
      await session.send(Uint8Array.of(FrameType.HELLO, 1, 2, 3));
    },
    async (link) => void (await emptyHellos(link, 'victim', 30)),
  ];
  const watch = await MemoryWatch.start();
  let admitted = 0;
  let honest: Awaited<ReturnType<typeof honestPeer>> | undefined;
  for (let wave = 0; admitted <= 1100 && wave < 600; wave++) {
    const links = Array.from({ length: 16 }, (_, i) => network.join(`fresh-${wave}-${i}`));
    const inside: string[] = [];
    await Promise.all(
      links.map(async (link, i) => {
        try {
          await link.dial('victim');
        } catch {
          return; // turned away: the strangers' places are taken
        }
        inside.push(link.peerId);
        await faults[(wave + i) % faults.length]!(link).catch(() => {});
      }),
    );
    admitted += inside.length;
    t.true(inside.length <= 12, `wave ${wave}: ${inside.length} strangers let in at once`);
    // Once the attack is in full swing, an honest newcomer joins; it dials its bootstrap peer.
    if (wave === 40) honest = await honestPeer(network, 'honest', 30, { bootstrap: ['victim'] });
    await until(() => inside.every((id) => peer(victim, id)?.state === 'refused'), `wave ${wave}: every fault refused`, 5000);
    await Promise.all(links.map((link) => link.stop()));
  }
  t.log(`${admitted} fresh ids were let in (at most 12 at once), each refused for its fault`);
  t.true(admitted > 1024, 'enough faults to overflow the peer table');
  await victim.syncedWith('honest', { signal: AbortSignal.timeout(15_000) });
  const infos = victim.peers();
  t.true(infos.length <= 1024, `peers() holds ${infos.length} records`);
  t.true(infos.filter((p) => p.peerId.startsWith('fresh-')).every((p) => p.state === 'refused' || p.state === 'disconnected'));
  t.true(infos.filter((p) => p.state === 'refused').length >= 1000, 'every fault was refused (the oldest records forgotten)');
  t.is(victimDb.stats().stored, 130, 'only the honest events are stored');
  t.deepEqual(failed, []);
  assertMemory(t, await watch.stop(), 64, 24);
  await Promise.all([victim.stop(), honest!.replicator.stop()]);
  await Promise.all([victimDb.close(), honest!.db.close()]);
});

// ------------------------------------------------------------------------------------ row 13

test.serial('row 13, memory: a restarted bootstrap peer is found again by the others, with no dial of their own', async (t) => {
  const network = new MemoryNetwork({ latencyMs: 1, autoConnect: false });
  const hubDb = await openDb();
  let hub = new Replicator(hubDb, network.join('hub'), { statusIntervalMs: 200 });
  const b = await honestPeer(network, 'b', 5, { bootstrap: ['hub'] });
  const c = await honestPeer(network, 'c', 5, { bootstrap: ['hub'] });
  await b.replicator.syncedWith('hub', { signal: AbortSignal.timeout(10_000) });
  await c.replicator.syncedWith('hub', { signal: AbortSignal.timeout(10_000) });
  const watch = await MemoryWatch.start();
  await hub.stop();
  await until(() => peer(b.replicator, 'hub')?.state === 'disconnected', 'b sees the hub go');
  hub = new Replicator(hubDb, network.join('hub'), { statusIntervalMs: 200 }); // no bootstrap of its own
  await fill(hubDb, 3);
  const restarted = Date.now();
  const signal = AbortSignal.timeout(10_000);
  await Promise.all([b.replicator.syncedWith('hub', { signal }), c.replicator.syncedWith('hub', { signal })]);
  t.log(`b and c synced with the restarted hub ${Date.now() - restarted} ms after it came back`);
  await until(() => b.db.stats().stored === 13 && c.db.stats().stored === 13, 'everyone holds everything');
  // The other side restarts too: b comes back and dials its bootstrap peer.
  await b.replicator.stop();
  const b2 = new Replicator(b.db, network.join('b'), { statusIntervalMs: 200, bootstrap: ['hub'] });
  await b2.syncedWith('hub', { signal: AbortSignal.timeout(10_000) });
  assertMemory(t, await watch.stop(), 32, 8);
  await Promise.all([hub.stop(), b2.stop(), c.replicator.stop()]);
  await Promise.all([hubDb.close(), b.db.close(), c.db.close()]);
});

// ---------------------------------------------------------------------------- over libp2p

test.serial('row 1, libp2p: a gossiped STATUS with a cutoff of 2^48 gets its author refused and is not relayed; the victim syncs on', async (t) => {
  const victimDb = await openDb();
  const victim = await Replicator.start(victimDb, { listen: LOOPBACK, topic: 'row1', statusIntervalMs: 200 });
  const failed = failures(victim);
  const watcher = await Libp2pLink.start({ listen: LOOPBACK, topic: 'row1' });
  const hostile = await Libp2pLink.start({ listen: LOOPBACK, topic: 'row1' });
  const relayed: string[] = [];
  watcher.onGossip((from) => relayed.push(from));
  const honestDb = await openDb();
  await fill(honestDb, 10);
  let honest: Replicator | undefined;
  try {
    const watch = await MemoryWatch.start();
    await watcher.dial(victim.multiaddrs[0]!);
    await hostile.dial(victim.multiaddrs[0]!);
    // Gossip reaches the victim once it has the hostile peer's subscription: publish until refused,
    // a different frame each time (gossipsub drops a message it has published before, so a first
    // one that went out before the subscription arrived would never be sent again).
    let sent = 0;
    const timer = setInterval(() => hostile.publish(statusFrame(FrameType.STATUS, status({ cutoffTime: 2 ** 48 + sent++ }))), 50);
    const reason = await refused(victim, hostile.peerId).finally(() => clearInterval(timer));
    t.regex(reason, /48-bit/);
    const greeter = await Libp2pLink.start({ listen: LOOPBACK, topic: 'row1' });
    await greeter.dial(victim.multiaddrs[0]!);
    const session = await greeter.openSession(victim.peerId);
    await session.send(statusFrame(FrameType.HELLO, status({ cutoffTime: 2 ** 48 })));
    t.regex(await refused(victim, greeter.peerId), /48-bit/);
    await greeter.stop();
    honest = await Replicator.start(honestDb, { listen: LOOPBACK, topic: 'row1', bootstrap: [victim.multiaddrs[0]!], statusIntervalMs: 200 });
    await victim.syncedWith(honest.peerId, { signal: AbortSignal.timeout(10_000) });
    t.false(relayed.includes(hostile.peerId), 'the victim did not relay the hostile frame');
    t.deepEqual(hexIds(victimDb), hexIds(honestDb));
    t.deepEqual(failed, []);
    assertMemory(t, await watch.stop(), 48, 16);
  } finally {
    await Promise.all([victim.stop(), watcher.stop(), hostile.stop(), honest?.stop()]);
    await Promise.all([victimDb.close(), honestDb.close()]);
  }
});

test.serial('direct frames, libp2p: an offer then a frame of no known type gets the sender refused; the victim does not crash on the ask it had queued, and syncs on', async (t) => {
  const victimDb = await openDb();
  const victim = await Replicator.start(victimDb, { listen: LOOPBACK, topic: 'direct', statusIntervalMs: 200 });
  const failed = failures(victim);
  const hostile = await Libp2pLink.start({ listen: LOOPBACK, topic: 'direct' });
  const honestDb = await openDb();
  await fill(honestDb, 10);
  let honest: Replicator | undefined;
  try {
    await hostile.dial(victim.multiaddrs[0]!);
    // The victim's direct stream to it is open once its keepalive status arrived.
    let fromVictim = 0;
    hostile.onDirect({ frame: () => void fromVictim++, fault: () => {} });
    await until(() => fromVictim > 0, 'a direct frame from the victim');
    // The victim asks for the offered id at the end of its turn, just as it hangs up on the
    // garbage: the ask meets a stream that is closing (that used to throw out of a timer).
    const offers = Array.from({ length: 50 }, (_, i) => Uint8Array.from({ length: 16 }, (_, k) => (i * 31 + k) & 0xff));
    hostile.sendDirect(victim.peerId, idsFrame(FrameType.IHAVE, offers));
    hostile.sendDirect(victim.peerId, Uint8Array.of(99, 1, 2, 3));
    t.regex(await refused(victim, hostile.peerId), /unknown frame type 99/);
    honest = await Replicator.start(honestDb, { listen: LOOPBACK, topic: 'direct', bootstrap: [victim.multiaddrs[0]!], statusIntervalMs: 200 });
    await victim.syncedWith(honest.peerId, { signal: AbortSignal.timeout(10_000) });
    t.deepEqual(hexIds(victimDb), hexIds(honestDb));
    t.deepEqual(failed, []);
  } finally {
    await Promise.all([victim.stop(), hostile.stop(), honest?.stop()]);
    await Promise.all([victimDb.close(), honestDb.close()]);
  }
});

test.serial('row 4, libp2p: 60 streams of HELLOs claiming nothing are capped and the peer refused; memory stays bounded', async (t) => {
  const victimDb = await openDb();
  await fill(victimDb, 20_000);
  const victim = await Replicator.start(victimDb, { listen: LOOPBACK, topic: 'row4', statusIntervalMs: 500 });
  const failed = failures(victim);
  const attacker = await Libp2pLink.start({ listen: LOOPBACK, topic: 'row4' });
  const honestDb = await openDb();
  await fill(honestDb, 20);
  let honest: Replicator | undefined;
  try {
    const watch = await MemoryWatch.start();
    await attacker.dial(victim.multiaddrs[0]!);
    for (let round = 0; round < 6 && peer(victim, attacker.peerId)?.state !== 'refused'; round++) {
      await emptyHellos(attacker, victim.peerId, 10);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    t.regex(await refused(victim, attacker.peerId), /sessions over the limit/);
    // The peak includes garbage not yet collected from streaming 20k events twice over libp2p.
    assertMemory(t, await watch.stop(), 96, 24);
    honest = await Replicator.start(honestDb, { listen: LOOPBACK, topic: 'row4', bootstrap: [victim.multiaddrs[0]!], statusIntervalMs: 500 });
    await victim.syncedWith(honest.peerId, { signal: AbortSignal.timeout(30_000) });
    t.is(victimDb.stats().stored, 20_020);
    t.deepEqual(failed, []);
  } finally {
    await Promise.all([victim.stop(), attacker.stop(), honest?.stop()]);
    await Promise.all([victimDb.close(), honestDb.close()]);
  }
});

/** Two replicators over libp2p on 127.0.0.1, b bootstrapped to a, synced with each other. */
async function libp2pPair(topic: string) {
  const dbA = await openDb();
  const dbB = await openDb();
  await fill(dbA, 3);
  const a = await Replicator.start(dbA, { listen: LOOPBACK, topic, statusIntervalMs: 500 });
  const b = await Replicator.start(dbB, { listen: LOOPBACK, topic, bootstrap: [a.multiaddrs[0]!], statusIntervalMs: 500 });
  const troubles = [failures(a), failures(b)];
  await b.syncedWith(a.peerId, { signal: AbortSignal.timeout(10_000) });
  const stop = async () => {
    await Promise.all([a.stop(), b.stop()]);
    await Promise.all([dbA.close(), dbB.close()]);
  };
  /** Neither refused the other, and neither reported a failure of its own. */
  const friendly = (t: ExecutionContext) => {
    for (const [r, other] of [[a, b.peerId], [b, a.peerId]] as const) {
      t.true(['synced', 'syncing', 'differs', 'connected'].includes(peer(r, other)?.state ?? ''), `still connected and never refused: ${JSON.stringify(peer(r, other))}`);
    }
    t.deepEqual(troubles, [[], []]);
  };
  return { dbA, dbB, a, b, stop, friendly };
}

test.serial('row 7, libp2p: an honest event of the largest size the engine accepts replicates; nobody is refused', async (t) => {
  const { dbA, dbB, stop, friendly } = await libp2pPair('row7');
  try {
    await warmUpLargeEvents();
    const watch = await MemoryWatch.start();
    await dbA.append({ add: 1, blob: blob(LARGEST_BLOB) });
    await until(() => dbB.stats().stored === dbA.stats().stored, 'b holds all of a', 30_000);
    t.deepEqual(hexIds(dbB), hexIds(dbA));
    t.is(dbB.read((root) => root.bytes), LARGEST_BLOB);
    friendly(t);
    await stop();
    // As in row 7 on the in-memory link: kept memory measured once the databases are closed.
    assertMemory(t, await watch.stop(), 256, 48);
  } finally {
    await stop();
  }
});

test.serial('row 12, libp2p: a 5 MiB event written while connected does not hold back the events after it', async (t) => {
  const { dbA, dbB, stop, friendly } = await libp2pPair('row12');
  try {
    await warmUpLargeEvents();
    const watch = await MemoryWatch.start();
    for (let i = 0; i < 3; i++) await dbA.append({ add: 1 });
    await dbA.append({ add: 1, blob: blob(5 * MIB) });
    for (let i = 0; i < 3; i++) await dbA.append({ add: 1 });
    // No syncedWith (it would start a session at once): the events must get there on their own.
    await until(() => dbB.stats().stored === dbA.stats().stored, 'b holds all of a', 10_000);
    t.deepEqual(hexIds(dbB), hexIds(dbA));
    friendly(t);
    await stop();
    // Both peers are in this isolate, and the event is copied several times on its way (encoded,
    // stored in a run, each side's commit buffer of 8 MiB, the parts, the assembled envelope): the
    // peak counts those copies until a collection frees them, which V8 starts later on a loaded
    // machine. Peaks seen: +25 to +72 MiB alone, +103 MiB once in a CI run with the other test files
    // running beside it; the same bound as the in-memory row 12 (32 times the event). What stays
    // after a collection is the bound that matters (kept).
    assertMemory(t, await watch.stop(), 160, 48);
  } finally {
    await stop();
  }
});

test.serial('row 10, libp2p: fresh peer ids from one address are held to the per-address limits, which trusted networks lift', async (t) => {
  const victimDb = await openDb();
  const victim = await Replicator.start(victimDb, { listen: LOOPBACK, topic: 'row10', statusIntervalMs: 1000, maxStrangers: 64 });
  const trustingDb = await openDb();
  const trusting = await Replicator.start(trustingDb, { listen: LOOPBACK, topic: 'row10', statusIntervalMs: 1000, maxStrangers: 64, trustedNetworks: LOOPBACK_NETWORKS });
  const fresh = await Promise.all(Array.from({ length: 12 }, () => Libp2pLink.start({ listen: LOOPBACK, topic: 'row10' })));
  try {
    const dialled = async (target: Replicator) => (await Promise.allSettled(fresh.map((link) => link.dial(target.multiaddrs[0]!)))).filter((r) => r.status === 'fulfilled').length;
    const limited = await dialled(victim);
    const lifted = await dialled(trusting);
    t.log(`12 fresh ids from 127.0.0.1 at once: ${limited} connected by default, ${lifted} with loopback trusted`);
    t.true(limited >= 1 && limited <= 8, `${limited} connections from one address (limits: 5 new a second, 8 at once)`);
    t.is(lifted, 12);
  } finally {
    await Promise.all([victim.stop(), trusting.stop(), ...fresh.map((link) => link.stop())]);
    await Promise.all([victimDb.close(), trustingDb.close()]);
  }
});

const peerScript = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'peer.ts');

/** A replicating peer process (test/net/fixtures/peer.ts) answering JSON lines. */
class PeerChild {
  readonly child: Child;
  peerId = '';
  address = '';

  constructor(dir: string, bootstrap: string[], listen = LOOPBACK[0]!) {
    this.child = run(['--import=tsx', peerScript, dir, 'row13', bootstrap.length === 0 ? '-' : bootstrap.join(','), listen]);
  }

  async ready(): Promise<this> {
    const line = await this.child.waitFor(/"type":"ready".*/, 30_000);
    const reply = JSON.parse(line.input!) as { peerId: string; multiaddrs: string[] };
    this.peerId = reply.peerId;
    this.address = reply.multiaddrs[0]!;
    return this;
  }

  async ask(command: object, type: string, timeoutMs = 30_000): Promise<Record<string, unknown>> {
    const before = this.child.lines.length;
    this.child.send(JSON.stringify(command));
    const end = Date.now() + timeoutMs;
    for (;;) {
      const line = this.child.lines.slice(before).find((l) => l.includes(`"type":"${type}"`));
      if (line !== undefined) return JSON.parse(line) as Record<string, unknown>;
      if (Date.now() > end || this.child.process.exitCode !== null) throw new Error(`no ${type} reply; output:\n${this.child.output}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
}

test.serial('row 13, libp2p: a bootstrap peer in its own process stops and restarts; the others reconnect and sync within 10 s without a dial of their own', async (t) => {
  const hubDir = tempDir();
  let hub = await new PeerChild(hubDir, []).ready();
  const hubAddress = hub.address;
  const others = await Promise.all([new PeerChild(tempDir(), [hubAddress]).ready(), new PeerChild(tempDir(), [hubAddress]).ready()]);
  try {
    await hub.ask({ cmd: 'write', n: 5, seed: 1 }, 'wrote');
    for (const other of others) await other.ask({ cmd: 'sync', peers: [hub.peerId] }, 'synced');
    await hub.ask({ cmd: 'stop' }, 'stopped');
    await hub.child.exited();
    // The same directory (so the same identity) on the same address: a restart.
    const port = /\/tcp\/(\d+)/.exec(hubAddress)![1]!;
    hub = await new PeerChild(hubDir, [], `/ip4/127.0.0.1/tcp/${port}`).ready();
    const restarted = Date.now();
    await hub.ask({ cmd: 'write', n: 5, seed: 2 }, 'wrote');
    await Promise.all(others.map((other) => other.ask({ cmd: 'sync', peers: [hub.peerId] }, 'synced', 10_000)));
    const took = Date.now() - restarted;
    t.log(`both peers synced with the restarted hub ${took} ms after it was up`);
    t.true(took <= 10_000);
    const states = await Promise.all([hub, ...others].map((p) => p.ask({ cmd: 'state' }, 'state')));
    t.is(states[0]!.stored, 10);
    for (const state of states) t.is(state.ids, states[0]!.ids);
  } finally {
    for (const p of [hub, ...others]) {
      if (p.child.process.exitCode === null) await p.ask({ cmd: 'stop' }, 'stopped').catch(() => p.child.stop('SIGKILL'));
    }
  }
});
