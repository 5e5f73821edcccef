/**
 * The default codec's decode refuses values nested deeper than an append may nest them (512
 * levels), whatever the machine's stack: another peer's encoder can send an event thousands of
 * levels deep, and whether msgpackr's recursive decoder got through it depended on the stack, so
 * one peer stored it and another refused the batch (a failure of its own machine). Now it fails to
 * apply alike everywhere. Random values the codec accepts are never refused by the check.
 */
import test from 'ava';
import { Packr } from 'msgpackr';
import { type Codec, Database, ErrorCode, messagePackCodec, NoatunError, s } from '../../src/index.js';
import { prng, removeTempDirs, T0, tempDir, testSeed } from '../helpers/temp.js';

test.after.always(removeTempDirs);

const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: 'bigint' });

/** MessagePack of `levels` arrays (or maps with key "k", or their 16- and 32-bit forms) around `inner`. */
function nested(levels: number, kind: 'fixarray' | 'array16' | 'array32' | 'fixmap' | 'map16' | 'map32', inner = [0x01]): Uint8Array {
  const head: Record<typeof kind, number[]> = {
    fixarray: [0x91],
    array16: [0xdc, 0x00, 0x01],
    array32: [0xdd, 0x00, 0x00, 0x00, 0x01],
    fixmap: [0x81, 0xa1, 0x6b],
    map16: [0xde, 0x00, 0x01, 0xa1, 0x6b],
    map32: [0xdf, 0x00, 0x00, 0x00, 0x01, 0xa1, 0x6b],
  };
  const bytes: number[] = [];
  for (let i = 0; i < levels; i++) bytes.push(...head[kind]);
  bytes.push(...inner);
  return Uint8Array.from(bytes);
}

for (const kind of ['fixarray', 'array16', 'array32', 'fixmap', 'map16', 'map32'] as const) {
  test(`512 levels of ${kind} decode, 513 are refused with PAYLOAD_INVALID`, (t) => {
    const codec = messagePackCodec<unknown>();
    // As deep as an append may go: validate accepts the decoded value too.
    const deepest = codec.decode(nested(512, kind));
    t.notThrows(() => codec.validate!(deepest));
    const error = t.throws(() => codec.decode(nested(513, kind)));
    t.true(error instanceof NoatunError);
    t.is((error as NoatunError).code, ErrorCode.PAYLOAD_INVALID);
    // An empty container at the 513th level is one too deep as well (validate refuses it so).
    t.throws(() => codec.decode(nested(512, kind, kind.includes('map') ? [0x80] : [0x90])), { instanceOf: NoatunError });
    t.notThrows(() => codec.decode(nested(511, kind, kind.includes('map') ? [0x80] : [0x90])));
  });
}

test('siblings close their containers: a wide value is not deep', (t) => {
  const codec = messagePackCodec<unknown>();
  // 600 arrays side by side, each two deep, with strings, binaries, exts and numbers between.
  const value = Array.from({ length: 600 }, (_, i) => [[i, `s${i}`, Buffer.from([i & 0xff]), new Date(T0 + i), 2 ** 40 + i, -i, undefined, null, true]]);
  const bytes = packr.pack(value);
  t.deepEqual(codec.decode(bytes), packr.unpack(bytes));
});

/** A random value of the kinds the default codec carries, nested at most `depth` more levels. */
function randomValue(random: () => number, depth: number): unknown {
  const pick = random();
  if (depth <= 0 || pick < 0.45) {
    const leaf = Math.floor(random() * 12);
    switch (leaf) {
      case 0:
        return null;
      case 1:
        return random() < 0.5;
      case 2:
        return Math.floor(random() * 256) - 128;
      case 3:
        return Math.floor(random() * 2 ** 31) * (random() < 0.5 ? -1 : 1);
      case 4:
        return random() * 1e6;
      case 5:
        return 'x'.repeat(Math.floor(random() * 40));
      case 6:
        return 'y'.repeat(random() < 0.1 ? Math.floor(random() * 70_000) : Math.floor(random() * 300));
      case 7:
        return Buffer.alloc(Math.floor(random() * 300), 7);
      case 8:
        return new Date(T0 + Math.floor(random() * 1e9));
      case 9:
        return undefined;
      case 10:
        return BigInt(Math.floor(random() * 2 ** 53)) * 1024n;
      default:
        return 2 ** 33 + Math.floor(random() * 1000);
    }
  }
  // Now and then a long one (16- and 32-bit headers) of leaves; else a few of anything.
  if (random() < 0.05) {
    const long = 16 + Math.floor(random() * 70_000 * random() * random());
    if (random() < 0.5) return Array.from({ length: long }, () => randomValue(random, 0));
    const object: Record<string, unknown> = {};
    for (let i = 0; i < long; i++) object[`k${i}`] = randomValue(random, 0);
    return object;
  }
  const count = Math.floor(random() * 6);
  if (random() < 0.5) return Array.from({ length: count }, () => randomValue(random, depth - 1));
  const object: Record<string, unknown> = {};
  for (let i = 0; i < count; i++) object[`k${i}`] = randomValue(random, depth - 1);
  return object;
}

