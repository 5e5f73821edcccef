/**
 * The newest runs kept in memory for packing, against an array as the model: appends, runs
 * replaced by what a commit wrote in their place, the frontier letting go of runs, the byte limit.
 */
import test from 'ava';
import { RecentRuns } from '../../src/core/recent-runs.js';
import { prng, testSeed } from '../helpers/temp.js';

/** A 16-byte key for `n` (big-endian, so keys sort as numbers) and a run of `size` bytes. */
function entry(n: number, size: number) {
  const key = Buffer.alloc(16);
  key.writeUInt32BE(n, 12);
  return { key, run: Buffer.alloc(size, n % 251) };
}

test('kept runs follow appends, replacements and the frontier as an array does', (t) => {
  const seed = testSeed();
  t.log(`seed ${seed}`);
  const random = prng(seed);
  const limit = 40_000;
  const recent = new RecentRuns(limit);
  let model: { key: Buffer; run: Buffer }[] = [];
  let next = 1_000;
  const trim = () => {
    let bytes = model.reduce((sum, { run }) => sum + run.byteLength, 0);
    while (bytes > limit) bytes -= model.shift()!.run.byteLength;
  };
  for (let step = 0; step < 5_000; step++) {
    const dice = random();
    if (dice < 0.6 || model.length === 0) {
      // Above every key, also those a rewritten last run left past the previous append.
      next = Math.max(next, model.at(-1)?.key.readUInt32BE(12) ?? 0) + 1_000;
      const added = entry(next, 1 + Math.floor(random() * 4_000));
      recent.append(added.key, added.run);
      model.push(added);
      trim();
    } else if (dice < 0.85) {
      // A kept run rewritten as 0–3 runs between it and the next one.
      const at = Math.floor(random() * model.length);
      const base = model[at]!.key.readUInt32BE(12);
      // Between it and the next run (the first at its own key, as a rewritten run's first is).
      const gap = (model[at + 1]?.key.readUInt32BE(12) ?? base + 1_000) - base;
      const count = Math.min(Math.floor(random() * 4), gap);
      const replacements = Array.from({ length: count }, (_, i) => entry(base + Math.floor((i * gap) / Math.max(count, 1)), 1 + Math.floor(random() * 4_000)));
      t.true(recent.replace(model[at]!.key, replacements));
      model.splice(at, 1, ...replacements);
      trim();
    } else if (dice < 0.9) {
      t.false(recent.replace(entry((model.at(-1)?.key.readUInt32BE(12) ?? next) + 1_999, 1).key, []), 'a run not kept is not replaced');
    } else {
      const at = Math.floor(random() * model.length);
      const through = model[at]!.key;
      recent.dropThrough(through);
      model = model.filter(({ key }) => Buffer.compare(key, through) > 0);
    }
    t.is(recent.size, model.length);
    t.is(recent.bytes, model.reduce((sum, { run }) => sum + run.byteLength, 0));
    t.true(recent.bytes <= limit);
    if (step % 50 === 0) {
      t.deepEqual(
        [...recent].map(({ key, run }) => [key.readUInt32BE(12), run.byteLength]),
        model.map(({ key, run }) => [key.readUInt32BE(12), run.byteLength]),
      );
    }
    t.is(recent.first()?.key, model[0]?.key);
  }
  recent.clear();
  t.is(recent.size, 0);
  t.is(recent.bytes, 0);
});
