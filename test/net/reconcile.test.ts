/**
 * Set reconciliation and its fingerprint index: after an exchange each side knows exactly what it
 * lacks and what the peer lacks; the cost cases are counted in round trips and bytes; malformed
 * messages are refused with BAD_FRAME and change nothing; the index agrees with a sorted array.
 * Randomized cases print their seed (NOATUN_SEED=<seed> replays them).
 */
import { createHash } from 'node:crypto';
import test, { type ExecutionContext } from 'ava';
import { NoatunError } from '../../src/errors.js';
import { FINGERPRINT_BYTES, FingerprintIndex, type IdBound, timeBound } from '../../src/net/fingerprint-index.js';
import { MAX_RECONCILE_MESSAGE_BYTES, MAX_RECONCILE_RANGES, type ReconcileOptions, Reconciler } from '../../src/net/reconcile.js';
import { prng, T0, testSeed } from '../helpers/temp.js';

const hex = (id: Uint8Array) => Buffer.from(id).toString('hex');

/**
 * `count` increasing ids shaped like event ids: a 48-bit millisecond timestamp, 1 to 4 ms apart,
 * then random bytes. They are views into one buffer, laid out in order (fast to make by the million).
 */
function makeIds(count: number, random: () => number, start = T0): Uint8Array[] {
  const buffer = new Uint8Array(count * 16);
  const words = new Uint32Array(buffer.buffer);
  for (let i = 0; i < words.length; i++) words[i] = (random() * 2 ** 32) >>> 0;
  const ids: Uint8Array[] = new Array(count);
  let time = start;
  for (let i = 0; i < count; i++) {
    time += 1 + Math.floor(random() * 4);
    const at = i * 16;
    buffer.set(timeBound(time), at);
    ids[i] = buffer.subarray(at, at + 16);
  }
  return ids;
}

/** `count` distinct ids of uniformly random bytes, sorted. */
function randomIds(count: number, random: () => number): Uint8Array[] {
  const seen = new Map<string, Uint8Array>();
  while (seen.size < count) {
    const id = new Uint8Array(16);
    for (let i = 0; i < 16; i++) id[i] = Math.floor(random() * 256);
    seen.set(hex(id), id);
  }
  return [...seen.values()].sort(Buffer.compare);
}

interface Side {
  have: string[];
  need: string[];
}

/** Runs an exchange to its end (a initiates); returns what each side learned and the cost. */
function exchange(a: FingerprintIndex, b: FingerprintIndex, options: ReconcileOptions = {}) {
  const client = new Reconciler(a, options);
  const server = new Reconciler(b, options);
  const learned = new Map<Reconciler, Side>([
    [client, { have: [], need: [] }],
    [server, { have: [], need: [] }],
  ]);
  let message: Uint8Array | null = client.initiate();
  const sizes = [message.length];
  let side = server;
  while (message !== null) {
    if (sizes.length > 100_000) throw new Error('the exchange does not end');
    const step = side.respond(message);
    learned.get(side)!.have.push(...step.have.map(hex));
    learned.get(side)!.need.push(...step.need.map(hex));
    message = step.reply;
    if (message !== null) sizes.push(message.length);
    side = side === server ? client : server;
  }
  const bytes = sizes.reduce((sum, n) => sum + n, 0);
  return {
    client: learned.get(client)!,
    server: learned.get(server)!,
    done: client.done && server.done,
    messages: sizes.length,
    roundTrips: Math.ceil(sizes.length / 2),
    bytes,
    largest: Math.max(...sizes),
  };
}

type Exchange = ReturnType<typeof exchange>;

/** The code of the {@link NoatunError} `fn` throws (failing the test if it throws nothing or something else). */
function codeThrown(t: ExecutionContext, fn: () => unknown, label?: string): string | undefined {
  return t.throws<NoatunError>(fn, { instanceOf: NoatunError }, label)?.code;
}

