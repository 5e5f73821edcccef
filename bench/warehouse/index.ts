/**
 * Runs the warehouse workload on one implementation (bench/run.ts gives each its own process) and
 * reports write and query rates. All implementations must produce the same query results: the
 * parent compares the check values and fails on a mismatch.
 */
import { cleanup, cpuNote, peakRss, type Row, time, WARM_SUFFIX, warmUp } from '../harness.js';
import { mapsWarehouse } from './maps.js';
import { noatunWarehouse } from './noatun.js';
import { sqliteWarehouse } from './sqlite.js';
import { generateWorkload, type WarehouseImplementation, type Workload } from './workload.js';

async function measure(impl: WarehouseImplementation, workload: Workload, quick: boolean) {
  await impl.open();
  let cpu = '';
  const writes = await time(async () => {
    cpu = await cpuNote(() => writeAll(impl, workload));
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
    cpu,
  };
}

async function writeAll(impl: WarehouseImplementation, workload: Workload): Promise<void> {
  for (const tasks of workload.transactions) await impl.write(tasks);
  await impl.drain?.();
}

const parts: Record<string, () => WarehouseImplementation> = {
  sqlite: () => sqliteWarehouse('FULL'),
  'sqlite-normal': () => sqliteWarehouse('NORMAL'),
  maps: mapsWarehouse,
  noatun: () => noatunWarehouse({ autoPrune: false }),
  'noatun-prune': () => noatunWarehouse({ autoPrune: true }),
  'noatun-pipelined': () => noatunWarehouse({ autoPrune: true, inFlight: 4 }),
  'noatun-prune-sync': () => noatunWarehouse({ autoPrune: true, commitMode: 'sync' }),
};

/**
 * One implementation of the `warehouse` benchmark (`sqlite`, `sqlite-normal`, `maps`, `noatun`, `noatun-prune`,
 * `noatun-pipelined`, `noatun-prune-sync`).
 * Its check value folds every query result in order, so rows agree only when every answer does.
 * With `--warm`, the writes run once on a database of their own first, in the same process and not
 * measured (see `warmUp` in the harness).
 */
export async function runWarehousePart(part: string, options: { quick: boolean; args: readonly string[] }): Promise<Row[]> {
  const workload = generateWorkload(1, options.quick ? 12 : 500);
  const warm = options.args.includes('--warm');
  if (warm) await warmUp(parts[part]!(), (impl) => writeAll(impl, workload));
  const impl = parts[part]!();
  const name = warm ? `${impl.name}${WARM_SUFFIX}` : impl.name;
  console.log(
    `warehouse (${name}): seed ${workload.seed}, ${workload.transactions.length} transactions, ${workload.events} events, ${workload.queries.length} distinct queries`,
  );
  const result = await measure(impl, workload, options.quick);
  cleanup();
  return [
    {
      workload: 'warehouse',
      implementation: name,
      eventsPerSecond: result.eventsPerSecond,
      queriesPerSecond: result.queriesPerSecond,
      peakRssBytes: peakRss(),
      diskBytes: result.disk,
      check: result.results.join(','),
      note: `check ${result.check}${result.description === undefined ? '' : `; ${result.description}`}${result.cpu === '' ? '' : `; writes: ${result.cpu}`}`,
    },
  ];
}
