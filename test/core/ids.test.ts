/**
 * MessageId: order, the sequence field's reserved bits, predecessor/successor, parse/format and
 * the content hash (spec scenarios 1–3).
 */
import { createHash } from 'node:crypto';
import { fc, testProp } from '@fast-check/ava';
import test from 'ava';
import { computeIdHash, FRESH_SEQUENCE_MAX, FRESH_SEQUENCE_MIN, IdMinter, MessageId, chooseIdHash, verifyId } from '../../src/core/message-id.js';
import type { NoatunError } from '../../src/errors.js';
import { T0 } from '../helpers/temp.js';

const salt = new Uint8Array(8);
const payload = new Uint8Array([1, 2, 3]);

test('an id at T0 sorts before an id one second later, and ids of increasing times increase', (t) => {
  const minter = new IdMinter();
  const a = minter.mint(T0, salt, payload);
  const b = minter.mint(T0 + 1000, salt, payload);
  t.is(MessageId.compare(a, b), -1);
  for (const step of [1, 7, 1000, 86_400_000]) {
    let previous = minter.mint(T0 + 2000, salt, payload);
    for (let i = 1; i <= 1000; i++) {
      const next = minter.mint(T0 + 2000 + i * step, salt, payload);
      t.is(MessageId.compare(previous, next), -1);
      previous = next;
    }
  }
});

test('fresh ids have a sequence field with top bits 01 or 10', (t) => {
  for (let i = 0; i < 1000; i++) {
    const id = new IdMinter().mint(T0 + i, salt, payload);
    t.true(id.sequence >= FRESH_SEQUENCE_MIN && id.sequence <= FRESH_SEQUENCE_MAX, `sequence ${id.sequence}`);
  }
});

test('predecessor and successor keep the timestamp, are monotone and run out at the ends', (t) => {
  const id = new IdMinter().mint(T0, salt, payload);
  let steps = 0;
  let at = { timestamp: id.timestamp, sequence: id.sequence };
  const minter = new IdMinter();
  for (;;) {
    let next: { timestamp: number; sequence: number };
    try {
      next = MessageId.fromParts(at.timestamp, at.sequence, new Uint8Array(8)).successor();
    } catch (error) {
      t.is((error as NoatunError).code, 'INVALID_ARGUMENT');
      break;
    }
    const a = minter.mintAt(at.timestamp, at.sequence, salt, payload);
    const b = minter.mintAt(next.timestamp, next.sequence, salt, payload);
    if (MessageId.compare(a, b) !== -1 || next.timestamp !== T0) t.fail('successor is not after');
    at = next;
    steps++;
  }
  t.true(steps >= 16383 && steps <= 49151, `${steps} successors`);
  const low = MessageId.fromParts(T0, 0, new Uint8Array(8));
  t.throws(() => low.predecessor());
  t.is(MessageId.fromParts(T0, 5, new Uint8Array(8)).predecessor().sequence, 4);
});

test('consecutive ids in one millisecond take increasing sequence values', (t) => {
  const minter = new IdMinter();
  const a = minter.mint(T0, salt, payload);
  const b = minter.mint(T0, salt, payload);
  t.is(b.timestamp, T0);
  t.is(b.sequence, a.sequence + 1);
});

testProp('toString and parse round-trip; compare agrees with byte order', [fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.uint8Array({ minLength: 16, maxLength: 16 })], (t, x, y) => {
  const a = MessageId.fromBytes(x);
  const b = MessageId.fromBytes(y);
  t.true(MessageId.parse(a.toString()).equals(a));
  t.is(a.toString().length, 32);
  t.is(MessageId.compare(a, b), Math.sign(Buffer.compare(Buffer.from(x), Buffer.from(y))));
});

