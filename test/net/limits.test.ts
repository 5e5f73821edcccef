/**
 * The pieces that bound what a peer can make a node hold or do, each on its own: the ban table,
 * the peer table and its strangers, session counts and strikes, the large-event budget, the id
 * queues, backoff, redial, the frames' range checks, the reconciliation's deferral rule, and the
 * replicator's option checks.
 */
import test from 'ava';
import { ErrorCode, NoatunError } from '../../src/errors.js';
import { addressKey, TrustedNetworks } from '../../src/net/address.js';
import { Backoff } from '../../src/net/backoff.js';
import { BanTable } from '../../src/net/ban-table.js';
import { MAX_PEER_RECORDS, MAX_SESSION_STRIKES } from '../../src/net/constants.js';
import { faultOf, LimitError, SessionTimeoutError } from '../../src/net/faults.js';
import { FINGERPRINT_BYTES, FingerprintIndex, timeBound } from '../../src/net/fingerprint-index.js';
import { decodeFrame, eventPartFrame, FrameType, statusFrame } from '../../src/net/frames.js';
import { IdQueue, MergedIds, RangeCursor, successor } from '../../src/net/id-queue.js';
import type { Link, Session } from '../../src/net/link.js';
import { MemoryNetwork } from '../../src/net/memory-link.js';
import { PeerTable } from '../../src/net/peer-table.js';
import { Reconciler } from '../../src/net/reconcile.js';
import { Redialer } from '../../src/net/redial.js';
import { Replicator } from '../../src/net/replicator.js';
import { ByteBudget, maxReconcileRounds, SessionLimits } from '../../src/net/session-limits.js';
import { prng } from '../helpers/temp.js';

function id(n: number): Uint8Array {
  const out = new Uint8Array(16);
  new DataView(out.buffer).setUint32(12, n, false);
  out[0] = 1;
  return out;
}

const hex = (bytes: Uint8Array | undefined) => (bytes === undefined ? 'none' : Buffer.from(bytes).toString('hex'));

test('the ban table expires bans and forgets the oldest beyond its size', (t) => {
  let now = 1000;
  const bans = new BanTable({ banMs: 100, maxEntries: 3, now: () => now });
  for (const peer of ['a', 'b', 'c', 'd']) bans.ban(peer, `bad ${peer}`);
  t.false(bans.has('a'), 'the oldest ban was forgotten to stay within 3');
  t.true(bans.has('d'));
  t.is(bans.reason('b'), 'bad b');
  t.is(bans.size, 3);
  now += 100;
  t.false(bans.has('b'), 'expired');
  t.is(bans.size, 0);
  bans.ban('e', 'again');
  t.is(bans.until('e'), now + 100);
});

test('the peer table forgets disconnected idle peers first and never beyond its size', (t) => {
  const table = new PeerTable(() => new Backoff({ minMs: 1, maxMs: 2 }), 4);
  const connected = table.ensure('connected');
  connected.connected = true;
  for (let i = 0; i < 10; i++) table.ensure(`gone-${i}`);
  t.is(table.size, 4);
  t.truthy(table.get('connected'), 'a connected peer is never forgotten');
  t.truthy(table.get('gone-9'), 'the newest stays');
  t.falsy(table.get('gone-0'));
  t.is(MAX_PEER_RECORDS, 1024);
});

test('strangers beyond the cap are turned away until one has outstayed its grace', (t) => {
  let now = 0;
  const table = new PeerTable(() => new Backoff({ minMs: 1, maxMs: 2 }), 100, () => now);
  for (const peer of ['s1', 's2']) {
    const record = table.ensure(peer);
    record.connected = true;
    record.connectedAt = now;
  }
  const friend = table.ensure('friend');
  friend.connected = true;
  friend.trusted = true;
  t.deepEqual(table.admitStranger('s3', 2, 1000), { admit: false });
  now = 1001;
  t.deepEqual(table.admitStranger('s3', 2, 1000), { admit: true, evict: 's1' });
  t.deepEqual(table.admitStranger('s3', 3, 1000), { admit: true }, 'trusted peers do not count');
  const s1 = table.get('s1')!;
  s1.state = 'refused';
  s1.refusedUntil = now + 60_000;
  t.deepEqual(table.admitStranger('s3', 2, 1000), { admit: true }, 'nor do refused ones, on their way out');
});

