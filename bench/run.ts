/**
 * `npm run bench -- [name…] [--quick] [--option=value…]`: runs the named benchmarks (all but the
 * opt-in ones by default) and prints one table. `--quick` runs small sizes to check that every
 * implementation still agrees; its speeds mean nothing. `--help` lists the workloads and their
 * options.
 *
 * Opt-in workloads (`swarm`: N peer processes, a few minutes) run only when named, so neither
 * `npm run bench` nor the CI's `npm run bench -- --quick` runs them.
 *
 * Every part of a benchmark (usually one implementation of one workload) runs in its own child
 * process, so the peak RSS of a row is that implementation's alone and one side's garbage or JIT
 * state never slows the other. A part prints its rows as one JSON line; the parent checks that the
 * parts of a workload report the same check value, then prints the table.
 *
 * `--repeat=N` runs every part N times (the parts of a workload in turn, each run starting one part
 * later, so that drift on the machine and the slow first process after a pause touch all alike)
 * and reports, for each row, the run with the median rate, noting the range: single runs of one
 * part spread ±12% on a 2-core machine.
 *
 * `--child=<name>:<part>` runs one part in this process (what the parent spawns; also handy with
 * `node --cpu-prof --import=tsx bench/run.ts --child=warehouse:noatun`).
 *
 * The benchmarks import the package by its name, `noatun`, so `npm run bench` (which builds first)
 * measures the compiled `dist/` that programs run. tsx's transform of the sources is slower on the
 * write paths (BENCHMARKS.md, run AB); `npm run bench:source` runs them anyway (the
 * `noatun-source` condition), without a build. `view` and `swarm` use modules the package does not
 * export and always run the sources.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { cleanup, fmt, peakRss, printTable, type Row } from './harness.js';

/** What a part is run with: `--quick`, and the `--name=value` options the workload takes. */
interface BenchOptions {
  readonly quick: boolean;
  readonly args: readonly string[];
}

/** A benchmark: the parts it runs (each in its own process) and how to run one. */
interface Bench {
  readonly parts: readonly string[];
  run(part: string, options: BenchOptions): Promise<Row[]>;
  /** Runs only when named (too long for `npm run bench`). */
  readonly optIn?: boolean;
  /** The `--name=value` options it takes (others are refused). */
  readonly options?: readonly string[];
  /** One line for `--help`. */
  readonly help?: string;
}

const registry: Record<string, Bench> = {
  view: {
    parts: ['all'],
    run: async (_part, options) => (await import('./view.js')).runViewBench(options),
    help: 'view micro-benchmarks against plain JS',
  },
  warehouse: {
    parts: ['sqlite', 'sqlite-normal', 'maps', 'noatun', 'noatun-prune', 'noatun-pipelined', 'noatun-prune-sync'],
    run: async (part, options) => (await import('./warehouse/index.js')).runWarehousePart(part, options),
    options: ['warm'],
    help: "the original's warehouse workload: better-sqlite3, JS Maps, noatun (--warm: the writes once unmeasured first, in the same process)",
  },
  kv: {
    parts: ['sqlite', 'map', 'noatun', 'noatun-sync'],
    run: async (part, options) => (await import('./kv.js')).runKvPart(part, options),
    options: ['warm'],
    help: 'key-value upserts/deletes and point lookups: better-sqlite3, JS Map, noatun (--warm: as for warehouse)',
  },
  reopen: {
    parts: ['sqlite', 'noatun'],
    run: async (part, options) => (await import('./reopen.js')).runReopenPart(part, options),
    help: 'reopening a database of 1M events: open + first read',
  },
  late: {
    parts: ['all'],
    run: async (_part, options) => (await import('./late.js')).runLateBench(options),
    help: 'the cost of a late event k positions back',
  },
  growth: {
    parts: ['all'],
    run: async (_part, options) => (await import('./growth.js')).runGrowthBench(options),
    help: 'bounded growth under pruning, 1M events on a virtual clock',
  },
  sync: {
    parts: ['all'],
    run: async (_part, options) => (await import('./sync.js')).runSyncBench(options),
    help: 'two peers over libp2p on loopback: one difference in 1M, initial copy of 100k, gossip latency',
  },
  swarm: {
    parts: ['all'],
    run: async (_part, options) => (await import('./swarm.js')).runSwarmBench(options),
    optIn: true,
    options: ['n', 'runs', 'idle-s', 'events', 'status-ms'],
    help:
      'N peer processes on 127.0.0.1, 100 events each: convergence, sync, bytes per delivery, idle bytes/CPU/RSS ' +
      '(opt-in: about 2.5 minutes for the default --n=2,4,8,16; --runs=K per N, --idle-s=15, --events=100, ' +
      '--status-ms=<statusIntervalMs>; --quick: N=2, 3 s idle)',
  },
};

function printHelp(): void {
  console.log('npm run bench -- [workload…] [--quick] [--repeat=N] [--option=value…]\n');
  console.log('Workloads (all but the opt-in ones run when none is named):');
  for (const [name, bench] of Object.entries(registry)) {
    console.log(`  ${name.padEnd(10)}${bench.optIn === true ? '(opt-in) ' : ''}${bench.help ?? ''}`);
  }
}

const ROWS_PREFIX = '@@rows ';