/** Asserts that both sides learned exactly `aOnly` (ids only a has) and `bOnly`, without repeats. */
function assertDifferences(t: ExecutionContext, r: Exchange, aOnly: readonly Uint8Array[], bOnly: readonly Uint8Array[], label: string): void {
  const sorted = (ids: string[]) => ids.slice().sort();
  const a = sorted(aOnly.map(hex));
  const b = sorted(bOnly.map(hex));
  t.true(r.done, `${label}: both sides are done`);
  t.deepEqual(sorted(r.client.have), a, `${label}: client have`);
  t.deepEqual(sorted(r.server.need), a, `${label}: server need`);
  t.deepEqual(sorted(r.client.need), b, `${label}: client need`);
  t.deepEqual(sorted(r.server.have), b, `${label}: server have`);
}

/** A bound as the 16-byte id it stands for. */
const padded = (bound: Uint8Array) => Buffer.concat([bound, new Uint8Array(16 - bound.length)]);

/** Ids of `ids` inside `[lower, upper)`. */
function inRange(ids: readonly Uint8Array[], lower: IdBound, upper: IdBound): Uint8Array[] {
  return ids.filter((id) => (lower === null || Buffer.compare(id, padded(lower)) >= 0) && (upper === null || Buffer.compare(id, padded(upper)) < 0));
}

function difference(a: readonly Uint8Array[], b: readonly Uint8Array[]): Uint8Array[] {
  const inB = new Set(b.map(hex));
  return a.filter((id) => !inB.has(hex(id)));
}

test('random sets: each side learns exactly both differences, whatever the options', (t) => {
  const seed = testSeed();
  t.log(`seed ${seed}`);
  const random = prng(seed);
  for (let round = 0; round < 60; round++) {
    const label = `seed ${seed}, round ${round}`;
    const size = Math.floor(random() ** 2 * 4000);
    const all = round % 4 === 3 ? randomIds(size, random) : makeIds(size, random);
    // Independent subsets, or long runs missing on one side (a peer that was offline).
    let inA: Uint8Array[];
    let inB: Uint8Array[];
    if (round % 3 === 0) {
      const cut = Math.floor(random() * (size + 1));
      const from = Math.floor(random() * cut);
      inA = all.filter((_, i) => i < from || i >= cut || random() < 0.1);
      inB = all.filter(() => random() < 0.98);
    } else {
      const pA = random();
      const pB = random() < 0.2 ? pA : random();
      inA = all.filter(() => random() < pA);
      inB = all.filter(() => random() < pB);
    }
    const options: { -readonly [K in keyof ReconcileOptions]: ReconcileOptions[K] } = {
      branching: 2 + Math.floor(random() * 31),
      idListThreshold: 1 + Math.floor(random() * 40),
    };
    if (random() < 0.3) options.maxMessageBytes = 4096;
    let lower: IdBound = null;
    let upper: IdBound = null;
    if (random() < 0.3 && size > 2) {
      const pick = () => all[Math.floor(random() * size)]!.subarray(0, 1 + Math.floor(random() * 16));
      const [x, y] = [pick(), pick()].sort((p, q) => Buffer.compare(padded(p), padded(q)));
      if (Buffer.compare(padded(x!), padded(y!)) !== 0) [lower, upper] = random() < 0.5 ? [x!, y!] : [x!, null];
      options.range = [lower, upper];
    }
    const r = exchange(FingerprintIndex.fromSorted(inA), FingerprintIndex.fromSorted(inB), options);
    assertDifferences(t, r, difference(inRange(inA, lower, upper), inB), difference(inRange(inB, lower, upper), inA), label);
    if (options.maxMessageBytes !== undefined) t.true(r.largest <= options.maxMessageBytes, `${label}: largest message ${r.largest}`);
  }
});