test('session limits: a total cap, a per-peer cap, and strikes that end in a refusal', (t) => {
  const limits = new SessionLimits(3, 2, () => 0);
  t.is(limits.check('a'), undefined);
  limits.open('a');
  limits.open('a');
  t.is(limits.check('a'), 'peer');
  limits.open('b');
  t.is(limits.check('c'), 'total');
  limits.close('a');
  t.is(limits.check('a'), undefined);
  let refused = false;
  for (let i = 0; i <= MAX_SESSION_STRIKES && !refused; i++) refused = limits.strike('a');
  t.true(refused, `refused after ${MAX_SESSION_STRIKES + 1} strikes`);
  t.true(maxReconcileRounds(0) < maxReconcileRounds(1_000_000));
  t.is(maxReconcileRounds(2_000_000), 32 + 4 * 21);
});

test('session limits: strangers take half of the sessions at most, trusted peers the rest', (t) => {
  const limits = new SessionLimits(5, 2, () => 0);
  for (const id of ['s1', 's2', 's3']) {
    t.is(limits.check(id, true), undefined);
    limits.open(id, true);
  }
  t.is(limits.check('s4', true), 'strangers', 'three of five is the strangers\' share');
  t.is(limits.check('friend', false), undefined);
  limits.open('friend', false);
  limits.open('friend', false);
  t.is(limits.check('other', false), 'total');
  limits.close('s1', true);
  t.is(limits.strangers, 2);
  t.is(limits.check('s4', true), undefined);
});

test('the byte budget lets one oversized holder through alone and wakes waiters on release', async (t) => {
  const budget = new ByteBudget(100);
  t.true(budget.tryTake(60));
  t.false(budget.tryTake(60));
  const woken = budget.whenReleased();
  budget.release(60);
  await woken;
  t.true(budget.tryTake(500), 'more than the budget, when nothing else is held');
  t.false(budget.tryTake(1));
  budget.release(500);
  t.is(budget.used, 0);
});

test('id queues: packed FIFO across chunks, sorting, a lazy range and a merge without duplicates', (t) => {
  const queue = new IdQueue();
  for (let i = 10_000; i > 0; i--) queue.push(id(i));
  queue.push(id(5));
  queue.sortUnique();
  t.is(queue.length, 10_000);
  t.is(hex(queue.shift()), hex(id(1)));
  const index = FingerprintIndex.fromSorted(Array.from({ length: 1000 }, (_, i) => id(i * 2)));
  const cursor = new RangeCursor(index, id(100), id(1100));
  const merged = new MergedIds();
  const wanted = new IdQueue();
  for (const n of [100, 101, 102, 2000]) wanted.push(id(n));
  merged.add(cursor);
  merged.add(wanted);
  // An id inserted behind the cursor while it runs is not returned; one ahead of it is.
  const first = merged.shift();
  index.insert(id(99));
  index.insert(id(1001));
  const rest: string[] = [];
  for (let next = merged.shift(); next !== undefined; next = merged.shift()) rest.push(hex(next));
  const expected = [101, ...Array.from({ length: 499 }, (_, i) => 102 + i * 2), 1001, 2000].map((n) => hex(id(n)));
  t.is(hex(first), hex(id(100)));
  t.deepEqual(rest, [...new Set(expected)].sort());
  t.true(merged.empty);
  t.is(successor(new Uint8Array(16).fill(0xff)), undefined);
});

test('backoff doubles up to its cap with jitter and starts over after a reset', (t) => {
  const backoff = new Backoff({ minMs: 100, maxMs: 1000, jitter: 0, random: prng(1) });
  t.deepEqual([1, 2, 3, 4, 5].map(() => backoff.next()), [100, 200, 400, 800, 1000]);
  backoff.reset();
  t.is(backoff.next(), 100);
  const jittered = new Backoff({ minMs: 1000, maxMs: 10_000, random: prng(2) });
  const delay = jittered.next();
  t.true(delay >= 800 && delay <= 1200, String(delay));
});

