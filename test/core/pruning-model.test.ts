/**
 * The pruning property: pruning never changes the view, and what a database keeps is a function
 * of the events, not of the path they took. Random workloads of six apps (the bank app of the
 * model test, an overwrite-heavy "positions" app, a delete-heavy "registry" app, a "warehouse"
 * whose applies sometimes fail, the "catalog", whose results depend on map iteration order, and
 * "shelves", whose list elements and optionals are written by several events and then destroyed)
 * are written by a source S and delivered, with their parents, to three databases: P prunes, N
 * does not, and Q prunes and gets each batch in another order, in pieces. Deliveries are delayed
 * and shuffled, so events often arrive before their parents and wait (parked) — sometimes until
 * the parent falls behind the cutoff and they are released without it.
 *
 * In the last 40% of a run some events are very late: held back until they are behind the
 * receivers' cutoff (or written far in the past), so they arrive while P and Q prune, after the
 * children that name them as parents. Such an event may meet a pruned past (what it reads may
 * be gone: that is what the cutoff means), so N stops being the reference once anything arrives
 * late; from then on P and Q, which got the same events by different paths, are compared.
 *
 * Checks, views always compared with maps in iteration order:
 * - after every batch: P equals Q; and P equals N while nothing has arrived behind the cutoff;
 * - at the end, once the clock has passed every hold: P and Q store the same ids, with the same
 *   cutoff hashes, views and failures;
 * - the fixed point: a fresh database that ingests P's stored events (shuffled, in random
 *   batches) holds the same ids and view, and after the clock passes every hold the same ids,
 *   cutoff hashes and view;
 * - compacting P, reopening it, and reopening it with its view deleted (a rebuild) change none
 *   of its stored ids, cutoff hashes or view.
 *
 * Replay a failure with NOATUN_SEED=<seed>; run more seeds with NOATUN_SEEDS=<count>.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import test from 'ava';
import { Database, type MessageId } from '../../src/index.js';
import { appendOrRefused } from '../helpers/append.js';
import { type App, bank, catalog, orderedView, positions, registry, shelves, warehouse } from '../helpers/apps.js';
import { type AnyDb, firstDifference, fixedPointDifference, holdClearance, settled, stateDifference } from '../helpers/convergence.js';
import { FakeClock, prng, removeTempDirs, T0, tempDir } from '../helpers/temp.js';
import { EventLog } from '../../src/core/log.js';

// Packs of 1 KiB of runs (not 32): the log packs what falls behind the cutoff as these tests go.
EventLog.defaultPackBytes = Number(process.env.PB ?? 1024);

test.after.always(removeTempDirs);

const INTERVAL = 120_000;

function openApp<E>(app: App<E>, dir: string, clock: FakeClock, autoPrune: boolean): Promise<AnyDb> {
  return Database.open({
    path: dir,
    root: app.root,
    now: clock.now,
    autoPrune,
    cutoffIntervalMs: INTERVAL,
    apply: app.apply as never,
  }) as Promise<AnyDb>;
}

interface Pending {
  readonly id: MessageId;
  readonly bytes: Uint8Array;
}

type Outcome =
  | { readonly ok: true; readonly checks: number; readonly late: number; readonly parked: number; readonly pruned: number; readonly stored: number }
  | { readonly ok: false; readonly message: string };

async function runSeed<E>(app: App<E>, seed: number, events: number): Promise<Outcome> {
  const random = prng(seed);
  const clock = new FakeClock(T0);
  // It mints events at any time (its clock far ahead: an append dated ahead of it is refused).
  const source = await openApp(app, tempDir(), new FakeClock(T0 + 10 * 365 * 86_400_000), false);
  const p = await openApp(app, tempDir(), clock, true);
  const n = await openApp(app, tempDir(), clock, false);
  const q = await openApp(app, tempDir(), clock, true);
  const dbs = [source, p, n, q];
  const pending: Pending[] = [];
  const veryLate: Pending[] = [];
  let eventTime = T0;
  let checks = 0;
  let late = 0;
  let heldBack = false;
  let parked = 0;
  /** Once anything reaches P behind its cutoff (or waits behind it), N is no longer a reference. */
  let nCompared = true;
  const fail = (message: string): Outcome => ({ ok: false, message });
  try {
    for (let i = 0; i < events; i++) {
      eventTime += Math.floor(random() * 8_000);
      const lateAllowed = i >= events * 0.6;
      // Mostly fresh, sometimes backdated within the interval, and late in the run sometimes far
      // behind the cutoff.
      const r = random();
      const time = r < 0.1 ? eventTime - Math.floor(random() * 90_000) : lateAllowed && r < 0.13 ? eventTime - 200_000 - Math.floor(random() * 200_000) : eventTime;
      // An event its own apply refused is not stored: there is nothing to send.
      const id = await appendOrRefused(source, app.random(random), { time: Math.max(T0, time) });
      if (id !== undefined) {
        const frame = { id, bytes: source.message(id)!.bytes.slice() };
        // Late in the run, some events are held back until they are behind the cutoff: at least
        // one, so that every seed has late arrivals (some seeds had none and failed the check
        // below, e.g. 2772622346 and 3889549115).
        if (lateAllowed && (random() < 0.05 || !heldBack)) {
          veryLate.push(frame);
          heldBack = true;
        } else pending.push(frame);
      }
      clock.time = Math.max(clock.time, eventTime);
      const last = i === events - 1;
      if (!(random() < 0.5 || last)) continue;
      // Deliver a random prefix of what is pending, shuffled a little, and very late events
      // that are now behind the cutoff.
      const batch = pending.splice(0, last ? pending.length : 1 + Math.floor(random() * pending.length));
      if (random() < 0.5) batch.reverse();
      for (let k = veryLate.length - 1; k >= 0; k--) {
        if (last || (veryLate[k]!.id.timestamp < p.cutoffTime && random() < 0.5)) batch.splice(Math.floor(random() * (batch.length + 1)), 0, ...veryLate.splice(k, 1));
      }
      for (const frame of batch) {
        await p.ingest([frame.bytes]);
        // After the ingest: it first moves the cutoff to where the clock says (pruning what that
        // made final), then stores, so this is the cutoff the event met. Before it, cutoffTime is
        // that of the last ingest and may be far behind the clock (seed 3072769268: an event
        // written 223 s in the past met a cutoff of 460000 but was compared with the stale 400000;
        // pruning had rightly let go of an event that the late one would have changed).
        if (frame.id.timestamp < p.cutoffTime) late++;
      }
      await n.ingest(batch.map((f) => f.bytes));
      // Q: the same batch in another order, in pieces.
      const other = [...batch];
      for (let k = other.length - 1; k > 0; k--) {
        const j = Math.floor(random() * (k + 1));
        [other[k], other[j]] = [other[j]!, other[k]!];
      }
      while (other.length > 0) await q.ingest(other.splice(0, 1 + Math.floor(random() * 3)).map((f) => f.bytes));
      // Late events that land before others wait for the re-application budget: let them in.
      await Promise.all([settled(p), settled(q), settled(n)]);
      parked = Math.max(parked, p.stats().parked);
      checks++;
      if (late > 0 || [...pending, ...veryLate].some((f) => f.id.timestamp < p.cutoffTime)) nCompared = false;
      const viewP = orderedView(p);
      const viewQ = orderedView(q);
      if (viewP !== viewQ) return fail(`after event ${i}: P and Q (same events, other order) have other views ${firstDifference(viewP, viewQ)}`);
      if (nCompared) {
        const viewN = orderedView(n);
        if (viewP !== viewN) return fail(`after event ${i}: the view with pruning differs from the view without ${firstDifference(viewP, viewN)}`);
      }
    }
    if (p.stats().parked !== 0 || q.stats().parked !== 0) return fail(`events still parked at the end: P ${p.stats().parked}, Q ${q.stats().parked}`);
    // Far past the cutoff, and past every hold.
    clock.time += 10 * INTERVAL;
    p.advanceCutoff();
    q.advanceCutoff();
    const pq = stateDifference(p, q, ['P', 'Q']);
    if (pq !== undefined) return fail(`at the end: ${pq}`);
    if (nCompared && orderedView(p) !== orderedView(n)) return fail(`at the end: the view with pruning differs from the view without ${firstDifference(orderedView(p), orderedView(n))}`);
    const stats = p.stats();

    // The fixed point: a fresh replay of what P kept, shuffled with parents (so parked events meet pruning).
    const fixedPoint = await fixedPointDifference(app as App<unknown>, p, clock, tempDir(), INTERVAL, 'scrambled', random);
    if (fixedPoint !== undefined) return fail(`P's ${fixedPoint}`);

    // Local decisions change nothing: compaction, a clean reopen, a rebuild.
    const reference = await openApp(app, tempDir(), clock, true);
    dbs.push(reference);
    await reference.ingest([...p.messages()].map((m) => m.bytes));
    clock.advance(holdClearance(INTERVAL, p.cutoffStrideMs));
    p.advanceCutoff();
    reference.advanceCutoff();
    const before = stateDifference(p, reference, ['P', 'a copy of its log']);
    if (before !== undefined) return fail(`before compacting: ${before}`);
    await p.compact();
    const compacted = stateDifference(p, reference, ['P compacted', 'a copy of its log']);
    if (compacted !== undefined) return fail(compacted);
    const dir = p.path;
    await p.close();
    const reopened = await openApp(app, dir, clock, true);
    dbs.push(reopened);
    const afterReopen = stateDifference(reopened, reference, ['P reopened', 'a copy of its log']);
    if (afterReopen !== undefined) return fail(afterReopen);
    await reopened.close();
    fs.rmSync(path.join(dir, 'view'), { recursive: true, force: true });
    const rebuilt = await openApp(app, dir, clock, true);
    dbs.push(rebuilt);
    if (rebuilt.stats().openedBy !== 'rebuild') return fail(`P reopened without its view was opened by ${rebuilt.stats().openedBy}`);
    const afterRebuild = stateDifference(rebuilt, reference, ['P rebuilt', 'a copy of its log']);
    if (afterRebuild !== undefined) return fail(afterRebuild);
    return { ok: true, checks, late, parked, pruned: stats.pruned, stored: stats.stored };
  } finally {
    await Promise.all(dbs.map((db) => db.close()));
  }
}

