/**
 * The core property, checked against a model: the same set of events gives the same view,
 * whatever the arrival order, batching, duplicates and restarts.
 *
 * A random workload of an app with reads, conditional writes, deletes and opaque pushes is
 * appended to database A with random (also backdated) timestamps. Database B ingests A's
 * envelopes shuffled, in random batches, with duplicates. Database C is A reopened from disk.
 * All three views must equal a plain-JS replay of the events in id order.
 *
 * Replay a failure with NOATUN_SEED=<seed>; run more seeds with NOATUN_SEEDS=<count>.
 */
import test from 'ava';
import { Database } from '../../src/index.js';
import { applyModel, applyOp, normalize, type Op, type Plain, Root, randomOp } from '../helpers/bank-app.js';
import { FakeClock, prng, removeTempDirs, T0, tempDir } from '../helpers/temp.js';
import { appendOrRefused, transactionOrRefused } from '../helpers/append.js';

test.after.always(removeTempDirs);

function open(path: string, clock: FakeClock) {
  return Database.open<Op, typeof Root>({ path, root: Root, now: clock.now, autoPrune: false, apply: applyOp });
}

async function runSeed(seed: number, events: number): Promise<{ a: unknown; b: unknown; c: unknown; model: unknown }> {
  const random = prng(seed);
  const clock = new FakeClock(T0);
  const dirA = tempDir();
  const a = await open(dirA, clock);
  for (let i = 0; i < events; ) {
    // Mostly forward in time, sometimes backdated by up to a minute.
    clock.time = random() < 0.2 ? clock.time - Math.floor(random() * 60_000) : clock.time + Math.floor(random() * 5_000);
    if (random() < 0.2) {
      const n = 1 + Math.floor(random() * 4);
      await transactionOrRefused(a, (tx) => {
        for (let j = 0; j < n; j++) tx.append(randomOp(random));
      });
      i += n;
    } else {
      await appendOrRefused(a, randomOp(random));
      i++;
    }
  }
  const messages = [...a.messages()];
  const codec = (await import('../../src/index.js')).messagePackCodec<Op>();
  const model: Plain = { total: 0, accounts: new Map(), counters: new Map(), audit: [], lastNote: null };
  for (const m of messages) applyModel(codec.decode(m.payload), model);

  // B: shuffled, random batches, duplicates; its clock is past every event (later ones it refuses).
  const b = await open(tempDir(), new FakeClock(Math.max(clock.time, ...messages.map((m) => m.id.timestamp))));
  const pool = messages.map((m) => m.bytes);
  for (let i = pool.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [pool[i], pool[j]] = [pool[j]!, pool[i]!];
  }
  while (pool.length > 0) {
    const size = 1 + Math.floor(random() * 8);
    const batch = pool.splice(0, size);
    if (random() < 0.3) batch.push(messages[Math.floor(random() * messages.length)]!.bytes);
    await b.ingest(batch);
  }
  const viewA = normalize(a.read((root) => root.export()));
  const viewB = normalize(b.read((root) => root.export()));
  await Promise.all([a.close(), b.close()]);

  // C: A reopened from disk.
  const c = await open(dirA, clock);
  const viewC = normalize(c.read((root) => root.export()));
  await c.close();
  return { a: viewA, b: viewB, c: viewC, model: normalize(model) };
}

const seedCount = Number.parseInt(process.env.NOATUN_SEEDS ?? '4', 10);
const fixedSeed = process.env.NOATUN_SEED;
const seeds =
  fixedSeed === undefined
    ? Array.from({ length: seedCount }, () => (Math.random() * 2 ** 32) >>> 0)
    : [Number.parseInt(fixedSeed, 10) >>> 0];

for (const seed of seeds) {
  test(`appended, shuffled-ingested and reopened databases all equal the model replay (seed ${seed})`, async (t) => {
    const { a, b, c, model } = await runSeed(seed, 120);
    const hint = `replay with NOATUN_SEED=${seed} npx ava test/core/model.test.ts`;
    t.deepEqual(a, model, hint);
    t.deepEqual(b, model, hint);
    t.deepEqual(c, model, hint);
  });
}
