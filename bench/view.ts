/**
 * View micro-benchmarks against plain JS in the same run: map lookups by u32 and by string key,
 * field reads, and map writes. Each side computes a checksum; they must agree.
 */
import { untracked } from '../src/view/tracking.js';
import { MaterializedView } from '../src/view/view.js';
import { s } from '../src/index.js';
import { benchDir, cleanup, type Row, seeded } from './harness.js';

const Root = s.object({
  x: s.u32(),
  nested: s.object({ inner: s.object({ value: s.f64() }) }),
  byNumber: s.map(s.u32(), s.u32()),
  byString: s.map(s.string(), s.object({ a: s.u32(), b: s.f64() })),
});

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** Ops per second of `fn` (which performs `ops` operations and returns a checksum), median of 5. */
function rate(ops: number, fn: () => number): { perSecond: number; check: number } {
  let check = fn(); // warm-up
  const rates: number[] = [];
  for (let i = 0; i < 5; i++) {
    const start = process.hrtime.bigint();
    check = fn();
    rates.push(ops / (Number(process.hrtime.bigint() - start) / 1e9));
  }
  return { perSecond: median(rates), check };
}

export async function runViewBench(options: { quick: boolean }): Promise<Row[]> {
  const n = options.quick ? 20_000 : 1_000_000;
  const lookups = options.quick ? 50_000 : 2_000_000;
  const reads = options.quick ? 100_000 : 10_000_000;
  const random = seeded(7);
  const keys = new Uint32Array(n);
  for (let i = 0; i < n; i++) keys[i] = (random() * 2 ** 32) >>> 0;
  const probes = new Uint32Array(lookups);
  for (let i = 0; i < lookups; i++) probes[i] = i % 2 === 0 ? keys[Math.floor(random() * n)]! : (random() * 2 ** 32) >>> 0;
  const stringKeys = Array.from(keys, String);
  const stringProbes = Array.from(probes, String);

  const view = MaterializedView.open({ directory: benchDir('view'), root: Root });
  const jsNumber = new Map<number, number>();
  const jsString = new Map<string, { a: number; b: number }>();
  const jsObject = { x: 7, nested: { inner: { value: 1.5 } } };
  const rows: Row[] = [];
  const compare = (name: string, ours: { perSecond: number; check: number }, js: { perSecond: number; check: number }) => {
    if (ours.check !== js.check) throw new Error(`view bench ${name}: checksums differ (${ours.check} vs ${js.check})`);
    rows.push({ workload: `view: ${name}`, implementation: 'JS (plain objects/Map)', eventsPerSecond: js.perSecond });
    rows.push({
      workload: `view: ${name}`,
      implementation: 'noatun view',
      eventsPerSecond: ours.perSecond,
      note: `${((100 * ours.perSecond) / js.perSecond).toFixed(0)}% of JS`,
    });
  };

  // Writes (timed once each: the second run would be updates, not inserts).
  const startWrite = process.hrtime.bigint();
  view.write(untracked, (root) => {
    const map = root.byNumber;
    for (let i = 0; i < n; i++) map.set(keys[i]!, i);
    root.x = 7;
    root.nested.inner.value = 1.5;
  });
  const oursWrite = n / (Number(process.hrtime.bigint() - startWrite) / 1e9);
  const startJs = process.hrtime.bigint();
  for (let i = 0; i < n; i++) jsNumber.set(keys[i]!, i);
  const jsWrite = n / (Number(process.hrtime.bigint() - startJs) / 1e9);
  compare('u32 map set', { perSecond: oursWrite, check: 0 }, { perSecond: jsWrite, check: 0 });
  view.write(untracked, (root) => {
    const map = root.byString;
    for (let i = 0; i < n; i++) map.set(stringKeys[i]!, { a: i, b: i / 2 });
  });
  for (let i = 0; i < n; i++) jsString.set(stringKeys[i]!, { a: i, b: i / 2 });

  compare(
    'u32 map get (half hits)',
    rate(lookups, () =>
      view.read((root) => {
        const map = root.byNumber;
        let sum = 0;
        for (let i = 0; i < lookups; i++) sum = (sum + (map.get(probes[i]!) ?? 1)) | 0;
        return sum;
      }),
    ),
    rate(lookups, () => {
      let sum = 0;
      for (let i = 0; i < lookups; i++) sum = (sum + (jsNumber.get(probes[i]!) ?? 1)) | 0;
      return sum;
    }),
  );
  compare(
    'string map get + field (half hits)',
    rate(lookups, () =>
      view.read((root) => {
        const map = root.byString;
        let sum = 0;
        for (let i = 0; i < lookups; i++) sum = (sum + (map.get(stringProbes[i]!)?.a ?? 1)) | 0;
        return sum;
      }),
    ),
    rate(lookups, () => {
      let sum = 0;
      for (let i = 0; i < lookups; i++) sum = (sum + (jsString.get(stringProbes[i]!)?.a ?? 1)) | 0;
      return sum;
    }),
  );
  compare(
    'field read (u32 + nested f64)',
    rate(reads, () =>
      view.read((root) => {
        let sum = 0;
        for (let i = 0; i < reads; i++) sum = (sum + root.x + root.nested.inner.value) | 0;
        return sum;
      }),
    ),
    rate(reads, () => {
      let sum = 0;
      for (let i = 0; i < reads; i++) sum = (sum + jsObject.x + jsObject.nested.inner.value) | 0;
      return sum;
    }),
  );
  view.close();
  cleanup();
  return rows;
}
