/**
 * Runs the warehouse workload on every implementation in one process and reports write and query
 * rates. All implementations must produce the same query results (checked; a mismatch fails).
 */
import { cleanup, peakRss, type Row, time } from '../harness.js';
import { mapsWarehouse } from './maps.js';
import { noatunWarehouse } from './noatun.js';
import { sqliteWarehouse } from './sqlite.js';
import { generateWorkload, type WarehouseImplementation, type Workload } from './workload.js';

async function measure(impl: WarehouseImplementation, workload: Workload, quick: boolean) {
  await impl.open();
  const writes = await time(async () => {
    for (const tasks of workload.transactions) await impl.write(tasks);
  });
  // The check value: every query's result, XOR-folded with its position.
  let check = 0;
  const results: number[] = [];
  for (const [box, article] of workload.queries) {
    const total = impl.query(box, article);
    results.push(total);
    check = (Math.imul(check, 31) + total) | 0;
  }
  const minSeconds = quick ? 0.05 : 1;
  let queries = 0;
  const queryTime = await time(() => {
    const start = process.hrtime.bigint();
    let sink = 0;
    while (Number(process.hrtime.bigint() - start) / 1e9 < minSeconds) {
      for (const [box, article] of workload.queries) sink += impl.query(box, article);
      queries += workload.queries.length;
    }
    return sink;
  });
  const disk = impl.diskBytes();
  const description = impl.describe?.();
  await impl.close();
  return {
    eventsPerSecond: workload.events / writes.seconds,
    queriesPerSecond: queries / queryTime.seconds,
    check,
    results,
    disk,
    description,
  };
}

/** The `warehouse` benchmark. `prune` adds the Noatun run with pruning on. */
export async function runWarehouse(options: { quick: boolean }): Promise<Row[]> {
  const workload = generateWorkload(1, options.quick ? 12 : 500);
  console.log(
    `warehouse: seed ${workload.seed}, ${workload.transactions.length} transactions, ${workload.events} events, ${workload.queries.length} distinct queries`,
  );
  const rows: Row[] = [];
  const checks = new Map<string, number[]>();
  for (const make of [sqliteWarehouse, mapsWarehouse, () => noatunWarehouse({ autoPrune: false }), () => noatunWarehouse({ autoPrune: true })]) {
    const impl = make();
    const result = await measure(impl, workload, options.quick);
    checks.set(impl.name, result.results);
    rows.push({
      workload: 'warehouse',
      implementation: impl.name,
      eventsPerSecond: result.eventsPerSecond,
      queriesPerSecond: result.queriesPerSecond,
      peakRssBytes: peakRss(),
      diskBytes: result.disk,
      note: `check ${result.check}${result.description === undefined ? '' : `; ${result.description}`}`,
    });
  }
  cleanup();
  const [first, ...others] = [...checks.values()];
  for (const [name, results] of checks) {
    if (JSON.stringify(results) !== JSON.stringify(first)) {
      throw new Error(`warehouse: ${name} answered ${JSON.stringify(results)}, expected ${JSON.stringify(first)}`);
    }
  }
  void others;
  return rows;
}