test('the redialer keeps dialling a bootstrap peer that is down, reports it once, and stops once it answers', async (t) => {
  const attempts: number[] = [];
  const unreachable: string[] = [];
  let up = false;
  const started = Date.now();
  let connected = false;
  const redialer = new Redialer(
    async (address) => {
      attempts.push(Date.now() - started);
      if (!up) throw new NoatunError(ErrorCode.CLOSED, 'refused');
      connected = true;
      return address;
    },
    () => connected,
    { minMs: 20, maxMs: 80, random: prng(3) },
    (address, error) => unreachable.push(`${address}: ${(error as Error).message}`),
  );
  redialer.addBootstrap('hub');
  while (attempts.length < 4) await new Promise((resolve) => setTimeout(resolve, 5));
  t.deepEqual(unreachable, ['hub: refused'], 'reported at the first failure only, not at each retry');
  up = true;
  while (!connected) await new Promise((resolve) => setTimeout(resolve, 5));
  const count = attempts.length;
  redialer.connected('hub');
  await new Promise((resolve) => setTimeout(resolve, 150));
  t.is(attempts.length, count, 'no dial while connected');
  connected = false;
  redialer.disconnected('hub');
  while (attempts.length === count) await new Promise((resolve) => setTimeout(resolve, 5));
  t.true(connected, 'redialled after the disconnect');
  // Down again after it had answered: a new run of failures is reported again.
  up = false;
  connected = false;
  redialer.disconnected('hub');
  while (unreachable.length < 2) await new Promise((resolve) => setTimeout(resolve, 5));
  t.deepEqual(unreachable, ['hub: refused', 'hub: refused']);
  redialer.stop();
  t.log(`attempts at ${attempts.join(', ')} ms`);
});

test('frames: times past 48 bits, a previous cutoff after the cutoff, and parts running past their envelope are refused', (t) => {
  const status = { cutoffTime: 0, cutoffHash: new Uint8Array(16), previousTime: 0, previousHash: new Uint8Array(16), count: 0, fingerprint: new Uint8Array(FINGERPRINT_BYTES) };
  for (const bad of [{ cutoffTime: 2 ** 48 }, { cutoffTime: -1 }, { cutoffTime: 1.5 }, { cutoffTime: 10, previousTime: 20 }, { cutoffTime: Number.NaN }]) {
    const frame = statusFrame(FrameType.HELLO, { ...status, ...bad });
    t.throws(() => decodeFrame(frame), { code: 'BAD_FRAME' }, JSON.stringify(bad));
  }
  t.is((decodeFrame(statusFrame(FrameType.STATUS, { ...status, cutoffTime: 2 ** 48 - 1 })) as { status: { cutoffTime: number } }).status.cutoffTime, 2 ** 48 - 1);
  const part = decodeFrame(eventPartFrame(100, 90, new Uint8Array(10)));
  t.like(part, { type: FrameType.EVENT_PART, total: 100, offset: 90 });
  t.throws(() => decodeFrame(eventPartFrame(100, 91, new Uint8Array(10))), { code: 'BAD_FRAME' });
  t.throws(() => decodeFrame(Uint8Array.of(FrameType.ACK, 0xff, 0xff, 0xff, 0xff)), { code: 'BAD_FRAME' });
});

test('reconciliation: a DEFER with no question of ours open is refused', (t) => {
  const index = FingerprintIndex.fromSorted(Array.from({ length: 100 }, (_, i) => id(i)));
  const responder = new Reconciler(index, { range: [timeBound(0), null] });
  const lower = timeBound(0);
  // The whole span deferred in the very first message: nothing of ours can be owed yet.
  const message = Uint8Array.of(1, lower.length, ...lower, 0xff, 4);
  t.throws(() => responder.respond(message), { code: 'BAD_FRAME', message: /DEFER with no question of ours open/ });
  t.is(responder.stats.messagesReceived, 0, 'nothing changed');
});