test('random values the codec accepts, up to 512 levels, decode to themselves', (t) => {
  const seed = testSeed();
  t.log(`seed ${seed}`);
  const random = prng(seed);
  const codec = messagePackCodec<unknown>();
  for (let i = 0; i < 300; i++) {
    // Some values as deep as allowed (a date or bytes at the 513th level is one too deep for
    // validate), wrapped so that the check really walks them (over 512 bytes).
    const depth = random() < 0.2 ? 511 : Math.floor(random() * 8);
    let value = randomValue(random, Math.min(depth, 6));
    for (let level = Math.min(depth, 6); level < depth; level++) value = random() < 0.5 ? [value] : { v: value };
    codec.validate!(value);
    const bytes = codec.encode(value);
    t.deepEqual(codec.decode(bytes), packr.unpack(bytes), `seed ${seed}, value ${i}`);
  }
});

test('an event from a peer nested too deep fails to apply, recorded, and the others apply', async (t) => {
  // The author's codec sends raw bytes (another implementation's encoder could send these).
  const raw: Codec<{ raw: Uint8Array }> = { encode: (event) => event.raw, decode: (bytes) => ({ raw: bytes }) };
  const Root = s.object({ n: s.u32() });
  const now = () => T0;
  const author = await Database.open<{ raw: Uint8Array }, typeof Root>({ path: tempDir('deep-author'), root: Root, codec: raw, now, apply: () => {} });
  await author.append({ raw: nested(3000, 'fixarray') });
  await author.append({ raw: packr.pack([1]) });
  const envelopes = [...author.messages()].map((m) => m.bytes);
  await author.close();
  const reader = await Database.open<unknown, typeof Root>({
    path: tempDir('deep-reader'),
    root: Root,
    now,
    apply: (_event, root) => {
      root.n += 1;
    },
  });
  const result = await reader.ingest(envelopes);
  t.is(result.stored, 2);
  t.is(reader.read((root) => root.n), 1);
  const failures = reader.failures();
  t.is(failures.length, 1);
  t.regex(failures[0]!.error, /nested more than 512 levels deep/);
  await reader.close();
});

test('an open whose rebuild runs out of stack is refused with RESOURCE_EXHAUSTED, and a later open with enough succeeds', async (t) => {
  const Root = s.object({ n: s.u32() });
  const path = tempDir('deep-open');
  let recurse = false;
  // Recurses without end while `recurse` is set (as an apply might on a smaller stack than its author's).
  const deep = (n: number): number => (n === 0 ? 0 : 1 + deep(n - 1));
  const options = {
    path,
    root: Root,
    now: () => T0,
    apply: (_event: unknown, root: { n: number }) => {
      root.n += recurse ? deep(1e7) : 1;
    },
  };
  const db = await Database.open<unknown, typeof Root>(options);
  await db.append({ a: 1 });
  await db.close();
  recurse = true;
  const error = await t.throwsAsync(Database.open<unknown, typeof Root>({ ...options, applyVersion: '2' }));
  t.true(error instanceof NoatunError);
  t.is((error as NoatunError).code, ErrorCode.RESOURCE_EXHAUSTED);
  recurse = false;
  const again = await Database.open<unknown, typeof Root>({ ...options, applyVersion: '2' });
  t.is(again.read((root) => root.n), 1);
  await again.close();
});