test('a range restricts the exchange to the ids at or after a cutoff', (t) => {
  const random = prng(5);
  const all = makeIds(3000, random);
  const inA = all.filter((_, i) => i % 3 !== 0);
  const inB = all.filter((_, i) => i % 5 !== 0);
  const cutoff = timeBound(T0 + 3000);
  const r = exchange(FingerprintIndex.fromSorted(inA), FingerprintIndex.fromSorted(inB), { range: [cutoff, null] });
  const aOnly = difference(inRange(inA, cutoff, null), inB);
  t.true(aOnly.length > 100 && aOnly.length < difference(inA, inB).length);
  assertDifferences(t, r, aOnly, difference(inRange(inB, cutoff, null), inA), 'cutoff');
  // Peers that disagree on the range refuse each other's messages.
  const other = new Reconciler(FingerprintIndex.fromSorted(inB), { range: [timeBound(T0 + 4000), null] });
  const opening = new Reconciler(FingerprintIndex.fromSorted(inA), { range: [cutoff, null] }).initiate();
  t.is(codeThrown(t, () => other.respond(opening)), 'BAD_FRAME');
});

test('cost: 1M ids on each side differing by one id take at most 4 round trips and 4 kB', (t) => {
  const ids = makeIds(1_000_001, prng(1));
  const extra = ids[523_456]!;
  const without = ids.filter((_, i) => i !== 523_456);
  let start = performance.now();
  const big = FingerprintIndex.fromSorted(ids);
  const buildMs = performance.now() - start;
  const small = FingerprintIndex.fromSorted(without);
  t.log(`index build: 1M ids in ${buildMs.toFixed(0)} ms`);
  t.true(buildMs < 2000, `build took ${buildMs} ms`);

  const query = prng(2);
  start = performance.now();
  for (let i = 0; i < 20_000; i++) {
    const [lo, hi] = [ids[Math.floor(query() * ids.length)]!, ids[Math.floor(query() * ids.length)]!].sort(Buffer.compare);
    big.fingerprint(lo!, hi!);
  }
  t.log(`fingerprint of a random range of 1M ids: ${(((performance.now() - start) / 20_000) * 1000).toFixed(1)} µs`);

  const forward = exchange(small, big);
  t.log(`1M vs 1M+1: ${forward.messages} messages (${forward.roundTrips} round trips), ${forward.bytes} bytes`);
  assertDifferences(t, forward, [], [extra], '1M vs 1M+1');
  t.true(forward.roundTrips <= 4, `${forward.roundTrips} round trips`);
  t.true(forward.bytes <= 4096, `${forward.bytes} bytes`);

  const back = exchange(big, small);
  t.log(`1M+1 vs 1M: ${back.messages} messages (${back.roundTrips} round trips), ${back.bytes} bytes`);
  assertDifferences(t, back, [extra], [], '1M+1 vs 1M');
  t.true(back.roundTrips <= 4, `${back.roundTrips} round trips`);
  t.true(back.bytes <= 4096, `${back.bytes} bytes`);

  const equal = exchange(big, FingerprintIndex.fromSorted(ids));
  t.log(`1M vs the same 1M: ${equal.messages} messages, ${equal.bytes} bytes`);
  assertDifferences(t, equal, [], [], 'equal');
  t.is(equal.messages, 2);
});

test('cost: one side has 10k ids and the other none, either way round', (t) => {
  const ids = makeIds(10_000, prng(2));
  const full = FingerprintIndex.fromSorted(ids);
  const empty = FingerprintIndex.fromSorted([]);
  // The ids themselves must cross once; each costs at most 17 bytes with its shared prefix dropped.
  for (const [name, a, b, aOnly, bOnly] of [
    ['client empty, server 10k', empty, full, [], ids],
    ['client 10k, server empty', full, empty, ids, []],
  ] as const) {
    const r = exchange(a, b);
    t.log(`${name}: ${r.messages} messages (${r.roundTrips} round trips), ${r.bytes} bytes`);
    assertDifferences(t, r, aOnly, bOnly, name);
    t.true(r.roundTrips <= 2);
    t.true(r.bytes <= 10_000 * 16 + 1024, `${r.bytes} bytes`);
  }
});