test('faults: protocol and limit errors are the peer’s, timeouts and closes nobody’s, anything else ours', (t) => {
  t.is(faultOf(new NoatunError(ErrorCode.BAD_FRAME, 'x')), 'peer');
  t.is(faultOf(new NoatunError(ErrorCode.FORGED_ID, 'x')), 'peer');
  t.is(faultOf(new LimitError('x')), 'peer');
  t.is(faultOf(new SessionTimeoutError('x')), 'link');
  t.is(faultOf(new NoatunError(ErrorCode.CLOSED, 'x')), 'link');
  t.is(faultOf(new NoatunError(ErrorCode.VIEW_FULL, 'x')), 'local');
  t.is(faultOf(new RangeError('x')), 'local');
});

test('addresses: IPv6 counts per /64, trusted networks as ipcidr multiaddrs, anything else refused', (t) => {
  t.is(addressKey('2001:db8:1:2:3:4:5:6', 'ipv6'), addressKey('2001:db8:1:2::9', 'ipv6'));
  t.not(addressKey('2001:db8:1:2::1', 'ipv6'), addressKey('2001:db8:1:3::1', 'ipv6'));
  t.is(addressKey('10.0.0.1', 'ipv4'), '10.0.0.1');
  const trusted = new TrustedNetworks(['/ip4/127.0.0.0/ipcidr/8', '/ip6/::1/ipcidr/128']);
  t.true(trusted.has('127.3.2.1'));
  t.true(trusted.has('::1'));
  t.false(trusted.has('10.0.0.1'));
  t.false(new TrustedNetworks([]).has('127.0.0.1'));
  t.throws(() => new TrustedNetworks(['127.0.0.0/8']), { code: 'INVALID_ARGUMENT' });
});

test('replicator options out of range are refused with INVALID_ARGUMENT', async (t) => {
  const network = new MemoryNetwork();
  const db = { ids: () => [], subscribe: () => () => {}, cutoffState: () => ({ time: 0, hash: new Uint8Array(16), previousTime: 0, previousHash: new Uint8Array(16) }), cutoffStrideMs: 60_000, advanceCutoff: () => {}, ingest: async () => ({ stored: 0, unparked: 0, parked: 0 }), message: () => undefined };
  for (const options of [{ reconcile: { maxMessageBytes: 4096 } }, { maxSessions: 0 }, { gossipEventBytes: 2 * 1024 * 1024 }, { batchBytes: 10 }, { resync: { minMs: 100, maxMs: 50 } }]) {
    t.throws(() => new Replicator(db, network.join(`p${JSON.stringify(options)}`), options), { code: 'INVALID_ARGUMENT' }, JSON.stringify(options));
  }
  // A misspelt option is refused, naming the one meant (it was ignored).
  t.throws(() => new Replicator(db, network.join('typo'), { maxSesions: 2 } as never), { code: 'INVALID_ARGUMENT', message: /Replicator has no option "maxSesions" \(did you mean maxSessions\?\)/ });
  // So is one inside reconcile, resync or redial, and one of those that is not an object (they were
  // ignored without a word, the defaults left in force).
  const nested: [object, RegExp][] = [
    [{ reconcile: { branchng: 4 } }, /^reconcile has no option "branchng" \(did you mean branching\?\)$/],
    [{ resync: { min: 5 } }, /^resync has no option "min" \(did you mean minMs\?\)$/],
    [{ redial: { minMS: 5 } }, /^redial has no option "minMS" \(did you mean minMs\?\)$/],
    [{ redial: 250 }, /^redial must be an object of options, got 250$/],
    [{ resync: null }, /^resync must be an object of options, got null$/],
  ];
  for (const [options, message] of nested) {
    t.throws(() => new Replicator(db, network.join(`n${JSON.stringify(options)}`), options as never), { code: 'INVALID_ARGUMENT', message }, JSON.stringify(options));
  }
  const known = new Replicator(db, network.join('known'), { reconcile: { branching: 8, idListThreshold: 8, maxMessageBytes: 65536 }, resync: { minMs: 50, maxMs: 500 }, redial: { minMs: 100, maxMs: 1000, random: Math.random } });
  t.pass('every known nested option is taken');
  await known.stop();
});

