/**
 * Packed runs on their own: what `pack` writes unpacks to the same bytes, with either codec, and a
 * damaged packed value is a damaged file (never wrong bytes).
 */
import * as zlib from 'node:zlib';
import test from 'ava';
import { concatRuns, encodeRun, type RunEntry, RunReader } from '../../src/core/log-run.js';
import { Codec, choosePackCompressor, isPacked, pack, PACK_CODEC, PACK_HEADER_BYTES, unpack } from '../../src/core/run-pack.js';
import { ErrorCode, NoatunError } from '../../src/errors.js';
import { prng } from '../helpers/temp.js';

const KEY = new Uint8Array(16).fill(7);

/** A plain run of `count` compressible events. */
function plainRun(count: number, seed: number): Buffer {
  return encodeRun(someEntries(count, seed));
}

/** `count` compressible events of 77 bytes, ids increasing. */
function someEntries(count: number, seed: number): RunEntry[] {
  const random = prng(seed);
  return Array.from({ length: count }, (_, i) => {
    const envelope = new Uint8Array(17 + 60);
    envelope[0] = 1;
    envelope[6] = i;
    for (let b = 17; b < envelope.length; b++) envelope[b] = Math.floor(random() * 4);
    return { key: envelope.subarray(1, 17), ordinal: i + 1, envelope };
  });
}

test('runs put together are the run of all their events', (t) => {
  const entries = someEntries(100, 5).map((entry, i) => ({ ...entry, envelope: entry.envelope.subarray(0, 17 + (i % 50)) }));
  const cuts = [0, 1, 37, 38, 90, 100];
  const runs = cuts.slice(1).map((to, i) => encodeRun(entries, cuts[i]!, to));
  t.deepEqual(concatRuns(runs), encodeRun(entries));
  t.deepEqual(concatRuns([runs[2]!]), runs[2]);
});

test('a run without some of its events is the run of the others', (t) => {
  const entries = someEntries(40, 9).map((entry, i) => ({ ...entry, envelope: entry.envelope.subarray(0, 17 + (i % 13)) }));
  const reader = new RunReader(encodeRun(entries), KEY);
  const random = prng(11);
  for (let round = 0; round < 200; round++) {
    // Dropped at random, in stretches, at either end, all or none.
    const share = [0, 0.1, 0.5, 0.9, 1][round % 5]!;
    const drop = Uint8Array.from(entries, () => (random() < share ? 1 : 0));
    const kept = entries.filter((_, i) => drop[i] === 0);
    const run = reader.without(drop);
    if (kept.length === 0) t.is(run, undefined);
    else t.deepEqual(run, encodeRun(kept));
  }
});

/** `bytes` with a little-endian u32 written at `at`. */
function withUInt32(bytes: Buffer, at: number, value: number): Buffer {
  bytes.writeUInt32LE(value, at);
  return bytes;
}

const packed = async (plain: Buffer): Promise<Buffer | undefined> => pack(plain);

// (Serial: the compressor is chosen for the module, and the tests below pack with the default.)
test.serial('the addon and node:zlib pack alike: what either packs unpacks to the plain run, and neither keeps a pack that saves less than an eighth', (t) => {
  const random = prng(12);
  const hasNative = choosePackCompressor('native');
  t.teardown(() => choosePackCompressor('native'));
  if (PACK_CODEC !== Codec.Zstd) {
    t.pass('this Node has no zstd: packs are deflated');
    return;
  }
  t.true(hasNative, 'the addon compresses with the zstd Node exports');
  for (let round = 0; round < 60; round++) {
    // From runs that compress well to runs of random bytes, around the threshold too.
    const noise = round / 60;
    const entries = someEntries(20 + Math.floor(random() * 400), round).map((entry) => {
      for (let b = 17; b < entry.envelope.length; b++) if (random() < noise) entry.envelope[b] = Math.floor(random() * 256);
      return entry;
    });
    const plain = encodeRun(entries);
    const room = plain.length - (plain.length >>> 3);
    for (const kind of ['native', 'zlib'] as const) {
      choosePackCompressor(kind);
      const value = pack(plain);
      if (value === undefined) continue;
      t.true(value.length <= room, `${kind}, round ${round}: ${value.length} bytes of at most ${room}`);
      t.is(value.readUInt32LE(4), Codec.Zstd);
      t.deepEqual(Buffer.from(unpack(value, KEY)), plain, `${kind}, round ${round}`);
    }
    // Both agree where the pack pays clearly, and where it clearly does not.
    choosePackCompressor('zlib');
    const byZlib = pack(plain);
    choosePackCompressor('native');
    const byNative = pack(plain);
    if (byZlib !== undefined && byZlib.length < room - 64) t.not(byNative, undefined, `round ${round}: only node:zlib packs it`);
    if (byNative !== undefined && byNative.length < room - 64) t.not(byZlib, undefined, `round ${round}: only the addon packs it`);
  }
});

