/**
 * Small helpers shared by the benchmarks: timing, temp directories, sizes on disk, peak RSS and
 * the result table.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** Seconds elapsed while running `fn`. */
export async function time<T>(fn: () => Promise<T> | T): Promise<{ seconds: number; result: T }> {
  const start = process.hrtime.bigint();
  const result = await fn();
  return { seconds: Number(process.hrtime.bigint() - start) / 1e9, result };
}

const made: string[] = [];

/** A fresh temp directory, removed by {@link cleanup}. */
export function benchDir(name: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `noatun-bench-${name}-`));
  made.push(dir);
  return dir;
}

/** Removes the temp directories. */
export function cleanup(): void {
  if (process.env.NOATUN_BENCH_KEEP === '1') {
    // Kept for inspection (where the bytes go): `NOATUN_BENCH_KEEP=1 npm run bench -- …`.
    for (const dir of made.splice(0)) process.stderr.write(`kept ${dir}\n`);
    return;
  }
  for (const dir of made.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
}

/** What `--warm` adds to an implementation's name in the table. */
export const WARM_SUFFIX = ' [warm]';

/**
 * For `--warm`: opens `impl` (a database of its own), runs `write` on it and closes it, unmeasured.
 * Without it a part measures a fresh process, as an application's first writes after a start: V8
 * compiles the JavaScript of the write path while it runs, on the machine's cores. With it the
 * measured writes run with that code already compiled, as in a process that has been writing a
 * while (BENCHMARKS.md, run AC).
 */
export async function warmUp<I extends { open(): Promise<void>; close(): Promise<void> }>(impl: I, write: (impl: I) => Promise<void>): Promise<void> {
  await impl.open();
  await write(impl);
  await impl.close();
}

/** Bytes of all files under `target` (a file or a directory). */
export function bytesOnDisk(target: string): number {
  const stat = fs.statSync(target, { throwIfNoEntry: false });
  if (stat === undefined) return 0;
  if (!stat.isDirectory()) return stat.blocks * 512;
  let total = 0;
  for (const entry of fs.readdirSync(target)) total += bytesOnDisk(path.join(target, entry));
  return total;
}

/**
 * CPU seconds used so far by this process's threads, by kind: `main` (the JavaScript thread:
 * the engine's work, the application's, SQLite's), `v8` (V8's own threads: optimizing compiler
 * and garbage collector), `other` (worker threads such as the log's writer, libuv's pool). From
 * `/proc/self/task` (Linux); undefined elsewhere.
 */
export function threadCpu(): { main: number; v8: number; other: number } | undefined {
  const tasks = '/proc/self/task';
  if (!fs.existsSync(tasks)) return undefined;
  const ticks = 100; // USER_HZ: what Linux counts utime and stime in.
  const cpu = { main: 0, v8: 0, other: 0 };
  for (const task of fs.readdirSync(tasks)) {
    let stat: string;
    try {
      stat = fs.readFileSync(path.join(tasks, task, 'stat'), 'utf8');
    } catch {
      continue; // The thread ended meanwhile.
    }
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const seconds = (Number(fields[11]) + Number(fields[12])) / ticks;
    if (Number(task) === process.pid) cpu.main += seconds;
    else if (name.startsWith('V8 ') || name.startsWith('V8Worker')) cpu.v8 += seconds;
    else cpu.other += seconds;
  }
  return cpu;
}

/**
 * What `fn` cost in CPU by kind of thread (see {@link threadCpu}), as a note: "CPU main 1.83 s,
 * V8 0.77 s, other 0.25 s" (empty where the figures are not available).
 */
export async function cpuNote(fn: () => Promise<void>): Promise<string> {
  const before = threadCpu();
  await fn();
  const after = threadCpu();
  if (before === undefined || after === undefined) return '';
  const d = (k: 'main' | 'v8' | 'other') => (after[k] - before[k]).toFixed(2);
  return `CPU main ${d('main')} s, V8 ${d('v8')} s, other ${d('other')} s`;
}

/** Peak resident set size of this process so far, in bytes. */
export function peakRss(): number {
  return process.resourceUsage().maxRSS * 1024;
}

/** One row of the result table. */
export interface Row {
  readonly workload: string;
  readonly implementation: string;
  readonly eventsPerSecond?: number;
  readonly queriesPerSecond?: number;
  /** Ratio to the better-sqlite3 row of the same workload (filled in by {@link printTable}). */
  readonly note?: string;
  readonly peakRssBytes?: number;
  readonly diskBytes?: number;
  /**
   * The workload's check value (e.g. a fold of every query result): every row of one workload
   * that has one must have the same, or the run fails.
   */
  readonly check?: string;
}

/** A rate as the table prints it: `1.23M`, `45.6k`, or the number itself below a thousand. */
export function fmt(n: number | undefined): string {
  if (n === undefined) return '';
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return n.toFixed(n < 10 ? 2 : 0);
}

function mib(n: number | undefined): string {
  return n === undefined ? '' : `${(n / 2 ** 20).toFixed(1)} MiB`;
}

/** Prints rows as one table, with ratios against the better-sqlite3 row of each workload. */
export function printTable(rows: readonly Row[]): void {
  const header = ['workload', 'implementation', 'events/s', 'vs sqlite', 'queries/s', 'vs sqlite', 'peak RSS', 'disk', 'note'];
  const lines = rows.map((row) => {
    const base = rows.find((r) => r.workload === row.workload && r.implementation.startsWith('better-sqlite3'));
    const ratio = (a: number | undefined, b: number | undefined) =>
      a !== undefined && b !== undefined && b > 0 && row !== base ? `${(a / b).toFixed(2)}×` : '';
    return [
      row.workload,
      row.implementation,
      fmt(row.eventsPerSecond),
      ratio(row.eventsPerSecond, base?.eventsPerSecond),
      fmt(row.queriesPerSecond),
      ratio(row.queriesPerSecond, base?.queriesPerSecond),
      mib(row.peakRssBytes),
      mib(row.diskBytes),
      row.note ?? '',
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const show = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  console.log(show(header));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const line of lines) console.log(show(line));
}

/** A seeded PRNG (mulberry32): the same seed gives the same workload. Shared with the tests. */
export { prng as seeded } from '../test/helpers/temp.js';