test('cost: 100k ids with 1k missing on each side', (t) => {
  const random = prng(3);
  const all = makeIds(100_000, random);
  const onlyA = new Set<number>();
  const onlyB = new Set<number>();
  while (onlyA.size < 1000) onlyA.add(Math.floor(random() * all.length));
  while (onlyB.size < 1000) {
    const i = Math.floor(random() * all.length);
    if (!onlyA.has(i)) onlyB.add(i);
  }
  const inA = all.filter((_, i) => !onlyB.has(i));
  const inB = all.filter((_, i) => !onlyA.has(i));
  const r = exchange(FingerprintIndex.fromSorted(inA), FingerprintIndex.fromSorted(inB));
  t.log(`100k, 1k missing on each side: ${r.messages} messages (${r.roundTrips} round trips), ${r.bytes} bytes`);
  assertDifferences(t, r, difference(inA, inB), difference(inB, inA), 'both missing');
  t.true(r.roundTrips <= 4);
  // A quarter of what listing every id would cost (1.6 MB).
  t.true(r.bytes <= 400_000, `${r.bytes} bytes`);
});

test('a small message budget defers answers over more messages and still converges', (t) => {
  const random = prng(6);
  const all = makeIds(20_000, random);
  const inA = all.filter(() => random() < 0.7);
  const inB = all.filter(() => random() < 0.02);
  for (const [a, b] of [
    [inA, inB],
    [inB, inA],
  ] as const) {
    const r = exchange(FingerprintIndex.fromSorted(a), FingerprintIndex.fromSorted(b), { maxMessageBytes: 4096 });
    t.log(`${a.length} vs ${b.length} ids with 4 KiB messages: ${r.messages} messages, ${r.bytes} bytes, largest ${r.largest}`);
    assertDifferences(t, r, difference(a, b), difference(b, a), `${a.length} vs ${b.length}`);
    t.true(r.largest <= 4096);
    t.true(r.messages > 10);
  }
});

test('an exchange ends when ids arrive in the middle of it', (t) => {
  const seed = testSeed();
  t.log(`seed ${seed}`);
  const random = prng(seed);
  const all = makeIds(30_000, random);
  const a = FingerprintIndex.fromSorted(all.filter(() => random() < 0.5));
  const b = FingerprintIndex.fromSorted(all.filter(() => random() < 0.5));
  const client = new Reconciler(a, { maxMessageBytes: 4096 });
  const server = new Reconciler(b, { maxMessageBytes: 4096 });
  let message: Uint8Array | null = client.initiate();
  let side = server;
  let messages = 1;
  while (message !== null) {
    // Gossip keeps inserting ids into both indexes.
    for (let i = 0; i < 20; i++) {
      const id = all[Math.floor(random() * all.length)]!;
      (random() < 0.5 ? a : b).insert(id);
    }
    message = side.respond(message).reply;
    messages++;
    side = side === server ? client : server;
    if (messages > 10_000) break;
  }
  t.true(client.done && server.done, `seed ${seed}: ${messages} messages`);
});

