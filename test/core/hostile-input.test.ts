/**
 * Hostile input: random and mutated bytes never crash the decoder or the database, and a batch
 * with anything bad in it stores nothing.
 */
import { fc, testProp } from '@fast-check/ava';
import test from 'ava';
import { decodeEnvelope } from '../../src/core/envelope.js';
import { Database, NoatunError, s } from '../../src/index.js';
import { removeTempDirs, tempDir } from '../helpers/temp.js';

test.after.always(removeTempDirs);

const Root = s.object({ n: s.u32() });

testProp('random bytes either decode to a valid envelope or throw a NoatunError', [fc.uint8Array({ maxLength: 200 })], (t, bytes) => {
  try {
    decodeEnvelope(bytes);
    t.pass();
  } catch (error) {
    t.true(error instanceof NoatunError, String(error));
    t.true(['BAD_FRAME', 'FORGED_ID'].includes((error as NoatunError).code));
  }
});

test('mutated envelopes in a batch are refused and nothing of the batch is stored', async (t) => {
  const apply = (event: { n: number }, root: s.View<typeof Root>) => {
    root.n += event.n;
  };
  const source = await Database.open<{ n: number }, typeof Root>({ path: tempDir(), root: Root, apply });
  for (let i = 0; i < 5; i++) await source.append({ n: i });
  const good = [...source.messages()].map((m) => m.bytes);
  let refused = 0;
  await fc.assert(
    fc.asyncProperty(fc.nat({ max: 4 }), fc.nat(), fc.integer({ min: 1, max: 255 }), async (which, at, flip) => {
      // A fresh target every run: a target that already held the good events could not show
      // that a refused batch stored some of them.
      const target = await Database.open<{ n: number }, typeof Root>({ path: tempDir(), root: Root, apply });
      try {
        const bad = Uint8Array.from(good[which]!);
        bad[at % bad.length]! ^= flip;
        const batch = [...good.slice(0, which), bad, ...good.slice(which + 1)];
        try {
          await target.ingest(batch);
        } catch (error) {
          refused++;
          t.true(error instanceof NoatunError, String(error));
          t.is(target.stats().stored, 0, 'a refused batch stored something');
          t.is(target.read((root) => root.n), 0, 'a refused batch changed the view');
          return;
        }
        // Parents are outside the id hash (pruning edits them), so a flipped byte in a parent id
        // can leave a valid envelope whose parent is unknown: it is parked, never applied.
        t.true(target.stats().stored <= good.length);
      } finally {
        await target.close();
      }
    }),
    { numRuns: 200 },
  );
  t.true(refused > 100, `${refused} of 200 mutated batches were refused`);
  await source.close();
});