test('a send that fails on our side (even with BAD_FRAME, as an oversized frame did) is never the peer’s fault', async (t) => {
  const network = new MemoryNetwork({ latencyMs: 1 });
  const empty = { ids: () => [], subscribe: () => () => {}, cutoffState: () => ({ time: 0, hash: new Uint8Array(16), previousTime: 0, previousHash: new Uint8Array(16) }), cutoffStrideMs: 60_000, advanceCutoff: () => {}, ingest: async () => ({ stored: 0, unparked: 0, parked: 0 }), message: () => undefined };
  const inner = network.join('a');
  // Our link's sessions fail every send, as a transport refusing a frame would.
  const failing = (session: Session): Session => ({
    peerId: session.peerId,
    send: async () => {
      throw new NoatunError(ErrorCode.BAD_FRAME, 'frame of 5000000 bytes');
    },
    [Symbol.asyncIterator]: () => session[Symbol.asyncIterator](),
    close: () => session.close(),
    abort: (reason: Error) => session.abort(reason),
  });
  const link: Link = {
    peerId: inner.peerId,
    publish: (frame) => inner.publish(frame),
    onGossip: (handler) => inner.onGossip(handler),
    sendDirect: (peerId, frame) => inner.sendDirect(peerId, frame),
    onDirect: (handler) => inner.onDirect(handler),
    setGossipValidator: (validate) => inner.setGossipValidator(validate),
    onPeer: (handler) => inner.onPeer(handler),
    onSession: (handler) => inner.onSession((session) => handler(failing(session))),
    openSession: async (peerId) => failing(await inner.openSession(peerId)),
    disconnect: (peerId, reason) => inner.disconnect(peerId, reason),
    hangUp: (peerId) => inner.hangUp(peerId),
    setAdmission: (admit) => inner.setAdmission(admit),
    dial: (address) => inner.dial(address),
    gossipPeers: () => inner.gossipPeers(),
    connectedPeers: () => inner.connectedPeers(),
    stop: () => inner.stop(),
  };
  const a = new Replicator(empty, link, { statusIntervalMs: 50 });
  // (A database of its own: one database takes one replicator.)
  const b = new Replicator({ ...empty }, network.join('b'), { statusIntervalMs: 50 });
  const until = Date.now() + 5000;
  while (a.peers().find((p) => p.peerId === 'b')?.reason === undefined && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 10));
  const info = a.peers().find((p) => p.peerId === 'b');
  t.not(info?.state, 'refused');
  t.regex(info?.reason ?? '', /sending to the peer failed/);
  t.false(b.peers().some((p) => p.state === 'refused'));
  await Promise.all([a.stop(), b.stop()]);
});

test('a database closed under the replicator stops replication quietly', async (t) => {
  const { Database, s } = await import('../../src/index.js');
  const { tempDir, removeTempDirs } = await import('../helpers/temp.js');
  const Root = s.object({ n: s.u32() });
  const db = await Database.open<{ n: number }, typeof Root>({ path: tempDir(), root: Root, apply: (event, root) => void (root.n += event.n) });
  const network = new MemoryNetwork({ latencyMs: 1 });
  const replicator = new Replicator(db, network.join('closing'), { statusIntervalMs: 20 });
  const failures: unknown[] = [];
  replicator.addEventListener('failure', (event) => failures.push(event));
  await db.close();
  const end = Date.now() + 5000;
  let stopped = false;
  while (!stopped && Date.now() < end) {
    stopped = await replicator.syncedWith('nobody', { signal: AbortSignal.timeout(50) }).then(
      () => false,
      (error: NoatunError) => error.code === ErrorCode.CLOSED,
    );
  }
  t.true(stopped, 'syncedWith rejects with CLOSED once replication stopped');
  t.deepEqual(failures, [], 'a closed database is not reported as a failure');
  removeTempDirs();
});