test('malformed or out-of-protocol messages throw BAD_FRAME and change nothing', (t) => {
  const ids = makeIds(2000, prng(4));
  const mine = FingerprintIndex.fromSorted(ids);
  const theirs = FingerprintIndex.fromSorted(ids.filter((_, i) => i % 10 !== 0));
  const good = new Reconciler(theirs).initiate();
  const r = new Reconciler(mine);

  // A message of many small SKIP ranges with 2-byte bounds 1, 2, 3, ...
  const skips = (n: number) => {
    const out = [1, 0];
    for (let i = 1; i <= n; i++) out.push(0x01, i >> 8, i & 0xff, 0);
    out.push(0xff, 0);
    return Uint8Array.from(out);
  };
  const idBytes = (id: Uint8Array) => [0, ...id];
  const cases: Record<string, Uint8Array> = {
    empty: new Uint8Array(0),
    'unknown version': Uint8Array.of(9, 0, 0xff, 0),
    'garbage': Uint8Array.from(Buffer.from('this is not a reconciliation message')),
    'trailing bytes': Uint8Array.of(...good, 0),
    'lower bound over 16 bytes': Uint8Array.of(1, 17, ...new Uint8Array(17), 0xff, 0),
    'another range': Uint8Array.of(1, 1, 5, 0xff, 0),
    'bound longer than 16 bytes': Uint8Array.of(1, 0, 0xf1, 1, 2, 0),
    'bound sharing more than the previous': Uint8Array.of(1, 0, 0x10, 1, 0),
    'bounds out of order': Uint8Array.of(1, 0, 0x00, 5, 0, 0x00, 4, 0, 0xff, 0),
    'equal bounds': Uint8Array.of(1, 0, 0x00, 5, 0, 0x01, 5, 0, 0, 0xff, 0),
    'unknown mode': Uint8Array.of(1, 0, 0xff, 7),
    'DEFER before the end': Uint8Array.of(1, 0, 0x00, 5, 4, 0xff, 0),
    'id count that cannot fit': Uint8Array.of(1, 0, 0xff, 2, 0xff, 0xff, 0x03),
    'varint too long': Uint8Array.of(1, 0, 0xff, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01),
    'id list not increasing': Uint8Array.of(1, 0, 0xff, 2, 2, ...idBytes(ids[1]!), ...idBytes(ids[0]!)),
    'id list with a repeat': Uint8Array.of(1, 0, 0xff, 2, 2, ...idBytes(ids[1]!), ...idBytes(ids[1]!)),
    'id outside its range': Uint8Array.of(1, 0, 0x00, 1, 2, 1, ...idBytes(ids[0]!), 0xff, 0),
    'malformed id': Uint8Array.of(1, 0, 0xff, 2, 1, 16, ...new Uint8Array(15)),
    'an answer to no list of ours': Uint8Array.of(1, 0, 0xff, 3, 0),
    'too many ranges': skips(MAX_RECONCILE_RANGES + 1),
    'too large': new Uint8Array(MAX_RECONCILE_MESSAGE_BYTES + 1),
  };
  for (let cut = 0; cut < good.length; cut++) cases[`truncated to ${cut} bytes`] = good.subarray(0, cut);
  t.notThrows(() => new Reconciler(mine).respond(skips(MAX_RECONCILE_RANGES - 1)), 'the largest number of ranges is accepted');
  for (const [name, message] of Object.entries(cases)) {
    t.is(codeThrown(t, () => r.respond(message), name), 'BAD_FRAME', name);
  }
  // Nothing changed: the refused messages left the reconciler as new.
  t.deepEqual(r.stats, { messagesSent: 0, messagesReceived: 0, bytesSent: 0, bytesReceived: 0 });
  t.deepEqual(r.respond(good), new Reconciler(mine).respond(good));
});

test('answers that break the exchange state throw BAD_FRAME and change nothing', (t) => {
  const ids = makeIds(10_000, prng(7));
  // A client with few ids opens with an id list; the reply must answer it.
  const client = new Reconciler(FingerprintIndex.fromSorted(ids.slice(0, 3)));
  const opening = client.initiate();
  const reply = new Reconciler(FingerprintIndex.fromSorted(ids.slice(1, 10))).respond(opening).reply!;
  const listed = [ids[0]!, ids[1]!, ids[2]!];
  const bad: Record<string, Uint8Array> = {
    'the list left unanswered': Uint8Array.of(1, 0, 0xff, 0),
    'bits set past the list': Uint8Array.of(1, 0, 0xff, 3, 0b1000, 0),
    'our own listed id offered back': Uint8Array.of(1, 0, 0xff, 3, 0, 1, 0, ...listed[1]!),
  };
  for (const [name, message] of Object.entries(bad)) {
    t.is(codeThrown(t, () => client.respond(message), name), 'BAD_FRAME', name);
  }
  const step = client.respond(reply);
  t.is(step.reply, null);
  t.deepEqual(step.have.map(hex), [hex(ids[0]!)]);
  t.deepEqual(step.need.map(hex), ids.slice(3, 10).map(hex));
  t.true(client.done);
  t.is(codeThrown(t, () => client.respond(reply)), 'BAD_FRAME', 'a message after the end');

  // A side that deferred answers refuses questions inside the deferred range.
  const server = new Reconciler(FingerprintIndex.fromSorted(ids), { maxMessageBytes: 4096 });
  const opening2 = new Reconciler(FingerprintIndex.fromSorted([])).initiate();
  const deferred = server.respond(opening2).reply!;
  t.is(deferred.at(-1), 4, 'the reply ends with DEFER');
  const fingerprintOfAll = Uint8Array.of(1, 0, 0xff, 1, ...new Uint8Array(FINGERPRINT_BYTES));
  t.is(codeThrown(t, () => server.respond(fingerprintOfAll)), 'BAD_FRAME');
  t.notThrows(() => server.respond(Uint8Array.of(1, 0, 0xff, 0)), 'a plain SKIP lets it go on');
});

