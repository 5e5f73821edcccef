/**
 * The cost of a late event: a database of N events receives one event k positions back
 * (k = 1, 100, 10k); it rewinds k events and re-applies them. Reported beyond the cost of an
 * in-order ingest of one event (the durable commit), per event re-applied, next to the cost per
 * event of appending in order (DESIGN target: O(k), at most 2× applying k events).
 */
import { Database, s } from 'noatun';
import { benchDir, cleanup, type Row } from './harness.js';

const Root = s.object({ counts: s.map(s.u32(), s.u32()), total: s.u32() });
type Event = { k: number };
const apply = (event: Event, root: s.View<typeof Root>) => {
  root.counts.set(event.k, (root.counts.get(event.k) ?? 0) + 1);
  root.total += 1;
};

export async function runLateBench(options: { quick: boolean }): Promise<Row[]> {
  const n = options.quick ? 12_000 : 100_000;
  const start = Date.UTC(2026, 0, 1);
  let now = start;
  const db = await Database.open<Event, typeof Root>({ path: benchDir('late'), root: Root, now: () => now, apply });
  // One event per millisecond, so "k positions back" is "k ms back".
  const batchSeconds: number[] = [];
  for (let i = 0; i < n; i += 1000) {
    const t = process.hrtime.bigint();
    await db.transaction((tx) => {
      for (let j = 0; j < 1000; j++) {
        now += 1;
        tx.append({ k: (i + j) % 5000 });
      }
    });
    batchSeconds.push(Number(process.hrtime.bigint() - t) / 1e9);
  }
  const inOrderPerEvent = batchSeconds.reduce((a, b) => a + b, 0) / n;
  const source = await Database.open<Event, typeof Root>({ path: benchDir('late-source'), root: Root, now: () => now, apply });
  const rows: Row[] = [];
  // The fixed part: ingesting one event that goes at the end (a commit and a flush).
  const fixed: number[] = [];
  for (let rep = 0; rep < 3; rep++) {
    now += 1;
    const id = await source.append({ k: 2 });
    const bytes = [...source.messages()].find((m) => m.id.equals(id))!.bytes;
    const t = process.hrtime.bigint();
    await db.ingest([bytes]);
    fixed.push(Number(process.hrtime.bigint() - t) / 1e9);
  }
  const fixedCost = Math.min(...fixed);
  for (const k of [1, 100, 10_000]) {
    const times: number[] = [];
    for (let rep = 0; rep < 3; rep++) {
      const id = await source.append({ k: 1 }, { time: start + n - k + rep + 1 });
      const bytes = [...source.messages()].find((m) => m.id.equals(id))!.bytes;
      const t = process.hrtime.bigint();
      await db.ingest([bytes]);
      times.push(Number(process.hrtime.bigint() - t) / 1e9);
    }
    const best = Math.min(...times);
    const extraPerEvent = Math.max(0, best - fixedCost) / k;
    rows.push({
      workload: `late event ${k} back`,
      implementation: 'noatun',
      note: `${(best * 1000).toFixed(1)} ms; beyond an in-order ingest (${(fixedCost * 1000).toFixed(1)} ms): ${(extraPerEvent * 1e6).toFixed(1)} µs per event re-applied (appending in order: ${(inOrderPerEvent * 1e6).toFixed(1)} µs per event)`,
    });
  }
  const expected = n + 12;
  if (db.read((root) => root.total) !== expected) throw new Error(`late bench: total ${db.read((root) => root.total)}, expected ${expected}`);
  await Promise.all([db.close(), source.close()]);
  cleanup();
  return rows;
}
