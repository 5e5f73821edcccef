/**
 * The envelope codec: round trips, and every malformation refused with a stable code.
 */
import { fc, testProp } from '@fast-check/ava';
import test from 'ava';
import { createEnvelope, decodeEnvelope, decodeEnvelopes, encodeEnvelope, envelopeIdOf, withParents } from '../../src/core/envelope.js';
import { IdMinter, type MessageId } from '../../src/core/message-id.js';
import type { NoatunError } from '../../src/errors.js';
import { T0 } from '../helpers/temp.js';

function sample(payload: Uint8Array, parentCount = 2) {
  const minter = new IdMinter();
  const parents: MessageId[] = [];
  for (let i = 0; i < parentCount; i++) parents.push(createEnvelope({ timestamp: T0 + i, payload: new Uint8Array([i]), parents: [], minter }).id);
  return createEnvelope({ timestamp: T0 + 1000, payload, parents, minter });
}

testProp('an envelope decodes to what was encoded', [fc.uint8Array({ maxLength: 300 }), fc.nat({ max: 5 })], (t, payload, parents) => {
  const envelope = sample(payload, parents);
  const decoded = decodeEnvelope(encodeEnvelope(envelope));
  t.true(decoded.id.equals(envelope.id));
  t.deepEqual(Array.from(decoded.payload), Array.from(payload));
  t.deepEqual(
    decoded.parents.map(String),
    envelope.parents.map(String),
  );
  t.true(envelopeIdOf(encodeEnvelope(envelope)).equals(envelope.id));
});

testProp(
  'a batch decodes as its envelopes one by one, into memory of its own',
  [fc.array(fc.tuple(fc.uint8Array({ maxLength: 200 }), fc.nat({ max: 3 })), { maxLength: 12 })],
  (t, samples) => {
    const inputs = samples.map(([payload, parents]) => encodeEnvelope(sample(payload, parents)));
    const expected = inputs.map((bytes) => decodeEnvelope(bytes));
    const batch = decodeEnvelopes(inputs);
    // The sender may reuse its buffers at once: what was decoded must not change with them.
    for (const bytes of inputs) bytes.fill(0xee);
    t.is(batch.length, expected.length);
    batch.forEach((envelope, i) => {
      t.true(envelope.id.equals(expected[i]!.id));
      t.deepEqual(Array.from(envelope.payload), Array.from(expected[i]!.payload));
      t.deepEqual(Array.from(envelope.salt), Array.from(expected[i]!.salt));
      t.deepEqual(envelope.parents.map(String), expected[i]!.parents.map(String));
    });
  },
);

test('one bad envelope anywhere in a batch refuses the batch with its code', (t) => {
  const good = [0, 1, 2].map((i) => encodeEnvelope(sample(new Uint8Array([i, i]), 1)));
  for (const at of [0, 1, 2]) {
    const forged = good.map((bytes) => Uint8Array.from(bytes));
    forged[at]![forged[at]!.length - 1]! ^= 0x01;
    t.is((t.throws(() => decodeEnvelopes(forged)) as NoatunError).code, 'FORGED_ID', `forged at ${at}`);
    const truncated = good.map((bytes, i) => (i === at ? bytes.subarray(0, 10) : bytes));
    t.is((t.throws(() => decodeEnvelopes(truncated)) as NoatunError).code, 'BAD_FRAME', `truncated at ${at}`);
    const notBytes = good.map((bytes, i) => (i === at ? ('text' as unknown as Uint8Array) : bytes));
    t.is((t.throws(() => decodeEnvelopes(notBytes)) as NoatunError).code, 'BAD_FRAME', `not bytes at ${at}`);
  }
  t.deepEqual(decodeEnvelopes([]), []);
});

test('every truncation of a valid envelope is refused with BAD_FRAME', (t) => {
  const bytes = encodeEnvelope(sample(new Uint8Array([1, 2, 3, 4, 5])));
  for (let length = 0; length < bytes.length; length++) {
    const error = t.throws(() => decodeEnvelope(bytes.subarray(0, length)));
    t.is((error as NoatunError).code, 'BAD_FRAME', `length ${length}`);
  }
});