test('a packed run unpacks to the plain run it was made of', async (t) => {
  const plain = plainRun(300, 1);
  t.false(isPacked(plain));
  const value = (await packed(plain))!;
  t.truthy(value);
  t.true(isPacked(value));
  t.is(value.readUInt32LE(4), PACK_CODEC);
  t.true(value.length < plain.length / 2, `${value.length} of ${plain.length} bytes`);
  t.deepEqual(Buffer.from(unpack(value, KEY)), plain);
});

test('a run that does not compress stays plain', async (t) => {
  const random = prng(2);
  const envelope = Uint8Array.from({ length: 3000 }, () => Math.floor(random() * 256));
  envelope[0] = 1;
  t.is(await packed(encodeRun([{ key: envelope.subarray(1, 17), ordinal: 1, envelope }])), undefined);
});

test('a run packed with deflate (where Node has no zstd) unpacks too', (t) => {
  const plain = plainRun(100, 3);
  const compressed = zlib.deflateSync(plain, { level: 1 });
  const value = Buffer.alloc(PACK_HEADER_BYTES + compressed.length);
  value.writeUInt32LE(Codec.Deflate, 4);
  value.writeUInt32LE(plain.length, 8);
  value.set(compressed, PACK_HEADER_BYTES);
  t.deepEqual(Buffer.from(unpack(value, KEY)), plain);
});

test('a damaged packed run is a damaged file, naming the run', async (t) => {
  const plain = plainRun(200, 4);
  const value = (await packed(plain))!;
  const damaged = (change: (bytes: Buffer) => Buffer, reason: RegExp) => {
    const error = t.throws(() => unpack(change(Buffer.from(value)), KEY), { instanceOf: NoatunError });
    t.is(error.code, ErrorCode.CORRUPT_FILE);
    t.regex(error.message, new RegExp(`packed run ${Buffer.from(KEY).toString('hex')} is damaged`));
    t.regex(error.message, reason);
  };
  damaged((bytes) => bytes.subarray(0, 8), /shorter than its header/);
  damaged((bytes) => withUInt32(bytes, 4, 9), /unknown codec 9/);
  damaged((bytes) => withUInt32(bytes, 8, plain.length + 1), /unpacks to|does not decompress/);
  damaged((bytes) => withUInt32(bytes, 8, plain.length - 1), /does not decompress|unpacks to/);
  damaged((bytes) => bytes.subarray(0, bytes.length - 10), /does not decompress|unpacks to/);
  damaged((bytes) => bytes.fill(0xaa, PACK_HEADER_BYTES, PACK_HEADER_BYTES + 8), /does not decompress|unpacks to/);
  // Any one byte of the compressed data changed: never other bytes (the checksum catches what
  // decoding does not; a bit of the frame's header that changes nothing may pass).
  let caught = 0;
  for (let at = PACK_HEADER_BYTES; at < value.length; at++) {
    const bytes = Buffer.from(value);
    bytes[at]! ^= 0x20;
    try {
      t.deepEqual(Buffer.from(unpack(bytes, KEY)), plain, `byte ${at} changed`);
    } catch (error) {
      t.is((error as NoatunError).code, ErrorCode.CORRUPT_FILE);
      caught++;
    }
  }
  t.true(caught > (value.length - PACK_HEADER_BYTES) * 0.9, `${caught} of ${value.length - PACK_HEADER_BYTES} caught`);
});