const seedCount = Number.parseInt(process.env.NOATUN_SEEDS ?? '2', 10);
const fixedSeed = process.env.NOATUN_SEED;
const seeds =
  fixedSeed === undefined
    ? Array.from({ length: seedCount }, () => (Math.random() * 2 ** 32) >>> 0)
    : [Number.parseInt(fixedSeed, 10) >>> 0];

for (const app of [bank, positions, registry, warehouse, catalog, shelves] as App<unknown>[]) {
  for (const seed of seeds) {
    test(`${app.name}: pruning changes no view, and the same events give the same stored set and cutoff hashes whatever their path, also very late and parked ones (seed ${seed})`, async (t) => {
      const outcome = await runSeed(app, seed, 300);
      const hint = `${app.name}: replay with NOATUN_SEED=${seed} npx ava test/core/pruning-model.test.ts`;
      if (!outcome.ok) {
        t.fail(`${outcome.message}\n${hint}`);
        return;
      }
      t.true(outcome.pruned > 0 || app.name === 'bank', `${app.name} prunes something`);
      t.true(outcome.late > 0, `some events arrived behind the cutoff (${hint})`);
      t.log(`${app.name}: ${outcome.checks} comparisons, ${outcome.late} events behind the cutoff, up to ${outcome.parked} parked, stored ${outcome.stored}, pruned ${outcome.pruned}`);
    });
  }
}
