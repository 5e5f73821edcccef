/**
 * `npm run bench -- [name…] [--quick]`: runs the named benchmarks (all by default) and prints one
 * table. `--quick` runs small sizes to check that every implementation still agrees; its speeds
 * mean nothing.
 */
import { printTable, type Row } from './harness.js';

const registry: Record<string, (options: { quick: boolean }) => Promise<Row[]>> = {
  view: async (options) => (await import('./view.js')).runViewBench(options),
  warehouse: async (options) => (await import('./warehouse/index.js')).runWarehouse(options),
  late: async (options) => (await import('./late.js')).runLateBench(options),
  growth: async (options) => (await import('./growth.js')).runGrowthBench(options),
  sync: async (options) => (await import('./sync.js')).runSyncBench(options),
};

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const names = args.filter((a) => !a.startsWith('--'));
for (const name of names) {
  if (!(name in registry)) {
    console.error(`unknown benchmark "${name}"; known: ${Object.keys(registry).join(', ')}`);
    process.exit(2);
  }
}
const rows: Row[] = [];
for (const name of names.length === 0 ? Object.keys(registry) : names) {
  rows.push(...(await registry[name]!({ quick })));
}
console.log(`\nNode ${process.version}, ${quick ? 'quick mode (sizes too small to mean anything)' : 'full sizes'}`);
printTable(rows);