test('random bytes after a valid header are answered or refused with BAD_FRAME', (t) => {
  const seed = testSeed();
  t.log(`seed ${seed}`);
  const random = prng(seed);
  const ids = makeIds(500, random);
  const index = FingerprintIndex.fromSorted(ids);
  const valid = new Reconciler(FingerprintIndex.fromSorted(ids.filter((_, i) => i % 7 !== 0))).initiate();
  for (let round = 0; round < 2000; round++) {
    let message: Uint8Array;
    if (round % 2 === 0) {
      message = Uint8Array.from({ length: 2 + Math.floor(random() * 60) }, () => Math.floor(random() * 256));
      message[0] = 1;
      message[1] = 0;
    } else {
      message = valid.slice();
      for (let flips = 1 + Math.floor(random() * 3); flips > 0; flips--) message[Math.floor(random() * message.length)] ^= 1 + Math.floor(random() * 255);
    }
    const r = new Reconciler(index);
    try {
      r.respond(message);
    } catch (error) {
      t.is((error as NoatunError).code, 'BAD_FRAME', `seed ${seed}, round ${round}: ${String(error)}`);
      t.is(r.stats.messagesReceived, 0);
    }
  }
  t.pass();
});

/** The fingerprint computed from its definition: SHA-256 of (sum mod 2^128, count), truncated. */
function modelFingerprint(ids: readonly Uint8Array[]): Uint8Array {
  let sum = 0n;
  for (const id of ids) sum += BigInt(`0x${hex(id)}`);
  const input = Buffer.alloc(24);
  input.write((sum % 2n ** 128n).toString(16).padStart(32, '0'), 'hex');
  input.writeBigUInt64BE(BigInt(ids.length), 16);
  return new Uint8Array(createHash('sha256').update(input).digest().subarray(0, FINGERPRINT_BYTES));
}

/** Checks every query of `index` against `model` (sorted) on random bounds. */
function checkIndex(t: ExecutionContext, index: FingerprintIndex, model: readonly Uint8Array[], random: () => number, label: string): void {
  t.is(index.size, model.length, label);
  const bound = (): IdBound => {
    if (random() < 0.1) return null;
    if (model.length === 0 || random() < 0.2) return Uint8Array.from({ length: Math.floor(random() * 17) }, () => Math.floor(random() * 256));
    // Prefixes of stored ids, stored ids themselves, and neighbours of them.
    const id = model[Math.floor(random() * model.length)]!.slice(0, 1 + Math.floor(random() * 16));
    if (random() < 0.3) id[id.length - 1] = (id[id.length - 1]! + (random() < 0.5 ? 1 : 255)) & 0xff;
    return id;
  };
  for (let q = 0; q < 8; q++) {
    const lo = bound();
    const hi = bound();
    const expected = inRange(model, lo, hi);
    t.is(index.count(lo, hi), expected.length, `${label}: count`);
    t.is(index.rank(hi), inRange(model, null, hi).length, `${label}: rank`);
    t.deepEqual(index.fingerprint(lo, hi), modelFingerprint(expected), `${label}: fingerprint`);
    const limit = Math.floor(random() * 20);
    t.deepEqual([...index.ids(lo, hi, limit)].map(hex), expected.slice(0, limit).map(hex), `${label}: ids`);
    if (model.length > 0) {
      const rank = Math.floor(random() * model.length);
      t.is(hex(index.at(rank)), hex(model[rank]!), `${label}: at`);
    }
  }
  t.deepEqual([...index.ids(null, null)].map(hex), model.map(hex), `${label}: all ids`);
}

