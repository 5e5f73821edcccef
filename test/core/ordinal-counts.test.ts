/**
 * The pruner's counts per ordinal against a JS `Map`: random adds, decrements to zero, deletions
 * and clears, with ordinals dense (consecutive, as events get them) and sparse, across growths.
 */
import test from 'ava';
import { OrdinalCounts } from '../../src/core/ordinal-counts.js';
import { prng, testSeed } from '../helpers/temp.js';

const seed = testSeed();
const hint = `replay with NOATUN_SEED=${seed} npx ava test/core/ordinal-counts.test.ts`;

for (const [name, range] of [
  ['dense ordinals', 3_000],
  ['sparse ordinals', 2 ** 32 - 1],
] as const) {
  test(`counts agree with a Map through adds, removals and clears (${name}, seed ${seed})`, (t) => {
    const random = prng(seed);
    const counts = new OrdinalCounts();
    const model = new Map<number, number>();
    const known: number[] = [];
    const pick = () => (known.length !== 0 && random() < 0.7 ? known[Math.floor(random() * known.length)]! : 1 + Math.floor(random() * range));
    for (let step = 0; step < 60_000; step++) {
      const ordinal = pick();
      const roll = random();
      if (roll < 0.5) {
        const delta = 1 + Math.floor(random() * 3);
        const expected = (model.get(ordinal) ?? 0) + delta;
        model.set(ordinal, expected);
        known.push(ordinal);
        t.is(counts.add(ordinal, delta), expected);
      } else if (roll < 0.8) {
        const expected = Math.max(0, (model.get(ordinal) ?? 0) - 1);
        if (expected === 0) model.delete(ordinal);
        else model.set(ordinal, expected);
        t.is(counts.add(ordinal, -1), expected);
      } else if (roll < 0.9999) {
        model.delete(ordinal);
        counts.delete(ordinal);
      } else {
        model.clear();
        counts.clear();
      }
      if (step % 997 === 0) {
        t.is(counts.size, model.size);
        for (const [key, value] of model) if (counts.get(key) !== value) t.fail(`ordinal ${key}: ${counts.get(key)}, expected ${value}; ${hint}`);
        for (let i = 0; i < 50; i++) {
          const probe = pick();
          t.is(counts.has(probe), model.has(probe));
        }
      }
    }
    t.is(counts.size, model.size, hint);
    for (const [key, value] of model) t.is(counts.get(key), value, hint);
  });
}
