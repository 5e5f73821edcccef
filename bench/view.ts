/**
 * View micro-benchmarks against plain JS in the same process: u32-key map lookups, string-key map
 * lookups with a field read, object field reads, and u32 map inserts. Each case warms both sides
 * up, then times 5 interleaved runs of each and keeps the median; every run returns a checksum and
 * both sides must agree (otherwise this throws, and run directly it exits with status 1).
 *
 * Run directly: `npx node --import=tsx bench/view.ts [--quick] [--case=u32-get,string-get,…]`
 * (`--case` selects cases, e.g. to profile one with `--cpu-prof`). `npm run bench` runs it too.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import * as s from '../src/view/schema.js';
import { untracked } from '../src/view/tracking.js';
import { MaterializedView } from '../src/view/view.js';
import { benchDir, cleanup, type Row, seeded } from './harness.js';

/** The cases, in the order they run and print. */
export const VIEW_CASES = ['u32-get', 'string-get', 'field-read', 'u32-set'] as const;
export type ViewCase = (typeof VIEW_CASES)[number];

export interface ViewBenchOptions {
  /** Small sizes: checks that both sides agree; the speeds mean nothing. */
  readonly quick: boolean;
  /** Only these cases (all by default). */
  readonly cases?: readonly ViewCase[];
}

const LookupRoot = s.object({
  x: s.u32(),
  nested: s.object({ value: s.f64() }),
  byNumber: s.map(s.u32(), s.u32()),
  byString: s.map(s.string(), s.object({ a: s.u32(), b: s.f64() })),
});

const WriteRoot = s.object({ map: s.map(s.u32(), s.u32()) });

/** Timed runs per side (the median is reported), after one warm-up run per side. */
const RUNS = 5;

/** One run of one side: the seconds its hot part took and its checksum. */
interface Trial {
  readonly seconds: number;
  readonly check: number;
}

interface Result {
  readonly name: string;
  readonly key: ViewCase;
  readonly ops: number;
  readonly kind: 'query' | 'write';
  readonly noatun: number;
  readonly js: number;
}

function now(): bigint {
  return process.hrtime.bigint();
}

function since(start: bigint): number {
  return Number(now() - start) / 1e9;
}

/** Times `fn` (which returns a checksum) as one trial. */
function timed(fn: () => number): Trial {
  const start = now();
  const check = fn();
  return { seconds: since(start), check };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[sorted.length >> 1]!;
}

/**
 * Warms both sides up, then runs them alternately {@link RUNS} times each (so drift such as GC of
 * the other side's garbage or CPU frequency hits both alike). Returns the median ops/s of each and
 * throws when any checksum differs from the first one.
 */
function compare(
  name: string,
  key: ViewCase,
  kind: Result['kind'],
  ops: number,
  noatun: () => Trial,
  js: () => Trial,
): Result {
  const expected = noatun().check;
  const checks: { side: string; check: number }[] = [{ side: 'js (warm-up)', check: js().check }];
  const rates = { noatun: [] as number[], js: [] as number[] };
  for (let run = 0; run < RUNS; run++) {
    const ours = noatun();
    const theirs = js();
    checks.push({ side: `noatun (run ${run + 1})`, check: ours.check }, { side: `js (run ${run + 1})`, check: theirs.check });
    rates.noatun.push(ops / ours.seconds);
    rates.js.push(ops / theirs.seconds);
  }
  for (const { side, check } of checks) {
    if (check !== expected) {
      throw new Error(`view bench "${name}": checksum of ${side} is ${check}, noatun's warm-up gave ${expected}`);
    }
  }
  return { name, key, kind, ops, noatun: median(rates.noatun), js: median(rates.js) };
}

function formatRate(n: number): string {
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return n.toFixed(0);
}