/** Runs one part here and prints its rows for the parent; every row gets this process's peak RSS. */
async function runChild(spec: string, options: BenchOptions): Promise<void> {
  const [name, part] = spec.split(':') as [string, string];
  const bench = registry[name];
  if (bench === undefined || !bench.parts.includes(part)) throw new Error(`unknown part "${spec}"`);
  try {
    const rows = await bench.run(part, options);
    const rss = peakRss();
    const out = rows.map((row) => ({ ...row, peakRssBytes: row.peakRssBytes ?? rss }));
    process.stdout.write(`${ROWS_PREFIX}${JSON.stringify(out)}\n`);
  } finally {
    cleanup();
  }
}

/** Spawns this script for one part; passes its output through and collects its rows. */
function spawnPart(spec: string, options: BenchOptions): Promise<Row[]> {
  const script = fileURLToPath(import.meta.url);
  const args = [...process.execArgv, script, `--child=${spec}`, ...(options.quick ? ['--quick'] : []), ...options.args];
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

/** A row's rate: events per second, or queries per second for rows without writes. */
function rateOf(row: Row): number | undefined {
  return row.eventsPerSecond ?? row.queriesPerSecond;
}

/**
 * The rows of several runs of the same parts, one per row: the run with the median rate (the
 * lower middle one of an even count), its note saying the range over the runs. A row with both
 * writes and queries (the warehouse) takes the median of its query rates too, from their own runs:
 * a query rate is one measurement per run, and the run of median write rate may hold a low one.
 * Rows without a rate come from the first run.
 */
function medianRows(runs: readonly (readonly Row[])[]): Row[] {
  if (runs.length === 1) return [...runs[0]!];
  return runs[0]!.map((first, i) => {
    const same = runs.map((run) => run[i]!).filter((row) => row.workload === first.workload && row.implementation === first.implementation);
    const rated = same.filter((row) => rateOf(row) !== undefined).sort((a, b) => rateOf(a)! - rateOf(b)!);
    if (rated.length === 0) return first;
    const median = rated[(rated.length - 1) >> 1]!;
    let note = `median of ${rated.length} runs (${fmt(rateOf(rated[0]!))}–${fmt(rateOf(rated[rated.length - 1]!))}/s)`;
    let row: Row = median;
    const queries = same.map((r) => r.queriesPerSecond).filter((q): q is number => q !== undefined);
    if (median.eventsPerSecond !== undefined && queries.length > 1) {
      queries.sort((a, b) => a - b);
      row = { ...median, queriesPerSecond: queries[(queries.length - 1) >> 1]! };
      note += `; queries/s median of ${queries.length} runs (${fmt(queries[0])}–${fmt(queries[queries.length - 1])}/s)`;
    }
    return { ...row, note: row.note === undefined || row.note === '' ? note : `${row.note}; ${note}` };
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
/** The workloads' own options (`--name=value`), passed on to the parts. */
const extra = args.filter(
  (a) => a.startsWith('--') && a !== '--quick' && a !== '--help' && !a.startsWith('--child=') && !a.startsWith('--repeat='),
);
const repeatText = args.find((a) => a.startsWith('--repeat='))?.slice('--repeat='.length);
const repeat = repeatText === undefined ? 1 : Number(repeatText);
if (childSpec !== undefined) {
  await runChild(childSpec, { quick, args: extra });
} else if (args.includes('--help')) {
  printHelp();
} else {
  if (!(Number.isSafeInteger(repeat) && repeat >= 1)) {
    console.error(`--repeat takes a whole number of runs, at least 1 (got "${repeatText}")`);
    process.exit(2);
  }
  const names = args.filter((a) => !a.startsWith('--'));
  for (const name of names) {
    if (!(name in registry)) {
      console.error(`unknown benchmark "${name}"; known: ${Object.keys(registry).join(', ')}`);
      process.exit(2);
    }
  }
  const chosen = names.length === 0 ? Object.keys(registry).filter((name) => registry[name]!.optIn !== true) : names;
  for (const option of extra) {
    const key = option.slice(2).split('=')[0]!;
    if (!chosen.some((name) => registry[name]!.options?.includes(key))) {
      console.error(`unknown option "${option}" for ${chosen.join(', ')}; see --help`);
      process.exit(2);
    }
  }
  const rows: Row[] = [];
  for (const name of chosen) {
    const runs: Row[][] = [];
    for (let run = 0; run < repeat; run++) {
      const parts = registry[name]!.parts;
      const rowsByPart = new Map<string, Row[]>();
      for (let k = 0; k < parts.length; k++) {
        const part = parts[(k + run) % parts.length]!;
        rowsByPart.set(part, await spawnPart(`${name}:${part}`, { quick, args: extra }));
      }
      // In the workload's order again, so that the runs' rows line up.
      const rowsOfRun = parts.flatMap((part) => rowsByPart.get(part)!);
      // Every run's answers must agree, not only the ones reported.
      verifyChecks(rowsOfRun);
      runs.push(rowsOfRun);
    }
    rows.push(...medianRows(runs));
  }
  verifyChecks(rows);
  console.log(
    `\nNode ${process.version}, ${quick ? 'quick mode (sizes too small to mean anything)' : 'full sizes'}; every check value agrees`,
  );
  printTable(rows);
}
