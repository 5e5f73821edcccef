/**
 * Bounded growth: a position-update app (each key overwritten constantly, nothing read) keeps
 * only the live keys plus the cutoff window, and its journal stops growing once the cutoff moves.
 * (`npm run bench -- growth` runs the full-size version: 1M events over 10k keys.)
 */
import test from 'ava';
import { Database, s } from '../../src/index.js';
import { FakeClock, prng, removeTempDirs, T0, tempDir } from '../helpers/temp.js';

test.after.always(removeTempDirs);

const Positions = s.object({ at: s.map(s.u32(), s.object({ x: s.i32(), y: s.i32() })) });
type Move = [key: number, x: number, y: number];

test('stored events stay within the live keys plus the cutoff window, and the journal stays flat', async (t) => {
  const keys = 300;
  const eventMs = 10;
  const interval = 120_000;
  const clock = new FakeClock(T0);
  const db = await Database.open<Move, typeof Positions>({
    path: tempDir(),
    root: Positions,
    now: clock.now,
    cutoffIntervalMs: interval,
    apply([key, x, y], root) {
      root.at.set(key, { x, y });
    },
  });
  const random = prng(11);
  const samples: { stored: number; undoBytes: number; logBytes: number }[] = [];
  for (let batch = 0; batch < 120; batch++) {
    await db.transaction((tx) => {
      for (let i = 0; i < 500; i++) tx.append([Math.floor(random() * keys), batch, i]);
    });
    clock.advance(500 * eventMs);
    if (batch % 10 === 9) samples.push(db.stats());
  }
  // The cutoff trails the clock by the interval plus up to two minutes (minute floor and stride).
  const window = (interval + 120_000) / eventMs;
  const bound = 3 * keys + window + 500;
  for (const sample of samples) t.true(sample.stored <= bound, `stored ${sample.stored} ≤ ${bound}`);
  t.true(db.stats().pruned > 25_000);
  // After warm-up (the first half), the journal holds about one window of history.
  const later = samples.slice(6).map((sample) => sample.undoBytes);
  t.true(Math.max(...later) < 1.5 * Math.min(...later), `journal bytes flat: ${later.join(', ')}`);
  t.is(db.read((root) => root.at.size), keys);
  await db.close();
});
