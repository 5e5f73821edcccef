/**
 * `npm run bench -- [name…] [--quick]`: runs the named benchmarks (all by default) and prints one
 * table. `--quick` runs small sizes to check that every implementation still agrees; its speeds
 * mean nothing.
 *
 * Every part of a benchmark (usually one implementation of one workload) runs in its own child
 * process, so the peak RSS of a row is that implementation's alone and one side's garbage or JIT
 * state never slows the other. A part prints its rows as one JSON line; the parent checks that the
 * parts of a workload report the same check value, then prints the table.
 *
 * `--child=<name>:<part>` runs one part in this process (what the parent spawns; also handy with
 * `node --cpu-prof --import=tsx bench/run.ts --child=warehouse:noatun`).
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { cleanup, peakRss, printTable, type Row } from './harness.js';

/** A benchmark: the parts it runs (each in its own process) and how to run one. */
interface Bench {
  readonly parts: readonly string[];
  run(part: string, options: { quick: boolean }): Promise<Row[]>;
}

const registry: Record<string, Bench> = {
  view: { parts: ['all'], run: async (_part, options) => (await import('./view.js')).runViewBench(options) },
  warehouse: {
    parts: ['sqlite', 'maps', 'noatun', 'noatun-prune', 'noatun-pipelined'],
    run: async (part, options) => (await import('./warehouse/index.js')).runWarehousePart(part, options),
  },
  kv: {
    parts: ['sqlite', 'map', 'noatun'],
    run: async (part, options) => (await import('./kv.js')).runKvPart(part, options),
  },
  reopen: {
    parts: ['sqlite', 'noatun'],
    run: async (part, options) => (await import('./reopen.js')).runReopenPart(part, options),
  },
  late: { parts: ['all'], run: async (_part, options) => (await import('./late.js')).runLateBench(options) },
  growth: { parts: ['all'], run: async (_part, options) => (await import('./growth.js')).runGrowthBench(options) },
  sync: { parts: ['all'], run: async (_part, options) => (await import('./sync.js')).runSyncBench(options) },
};

const ROWS_PREFIX = '@@rows ';

/** Runs one part here and prints its rows for the parent; every row gets this process's peak RSS. */
async function runChild(spec: string, quick: boolean): Promise<void> {
  const [name, part] = spec.split(':') as [string, string];
  const bench = registry[name];
  if (bench === undefined || !bench.parts.includes(part)) throw new Error(`unknown part "${spec}"`);
  try {
    const rows = await bench.run(part, { quick });
    const rss = peakRss();
    const out = rows.map((row) => ({ ...row, peakRssBytes: row.peakRssBytes ?? rss }));
    process.stdout.write(`${ROWS_PREFIX}${JSON.stringify(out)}\n`);
  } finally {
    cleanup();
  }
}

/** Spawns this script for one part; passes its output through and collects its rows. */
function spawnPart(spec: string, quick: boolean): Promise<Row[]> {
  const script = fileURLToPath(import.meta.url);
  const args = [...process.execArgv, script, `--child=${spec}`, ...(quick ? ['--quick'] : [])];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let rows: Row[] | undefined;
    let pending = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      pending += chunk;
      let newline = pending.indexOf('\n');
      while (newline >= 0) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        if (line.startsWith(ROWS_PREFIX)) rows = JSON.parse(line.slice(ROWS_PREFIX.length)) as Row[];
        else console.log(line);
        newline = pending.indexOf('\n');
      }
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0 && rows !== undefined) resolve(rows);
      else reject(new Error(`benchmark part ${spec} exited with ${code}`));
    });
  });
}

/** Throws when the rows of one workload disagree on their check value. */
function verifyChecks(rows: readonly Row[]): void {
  const first = new Map<string, Row>();
  for (const row of rows) {
    if (row.check === undefined) continue;
    const seen = first.get(row.workload);
    if (seen === undefined) first.set(row.workload, row);
    else if (seen.check !== row.check) {
      throw new Error(
        `${row.workload}: ${row.implementation} has check ${row.check}, ${seen.implementation} has ${seen.check}`,
      );
    }
  }
}

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const childSpec = args.find((a) => a.startsWith('--child='))?.slice('--child='.length);
if (childSpec !== undefined) {
  await runChild(childSpec, quick);
} else {
  const names = args.filter((a) => !a.startsWith('--'));
  for (const name of names) {
    if (!(name in registry)) {
      console.error(`unknown benchmark "${name}"; known: ${Object.keys(registry).join(', ')}`);
      process.exit(2);
    }
  }
  const rows: Row[] = [];
  for (const name of names.length === 0 ? Object.keys(registry) : names) {
    for (const part of registry[name]!.parts) rows.push(...(await spawnPart(`${name}:${part}`, quick)));
  }
  verifyChecks(rows);
  console.log(
    `\nNode ${process.version}, ${quick ? 'quick mode (sizes too small to mean anything)' : 'full sizes'}; every check value agrees`,
  );
  printTable(rows);
}
