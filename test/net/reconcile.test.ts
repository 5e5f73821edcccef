/**
 * Set reconciliation: after an exchange each side knows exactly what it lacks and what the peer
 * lacks; the cost cases of the replication issue are counted in messages and bytes; malformed
 * messages are refused. Randomized cases print their seed (NOATUN_SEED to replay).
 */
import test from 'ava';
import { FINGERPRINT_BYTES, IdIndex } from '../../src/net/id-index.js';
import { Reconciler, ReconcileError } from '../../src/net/reconcile.js';
import { prng, testSeed } from '../helpers/temp.js';

const hex = (id: Uint8Array) => Buffer.from(id).toString('hex');

/** `count` sorted ids: increasing millisecond timestamps (as event ids are) and random bytes. */
function makeIds(count: number, random: () => number, start = 1_700_000_000_000): Uint8Array[] {
  const ids: Uint8Array[] = [];
  let time = start;
  for (let i = 0; i < count; i++) {
    time += 1 + Math.floor(random() * 5);
    const id = new Uint8Array(16);
    let t = time;
    for (let b = 5; b >= 0; b--) {
      id[b] = t % 256;
      t = Math.floor(t / 256);
    }
    for (let b = 6; b < 16; b++) id[b] = Math.floor(random() * 256);
    ids.push(id);
  }
  return ids;
}

/** Runs an exchange to the end; returns both sides and the cost. */
function exchange(a: IdIndex, b: IdIndex, lower?: Uint8Array) {
  const client = new Reconciler(a, lower);
  const server = new Reconciler(b);
  let message: Uint8Array | null = client.initiate();
  let messages = 1;
  let bytes = message.length;
  let turn = server;
  while (message !== null) {
    message = turn.reconcile(message);
    if (message !== null) {
      messages++;
      bytes += message.length;
    }
    turn = turn === server ? client : server;
  }
  return { client, server, messages, roundTrips: Math.ceil(messages / 2), bytes };
}

/** What each side learned, as sets of hex ids: what a lacks and what b lacks. */
function outcome(r: ReturnType<typeof exchange>) {
  const aLacks = new Set([...r.client.need, ...r.server.have].map(hex));
  const bLacks = new Set([...r.client.have, ...r.server.need].map(hex));
  return { aLacks: [...aLacks].sort(), bLacks: [...bLacks].sort() };
}

test('random sets: each side learns exactly the two differences', (t) => {
  const seed = testSeed();
  t.log(`seed ${seed}`);
  const random = prng(seed);
  for (let round = 0; round < 30; round++) {
    const all = makeIds(1 + Math.floor(random() * 3000), random);
    const pA = random();
    const pB = random();
    const inA = all.filter(() => random() < pA);
    const inB = all.filter(() => random() < pB);
    const r = exchange(IdIndex.fromSorted(inA), IdIndex.fromSorted(inB));
    const setA = new Set(inA.map(hex));
    const setB = new Set(inB.map(hex));
    const expected = {
      aLacks: inB.map(hex).filter((h) => !setA.has(h)).sort(),
      bLacks: inA.map(hex).filter((h) => !setB.has(h)).sort(),
    };
    t.deepEqual(outcome(r), expected, `seed ${seed}, round ${round}`);
  }
});

test('a lower bound restricts the exchange to ids at or after it', (t) => {
  const random = prng(5);
  const all = makeIds(2000, random);
  const a = IdIndex.fromSorted(all.filter((_, i) => i % 3 !== 0));
  const b = IdIndex.fromSorted(all.filter((_, i) => i % 5 !== 0));
  const lower = all[1000]!.slice(0, 6);
  const r = exchange(a, b, lower);
  const { aLacks, bLacks } = outcome(r);
  for (const h of [...aLacks, ...bLacks]) t.true(Buffer.compare(Buffer.from(h, 'hex').subarray(0, 6), Buffer.from(lower)) >= 0);
  t.true(aLacks.length > 0 && bLacks.length > 0);
});

test('cost: 1M ids each side, one differs: at most 4 round trips and 4 kB', (t) => {
  const ids = makeIds(1_000_000, prng(1));
  const extra = ids.splice(523_456, 1)[0]!;
  const a = IdIndex.fromSorted(ids);
  const withExtra = ids.slice();
  withExtra.splice(523_456, 0, extra);
  const b = IdIndex.fromSorted(withExtra);
  const r = exchange(a, b);
  t.log(`1M vs 1M+1: ${r.messages} messages (${r.roundTrips} round trips), ${r.bytes} bytes`);
  t.true(r.roundTrips <= 4);
  t.true(r.bytes <= 4096);
  t.deepEqual(outcome(r), { aLacks: [hex(extra)], bLacks: [] });
  // And the other way round: the initiator has the extra id.
  const back = exchange(b, a);
  t.log(`1M+1 vs 1M: ${back.messages} messages, ${back.bytes} bytes`);
  t.true(back.roundTrips <= 4 && back.bytes <= 4096);
  t.deepEqual(outcome(back), { aLacks: [], bLacks: [hex(extra)] });
});