test('ids made in bulk (sharing slabs of bytes) each keep their own 16 bytes, and fromBytes copies', (t) => {
  const minter = new IdMinter();
  const ids: MessageId[] = [];
  const texts: string[] = [];
  for (let i = 0; i < 1000; i++) {
    const id = i % 3 === 0 ? MessageId.fromParts(T0 + i, 0x4000 + i, new Uint8Array(8).fill(i & 0xff)) : minter.mint(T0 + i, salt, payload);
    ids.push(id);
    texts.push(id.toString());
  }
  const source = Uint8Array.from(ids[5]!.bytes);
  const copy = MessageId.fromBytes(source);
  source.fill(0xee);
  for (let i = 0; i < 1000; i++) {
    if (ids[i]!.toString() !== texts[i] || ids[i]!.bytes.length !== 16) return void t.fail(`id ${i} changed`);
  }
  t.is(copy.toString(), texts[5]);
  t.is(MessageId.parse(texts[999]!).toString(), texts[999]);
  t.is(new Set(texts).size, 1000);
});

test('malformed id strings and byte arrays are refused with INVALID_ARGUMENT', (t) => {
  for (const bad of ['', 'xyz', '0'.repeat(31), 'G'.repeat(32), '0'.repeat(32).toUpperCase().replace('0', 'A')]) {
    t.is((t.throws(() => MessageId.parse(bad)) as NoatunError).code, 'INVALID_ARGUMENT', bad);
  }
  t.is((t.throws(() => MessageId.fromBytes(new Uint8Array(15))) as NoatunError).code, 'INVALID_ARGUMENT');
});

test('the timestamp reads back for the whole 48-bit range', (t) => {
  for (const time of [0, 1, T0, 2 ** 32, 2 ** 40 + 12345, 2 ** 48 - 1]) {
    t.is(MessageId.fromParts(time, 0x4000, new Uint8Array(8)).timestamp, time);
  }
});

// The hash is computed by the addon (native/mmap.c `idHash`), or by node:crypto where the addon has
// none; both are checked against node:crypto over the bytes the id covers, for small payloads and
// ones past the reusable input buffer (4096 bytes), in turn (the buffer is shared between calls).
testProp(
  "an id's hash is the first 8 bytes of SHA-256 over timestamp, sequence, salt and payload",
  [
    fc.integer({ min: 0, max: 2 ** 48 - 1 }),
    fc.integer({ min: 0, max: 0xffff }),
    fc.uint8Array({ minLength: 8, maxLength: 8 }),
    fc.oneof(fc.uint8Array({ maxLength: 200 }), fc.uint8Array({ minLength: 4080, maxLength: 9000 })),
  ],
  (t, timestamp, sequence, salt, payload) => {
    const input = new Uint8Array(16 + payload.length);
    const view = new DataView(input.buffer);
    view.setUint16(0, Math.floor(timestamp / 2 ** 32));
    view.setUint32(2, timestamp % 2 ** 32);
    view.setUint16(6, sequence);
    input.set(salt, 8);
    input.set(payload, 16);
    const expected = Array.from(createHash('sha256').update(input).digest().subarray(0, 8));
    try {
      for (const kind of ['native', 'crypto'] as const) {
        t.true(chooseIdHash(kind), 'the addon hashes ids');
        t.deepEqual(Array.from(computeIdHash(timestamp, sequence, salt, payload)), expected, kind);
        const id = new IdMinter().mintAt(timestamp, sequence, salt, payload);
        t.deepEqual(Array.from(id.bytes.subarray(8)), expected, kind);
        t.true(verifyId(id, salt, payload), kind);
      }
    } finally {
      chooseIdHash('native');
    }
  },
  { numRuns: 300 },
);

test('the content hash covers salt and payload but not parents, and verification catches changes', (t) => {
  const minter = new IdMinter();
  const id = minter.mint(T0, salt, payload);
  t.true(verifyId(id, salt, payload));
  t.false(verifyId(id, new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0]), payload));
  t.false(verifyId(id, salt, new Uint8Array([1, 2, 4])));
  const h1 = computeIdHash(T0, 0x4000, salt, payload);
  const h2 = computeIdHash(T0, 0x4001, salt, payload);
  t.notDeepEqual(Array.from(h1), Array.from(h2));
});