test('trailing bytes and an unknown version are refused with BAD_FRAME', (t) => {
  const bytes = encodeEnvelope(sample(new Uint8Array([1])));
  const longer = new Uint8Array(bytes.length + 1);
  longer.set(bytes);
  t.is((t.throws(() => decodeEnvelope(longer)) as NoatunError).code, 'BAD_FRAME');
  const versioned = Uint8Array.from(bytes);
  versioned[0] = 2;
  t.is((t.throws(() => decodeEnvelope(versioned)) as NoatunError).code, 'BAD_FRAME');
});

testProp(
  'a batch is refused exactly when one of its ids is not its hash, the first such named (native check against JavaScript)',
  [
    fc.array(fc.tuple(fc.uint8Array({ maxLength: 120 }), fc.nat({ max: 2 })), { minLength: 1, maxLength: 8 }),
    fc.nat(),
    fc.nat(),
    fc.integer({ min: 1, max: 255 }),
  ],
  (t, samples, which, where, flip) => {
    const inputs = samples.map(([payload, parents]) => encodeEnvelope(sample(payload, parents)));
    // One byte of one envelope changed: of its id, salt or payload (hashed), or of its parents (not).
    const target = inputs[which % inputs.length]!;
    const at = 1 + (where % (target.length - 1));
    target[at]! ^= flip;
    let expected: string | undefined;
    for (const bytes of inputs) {
      try {
        decodeEnvelope(bytes);
      } catch (error) {
        expected = (error as NoatunError).code;
        break;
      }
    }
    const outcome = (() => {
      try {
        decodeEnvelopes(inputs);
        return undefined;
      } catch (error) {
        return (error as NoatunError).code as string;
      }
    })();
    t.is(outcome, expected);
    if (expected === 'FORGED_ID') {
      const message = (t.throws(() => decodeEnvelopes(inputs)) as Error).message;
      t.true(message.includes(envelopeIdOf(target).toString()), message);
    }
  },
  { numRuns: 500 },
);

test('changing any payload or salt byte is refused with FORGED_ID', (t) => {
  const bytes = encodeEnvelope(sample(new Uint8Array([10, 20, 30]), 0));
  for (const at of [17, 20, 24, bytes.length - 1, bytes.length - 3]) {
    const forged = Uint8Array.from(bytes);
    forged[at]! ^= 0x40;
    t.is((t.throws(() => decodeEnvelope(forged)) as NoatunError).code, 'FORGED_ID', `byte ${at}`);
  }
});

test('parents out of order, duplicated or not older than the event are refused', (t) => {
  const envelope = sample(new Uint8Array([1]), 2);
  const [a, b] = envelope.parents;
  for (const parents of [[b!, a!], [a!, a!], [a!, envelope.id]]) {
    const bytes = encodeEnvelope(withParents(envelope, parents));
    t.is((t.throws(() => decodeEnvelope(bytes)) as NoatunError).code, 'BAD_FRAME');
  }
});

test('limits on parents and payload size are enforced', (t) => {
  const envelope = sample(new Uint8Array(100), 3);
  const bytes = encodeEnvelope(envelope);
  t.is((t.throws(() => decodeEnvelope(bytes, { maxParents: 2, maxPayloadBytes: 1000 })) as NoatunError).code, 'BAD_FRAME');
  t.is((t.throws(() => decodeEnvelope(bytes, { maxParents: 10, maxPayloadBytes: 99 })) as NoatunError).code, 'BAD_FRAME');
  t.notThrows(() => decodeEnvelope(bytes, { maxParents: 3, maxPayloadBytes: 100 }));
});

test('changing the parent list keeps the id valid (parents are not hashed)', (t) => {
  const envelope = sample(new Uint8Array([7]), 2);
  const pruned = encodeEnvelope(withParents(envelope, envelope.parents.slice(1)));
  t.true(decodeEnvelope(pruned).id.equals(envelope.id));
});
