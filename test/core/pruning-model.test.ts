/**
 * The pruning property: pruning never changes the view. Random workloads of four apps (the bank
 * app of the model test, an overwrite-heavy "positions" app, a delete-heavy "registry" app and a
 * "warehouse" whose applies sometimes fail) go
 * to two databases in the same order — P prunes, N does not — with late and very late (behind the
 * cutoff) deliveries. After every batch both views must be equal. At the end a fresh database
 * that replays only what P kept must equal N too: everything P pruned could be removed from a
 * fresh replay without changing the view. P is then compacted and reopened and must still agree.
 *
 * Replay a failure with NOATUN_SEED=<seed>; run more seeds with NOATUN_SEEDS=<count>.
 */
import test from 'ava';
import { decodeEnvelope, encodeEnvelope, withParents } from '../../src/core/envelope.js';
import { Database } from '../../src/index.js';
import { type App, bank, positions, registry, warehouse } from '../helpers/apps.js';
import { FakeClock, prng, removeTempDirs, T0, tempDir } from '../helpers/temp.js';
import { appendOrRefused } from '../helpers/append.js';

test.after.always(removeTempDirs);

const INTERVAL = 120_000;

function openApp<E>(app: App<E>, path: string, clock: FakeClock, autoPrune: boolean) {
  return Database.open<E, typeof app.root>({
    path,
    root: app.root,
    now: clock.now,
    autoPrune,
    cutoffIntervalMs: INTERVAL,
    apply: app.apply as never,
  });
}

/** The wire form of an event with no parents (deliverable alone, also behind the cutoff). */
function bare(bytes: Uint8Array): Uint8Array {
  return encodeEnvelope(withParents(decodeEnvelope(bytes), []));
}

async function runSeed<E>(app: App<E>, seed: number, events: number) {
  const random = prng(seed);
  const clock = new FakeClock(T0);
  const source = await openApp(app, tempDir(), new FakeClock(T0), false);
  const pruning = await openApp(app, tempDir(), clock, true);
  const keeping = await openApp(app, tempDir(), clock, false);
  const pending: Uint8Array[] = [];
  let eventTime = T0;
  let checks = 0;
  const view = (db: typeof pruning) => app.normalize(db.read((root) => (root as { export(): unknown }).export()));
  for (let i = 0; i < events; i++) {
    eventTime += Math.floor(random() * 8_000);
    // Mostly fresh, sometimes backdated within the interval, rarely far behind the cutoff.
    const r = random();
    const time = r < 0.1 ? eventTime - Math.floor(random() * 90_000) : eventTime;
    const id = await appendOrRefused(source, app.random(random), { time: Math.max(T0, time) });
    if (id !== undefined) pending.push(bare(source.message(id)!.bytes));
    clock.time = Math.max(clock.time, eventTime);
    // Deliver a random prefix of what is pending, shuffled a little.
    if (random() < 0.5 || i === events - 1) {
      const batch = pending.splice(0, i === events - 1 ? pending.length : 1 + Math.floor(random() * pending.length));
      if (random() < 0.5) batch.reverse();
      for (const frame of batch) {
        // Events behind the cutoff may meet a pruned past (that is what the cutoff means): the
        // property covers events that arrive in time. They are covered by the scenario tests.
        if (decodeEnvelope(frame).id.timestamp < pruning.cutoffTime) continue;
        await pruning.ingest([frame]);
        await keeping.ingest([frame]);
      }
      checks++;
      const hint = `${app.name}: replay with NOATUN_SEED=${seed} npx ava test/core/pruning-model.test.ts`;
      if (JSON.stringify(view(pruning)) !== JSON.stringify(view(keeping))) {
        return { ok: false as const, hint, step: i, p: view(pruning), n: view(keeping) };
      }
    }
  }
  clock.time += 10 * INTERVAL;
  pruning.advanceCutoff();
  const expected = view(keeping);
  const stats = pruning.stats();
  // A fresh replay of only what P kept.
  const fresh = await openApp(app, tempDir(), new FakeClock(clock.time), false);
  await fresh.ingest([...pruning.messages()].map((m) => bare(m.bytes)));
  const replayed = view(fresh);
  await pruning.compact();
  const compacted = view(pruning);
  const dir = pruning.path;
  await Promise.all([source.close(), pruning.close(), keeping.close(), fresh.close()]);
  const reopened = await openApp(app, dir, clock, true);
  const afterReopen = view(reopened);
  await reopened.close();
  return { ok: true as const, checks, expected, p: view, replayed, compacted, afterReopen, stats };
}

const seedCount = Number.parseInt(process.env.NOATUN_SEEDS ?? '2', 10);
const fixedSeed = process.env.NOATUN_SEED;
const seeds =
  fixedSeed === undefined
    ? Array.from({ length: seedCount }, () => (Math.random() * 2 ** 32) >>> 0)
    : [Number.parseInt(fixedSeed, 10) >>> 0];

for (const app of [bank, positions, registry, warehouse] as App<unknown>[]) {
  for (const seed of seeds) {
    test(`${app.name}: the view with pruning equals the view without, at every step and after a fresh replay (seed ${seed})`, async (t) => {
      const result = await runSeed(app, seed, 300);
      if (!result.ok) {
        t.log(result.hint);
        t.deepEqual(result.p, result.n, `views differ after event ${result.step}`);
        return;
      }
      const hint = `${app.name}: replay with NOATUN_SEED=${seed}`;
      t.deepEqual(result.replayed, result.expected, `fresh replay of the kept events: ${hint}`);
      t.deepEqual(result.compacted, result.expected, `after compact: ${hint}`);
      t.deepEqual(result.afterReopen, result.expected, `after reopen: ${hint}`);
      t.true(result.stats.pruned > 0 || app.name === 'bank', `${app.name} prunes something (${JSON.stringify(result.stats)})`);
      t.log(`${app.name}: ${result.checks} comparisons, stored ${result.stats.stored}, pruned ${result.stats.pruned}`);
    });
  }
}
