/**
 * Bounded growth under pruning: a "position update" app (10k keys, each overwritten constantly,
 * nothing read) runs for 1M events on a virtual clock (10 ms per event, so the 15-minute cutoff
 * window holds ~90k events). Prints stored events and log, view and journal bytes every 100k
 * events: after warm-up they must stay flat, with stored events within the live keys plus the
 * cutoff window.
 */
import { Database, s } from 'noatun';
import { benchDir, bytesOnDisk, cleanup, type Row, seeded, time } from './harness.js';

const Positions = s.object({ at: s.map(s.u32(), s.object({ x: s.i32(), y: s.i32() })) });
type Move = [key: number, x: number, y: number];

/** The `growth` benchmark. */
export async function runGrowthBench(options: { quick: boolean }): Promise<Row[]> {
  const total = options.quick ? 20_000 : 1_000_000;
  const keys = options.quick ? 500 : 10_000;
  const perTransaction = 1000;
  const eventMs = 10;
  const dir = benchDir('growth');
  let now = Date.UTC(2025, 0, 1);
  const db = await Database.open<Move, typeof Positions>({
    path: dir,
    root: Positions,
    now: () => now,
    apply([key, x, y], root) {
      root.at.set(key, { x, y });
    },
  });
  const random = seeded(7);
  const windowEvents = Math.ceil((15 * 60_000) / eventMs);
  console.log(`growth: ${total} events over ${keys} keys, ${perTransaction} per commit, ${eventMs} ms apart (cutoff window ≈ ${windowEvents} events)`);
  console.log('  events   stored   records  log MB  view MB  journal MB  compactions  ev/s');
  const rows: Row[] = [];
  let done = 0;
  let last = process.hrtime.bigint();
  const step = total / 10;
  const { seconds } = await time(async () => {
    while (done < total) {
      await db.transaction((tx) => {
        for (let i = 0; i < perTransaction; i++) {
          tx.append([Math.floor(random() * keys), Math.floor(random() * 1e6), Math.floor(random() * 1e6)]);
        }
      });
      done += perTransaction;
      now += perTransaction * eventMs;
      if (done % step === 0) {
        const stats = db.stats();
        const elapsed = Number(process.hrtime.bigint() - last) / 1e9;
        last = process.hrtime.bigint();
        console.log(
          `  ${String(done).padStart(7)}  ${String(stats.stored).padStart(7)}  ${String(stats.records).padStart(7)}  ${(stats.logBytes / 2 ** 20).toFixed(1).padStart(6)}  ${(stats.viewBytes / 2 ** 20).toFixed(1).padStart(7)}  ${(stats.undoBytes / 2 ** 20).toFixed(1).padStart(10)}  ${String(stats.rebuilds).padStart(11)}  ${Math.round(step / elapsed)}`,
        );
      }
    }
  });
  const stats = db.stats();
  // Per key: its inserter (it owns the key), its current writer, and the last writer before the
  // cutoff whose overwriter is still inside the window. Plus the window itself: the cutoff
  // interval and one stride (the cutoff moves a stride at a time).
  const bound = 3 * keys + windowEvents + Math.ceil(60_000 / eventMs) + perTransaction;
  await db.close();
  const disk = bytesOnDisk(dir);
  cleanup();
  if (stats.stored > bound) throw new Error(`growth: ${stats.stored} events stored, more than keys + window (${bound})`);
  rows.push({
    workload: 'growth (position updates, pruning)',
    implementation: 'noatun',
    eventsPerSecond: total / seconds,
    diskBytes: disk,
    note: `stored ${stats.stored} ≤ ${bound}; pruned ${stats.pruned}; view ${(stats.viewBytes / 2 ** 20).toFixed(1)} MB, journal ${(stats.undoBytes / 2 ** 20).toFixed(1)} MB, log ${(stats.logBytes / 2 ** 20).toFixed(1)} MB`,
  });
  return rows;
}