function printResults(results: readonly Result[], quick: boolean): void {
  const header = ['case', 'noatun ops/s', 'js ops/s', 'ratio (noatun/js)'];
  const lines = results.map((r) => [r.name, formatRate(r.noatun), formatRate(r.js), (r.noatun / r.js).toFixed(2)]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const show = (cells: readonly string[]) =>
    `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  console.log(`\nView micro-benchmarks, Node ${process.version}, ${quick ? 'quick sizes (speeds mean nothing)' : 'full sizes'}`);
  console.log(show(header));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const line of lines) console.log(show(line));
  const u32 = results.find((r) => r.key === 'u32-get');
  if (u32 !== undefined) {
    const ratio = u32.noatun / u32.js;
    console.log(`DESIGN §8 target, u32-key lookups ≥ 0.60 of a JS Map: ${ratio.toFixed(2)} (${ratio >= 0.6 ? 'met' : 'NOT met'})`);
  }
}

/**
 * Runs the view micro-benchmarks, prints their table and returns rows for `bench/run.ts`'s
 * combined table. Throws when the two sides of a case disagree.
 */
export async function runViewBench(options: ViewBenchOptions): Promise<Row[]> {
  const quick = options.quick;
  const selected = new Set<ViewCase>(options.cases ?? VIEW_CASES);
  const n = quick ? 20_000 : 1_000_000;
  const lookups = quick ? 50_000 : 2_000_000;
  const reads = quick ? 100_000 : 10_000_000;
  const writes = quick ? 20_000 : 1_000_000;

  // Random u32 keys; probes alternate between a stored key and a random one (almost always absent).
  const random = seeded(7);
  const randomU32 = () => Math.floor(random() * 2 ** 32) >>> 0;
  const keys = new Uint32Array(n);
  for (let i = 0; i < n; i++) keys[i] = randomU32();
  const probes = new Uint32Array(lookups);
  for (let i = 0; i < lookups; i++) probes[i] = i % 2 === 0 ? keys[Math.floor(random() * n)]! : randomU32();
  const writeKeys = new Uint32Array(writes);
  for (let i = 0; i < writes; i++) writeKeys[i] = randomU32();

  const results: Result[] = [];
  try {
    const view = MaterializedView.open({ directory: benchDir('view'), root: LookupRoot });
    try {
      // (1) u32 → u32 map lookups, half hits.
      if (selected.has('u32-get')) {
        const jsMap = new Map<number, number>();
        view.write(untracked, (root) => {
          const map = root.byNumber;
          for (let i = 0; i < n; i++) map.set(keys[i]!, i);
        });
        for (let i = 0; i < n; i++) jsMap.set(keys[i]!, i);
        results.push(
          compare(
            'u32 map get (half hits)',
            'u32-get',
            'query',
            lookups,
            () =>
              timed(() =>
                view.read((root) => {
                  const map = root.byNumber;
                  let sum = 0;
                  for (let i = 0; i < lookups; i++) sum = (sum + (map.get(probes[i]!) ?? 1)) | 0;
                  return sum;
                }),
              ),
            () =>
              timed(() => {
                let sum = 0;
                for (let i = 0; i < lookups; i++) sum = (sum + (jsMap.get(probes[i]!) ?? 1)) | 0;
                return sum;
              }),
          ),
        );
      }

      // (2) decimal-string → {a: u32, b: f64} map lookups reading `.a`, half hits.
      if (selected.has('string-get')) {
        const stringKeys = Array.from(keys, String);
        const stringProbes = Array.from(probes, String);
        const jsMap = new Map<string, { a: number; b: number }>();
        view.write(untracked, (root) => {
          const map = root.byString;
          for (let i = 0; i < n; i++) map.set(stringKeys[i]!, { a: i, b: i / 2 });
        });
        for (let i = 0; i < n; i++) jsMap.set(stringKeys[i]!, { a: i, b: i / 2 });
        results.push(
          compare(
            'string map get + .a (half hits)',
            'string-get',
            'query',
            lookups,
            () =>
              timed(() =>
                view.read((root) => {
                  const map = root.byString;
                  let sum = 0;
                  for (let i = 0; i < lookups; i++) sum = (sum + (map.get(stringProbes[i]!)?.a ?? 1)) | 0;
                  return sum;
                }),
              ),
            () =>
              timed(() => {
                let sum = 0;
                for (let i = 0; i < lookups; i++) sum = (sum + (jsMap.get(stringProbes[i]!)?.a ?? 1)) | 0;
                return sum;
              }),
          ),
        );
      }

      // (3) field reads: a u32 on the root and an f64 in a nested object.
      if (selected.has('field-read')) {
        const jsObject = { x: 7, nested: { value: 1.25 } };
        view.write(untracked, (root) => {
          root.x = 7;
          root.nested.value = 1.25;
        });
        results.push(
          compare(
            'field read (u32 + nested f64)',
            'field-read',
            'query',
            reads,
            () =>
              timed(() =>
                view.read((root) => {
                  let sum = 0;
                  for (let i = 0; i < reads; i++) sum = (sum + root.x + root.nested.value) | 0;
                  return sum;
                }),
              ),
            () =>
              timed(() => {
                let sum = 0;
                for (let i = 0; i < reads; i++) sum = (sum + jsObject.x + jsObject.nested.value) | 0;
                return sum;
              }),
          ),
        );
      }
    } finally {
      view.close();
    }

    // (4) u32 → u32 inserts into an empty map. Every run gets a fresh view (opened and checked
    // outside the timing), so each run inserts rather than overwrites.
    if (selected.has('u32-set')) {
      /** size + the sum of the values read back for every written key. */
      const checkOf = (size: number, get: (k: number) => number | undefined): number => {
        let sum = size;
        for (let i = 0; i < writes; i++) sum = (sum + (get(writeKeys[i]!) ?? 1)) | 0;
        return sum;
      };
      results.push(
        compare(
          'u32 map set (insert)',
          'u32-set',
          'write',
          writes,
          () => {
            const directory = benchDir('view-write');
            const writeView = MaterializedView.open({ directory, root: WriteRoot });
            try {
              const start = now();
              writeView.write(untracked, (root) => {
                const map = root.map;
                for (let i = 0; i < writes; i++) map.set(writeKeys[i]!, i);
              });
              const seconds = since(start);
              const check = writeView.read((root) => {
                const map = root.map;
                return checkOf(map.size, (k) => map.get(k));
              });
              return { seconds, check };
            } finally {
              writeView.close();
              fs.rmSync(path.resolve(directory), { recursive: true, force: true });
            }
          },
          () => {
            const start = now();
            const map = new Map<number, number>();
            for (let i = 0; i < writes; i++) map.set(writeKeys[i]!, i);
            const seconds = since(start);
            return { seconds, check: checkOf(map.size, (k) => map.get(k)) };
          },
        ),
      );
    }
  } finally {
    cleanup();
  }

  const order = (r: Result) => VIEW_CASES.indexOf(r.key);
  results.sort((a, b) => order(a) - order(b));
  printResults(results, quick);

  const rows: Row[] = [];
  for (const r of results) {
    const rate = (value: number) => (r.kind === 'write' ? { eventsPerSecond: value } : { queriesPerSecond: value });
    rows.push({ workload: `view: ${r.name}`, implementation: 'JS (Map / plain object)', ...rate(r.js) });
    rows.push({
      workload: `view: ${r.name}`,
      implementation: 'noatun view',
      ...rate(r.noatun),
      note: `${((100 * r.noatun) / r.js).toFixed(0)}% of JS`,
    });
  }
  return rows;
}

function parseCases(args: readonly string[]): ViewCase[] | undefined {
  const arg = args.find((a) => a.startsWith('--case='));
  if (arg === undefined) return undefined;
  const names = arg.slice('--case='.length).split(',').filter((c) => c !== '');
  for (const name of names) {
    if (!(VIEW_CASES as readonly string[]).includes(name)) {
      throw new Error(`unknown case "${name}"; known: ${VIEW_CASES.join(', ')}`);
    }
  }
  return names as ViewCase[];
}

const invokedDirectly = process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href;
if (invokedDirectly) {
  const args = process.argv.slice(2);
  try {
    const cases = parseCases(args);
    await runViewBench({ quick: args.includes('--quick'), ...(cases === undefined ? {} : { cases }) });
  } catch (error) {
    console.error(error instanceof Error ? error.message : error);
    process.exitCode = 1;
  }
}