test('cost: one side has everything, the other nothing; both miss some', (t) => {
  const ids = makeIds(10_000, prng(2));
  const full = IdIndex.fromSorted(ids);
  const empty = IdIndex.fromSorted([]);
  const serverHasAll = exchange(empty, full);
  t.log(`client empty, server 10k: ${serverHasAll.messages} messages, ${serverHasAll.bytes} bytes`);
  t.is(outcome(serverHasAll).aLacks.length, 10_000);
  t.true(serverHasAll.roundTrips <= 2);
  const clientHasAll = exchange(full, empty);
  t.log(`client 10k, server empty: ${clientHasAll.messages} messages, ${clientHasAll.bytes} bytes`);
  t.is(outcome(clientHasAll).bLacks.length, 10_000);
  t.true(clientHasAll.roundTrips <= 2);
  const random = prng(3);
  const all = makeIds(100_000, random);
  const onlyA = new Set<number>();
  const onlyB = new Set<number>();
  while (onlyA.size < 1000) onlyA.add(Math.floor(random() * all.length));
  while (onlyB.size < 1000) {
    const i = Math.floor(random() * all.length);
    if (!onlyA.has(i)) onlyB.add(i);
  }
  const both = exchange(IdIndex.fromSorted(all.filter((_, i) => !onlyB.has(i))), IdIndex.fromSorted(all.filter((_, i) => !onlyA.has(i))));
  t.log(`100k, 1k missing on each side: ${both.messages} messages, ${both.bytes} bytes`);
  const o = outcome(both);
  t.is(o.aLacks.length, 1000);
  t.is(o.bLacks.length, 1000);
});

test('the index agrees with a sorted array on inserts, deletes, ranks and fingerprints', (t) => {
  const seed = testSeed();
  t.log(`seed ${seed}`);
  const random = prng(seed);
  const pool = makeIds(5000, random);
  const index = IdIndex.fromSorted([]);
  const model = new Map<string, Uint8Array>();
  for (let step = 0; step < 20_000; step++) {
    const id = pool[Math.floor(random() * pool.length)]!;
    if (random() < 0.6) t.is(index.insert(id), !model.has(hex(id)));
    else t.is(index.delete(id), model.delete(hex(id)));
    if (!model.has(hex(id)) && index.has(id)) model.set(hex(id), id);
    if (step % 1000 === 0) {
      const sorted = [...model.values()].sort(Buffer.compare);
      t.is(index.size, sorted.length);
      const from = Math.floor(random() * (sorted.length + 1));
      const to = from + Math.floor(random() * (sorted.length - from + 1));
      t.deepEqual(index.slice(from, to).map(hex), sorted.slice(from, to).map(hex));
      const rebuilt = IdIndex.fromSorted(sorted);
      t.deepEqual(index.fingerprint(from, to), rebuilt.fingerprint(from, to));
      if (sorted.length > 0) t.is(index.rank(sorted[from % sorted.length]!), from % sorted.length);
    }
  }
  t.is(index.fingerprint(0, 0).length, FINGERPRINT_BYTES);
});

test('malformed messages are refused with BAD_FRAME and change nothing', (t) => {
  const ids = makeIds(500, prng(4));
  const r = new Reconciler(IdIndex.fromSorted(ids));
  const good = new Reconciler(IdIndex.fromSorted(ids.slice(1))).initiate();
  const cases: Record<string, Uint8Array> = {
    empty: new Uint8Array(0),
    'bad version': Uint8Array.of(9, 0, 0xff, 0),
    truncated: good.subarray(0, good.length - 3),
    'trailing bytes': Uint8Array.of(...good, 1),
    'bound too long': Uint8Array.of(1, 0, 17, ...new Uint8Array(17), 0),
    'bounds not increasing': Uint8Array.of(1, 1, 5, 1, 0, 1, 4, 0xff, 0),
    'unknown mode': Uint8Array.of(1, 0, 0xff, 7),
    'id list that cannot fit': Uint8Array.of(1, 0, 0xff, 2, 0xff, 0xff, 0x03),
    'unsorted id list': Uint8Array.of(1, 0, 0xff, 2, 2, ...ids[1]!, ...ids[0]!),
    'too large': new Uint8Array(2 * 1024 * 1024),
  };
  for (const [name, message] of Object.entries(cases)) {
    const error = t.throws(() => r.reconcile(message), { instanceOf: ReconcileError }, name);
    t.is(error?.code, 'BAD_FRAME');
  }
  t.deepEqual([r.have.length, r.need.length], [0, 0]);
});