test('the index agrees with a sorted array through random inserts and deletes', (t) => {
  const seed = testSeed();
  t.log(`seed ${seed}`);
  const random = prng(seed);
  const pool = randomIds(6000, random);
  const index = FingerprintIndex.fromSorted(pool.filter(() => random() < 0.5));
  const model = new Map<string, Uint8Array>([...index.ids(null, null)].map((id) => [hex(id), id]));
  for (let step = 0; step < 30_000; step++) {
    const id = pool[Math.floor(random() * pool.length)]!;
    // Phases that grow and shrink the set, so blocks split, merge and empty.
    const insert = random() < (Math.floor(step / 5000) % 2 === 0 ? 0.75 : 0.2);
    if (insert) {
      t.is(index.insert(id), !model.has(hex(id)));
      model.set(hex(id), id);
    } else t.is(index.delete(id), model.delete(hex(id)));
    t.is(index.has(id), insert);
    if (step % 500 === 0) checkIndex(t, index, [...model.values()].sort(Buffer.compare), random, `seed ${seed}, step ${step}`);
  }
});

test('the index follows appends in time order and pruning from the oldest id', (t) => {
  const random = prng(8);
  const ids = makeIds(5000, random);
  const index = FingerprintIndex.fromSorted([]);
  for (let i = 0; i < ids.length; i++) {
    index.insert(ids[i]!);
    if (i % 997 === 0) checkIndex(t, index, ids.slice(0, i + 1), random, `append ${i}`);
  }
  for (let i = 0; i < ids.length; i++) {
    index.delete(ids[i]!);
    if (i % 997 === 0) checkIndex(t, index, ids.slice(i + 1), random, `prune ${i}`);
  }
  t.is(index.size, 0);
  t.deepEqual(index.fingerprint(null, null), modelFingerprint([]));
});

test('batches announced with expectInserts (the tree rebuilt at the next query) answer as inserts one by one do', (t) => {
  const seed = testSeed();
  t.log(`seed ${seed}`);
  const random = prng(seed);
  const pool = randomIds(20_000, random);
  const announced = FingerprintIndex.fromSorted([]);
  const single = FingerprintIndex.fromSorted([]);
  const model = new Map<string, Uint8Array>();
  let next = 0;
  for (let round = 0; round < 60; round++) {
    // Batches from one id to thousands, with deletes and queries between them.
    const size = random() < 0.5 ? 1 + Math.floor(random() * 8) : Math.floor(random() * 1500);
    announced.expectInserts(size);
    for (let i = 0; i < size && next < pool.length; i++) {
      const id = random() < 0.8 ? pool[next++]! : pool[Math.floor(random() * Math.max(1, next))]!;
      t.is(announced.insert(id), single.insert(id));
      model.set(hex(id), id);
    }
    for (let i = 0; i < 20 && model.size > 0; i++) {
      const id = pool[Math.floor(random() * Math.max(1, next))]!;
      t.is(announced.delete(id), single.delete(id));
      model.delete(hex(id));
    }
    if (round % 3 === 0) {
      const sorted = [...model.values()].sort(Buffer.compare);
      checkIndex(t, announced, sorted, random, `seed ${seed}, round ${round}`);
      t.deepEqual(announced.fingerprint(null, null), single.fingerprint(null, null));
    }
  }
  checkIndex(t, announced, [...model.values()].sort(Buffer.compare), random, `seed ${seed}, end`);
});

test('building an index refuses ids out of order, repeated or of the wrong length', (t) => {
  const [a, b] = makeIds(2, prng(9));
  for (const ids of [[b!, a!], [a!, a!], [a!.subarray(0, 15)]]) {
    t.is(codeThrown(t, () => FingerprintIndex.fromSorted(ids)), 'INVALID_ARGUMENT');
  }
  t.is(codeThrown(t, () => FingerprintIndex.fromSorted([]).insert(new Uint8Array(17))), 'INVALID_ARGUMENT');
  t.is(codeThrown(t, () => FingerprintIndex.fromSorted([a!]).at(1)), 'INDEX_OUT_OF_RANGE');
});
