/**
 * The warehouse workload of the original's db_bench (noatun-spec.md §9): boxes that nest, and
 * article quantities in them. Transactions of 1–999 tasks; queries ask for the total quantity of
 * an article in a box and every box nested inside it.
 */
import { seeded } from '../harness.js';

/** One task (event) of the workload. */
export type WarehouseTask =
  | { readonly k: 'create'; readonly box: number }
  | { readonly k: 'move'; readonly box: number; readonly to: number | null }
  | { readonly k: 'add'; readonly box: number; readonly article: number; readonly quantity: number }
  | { readonly k: 'remove'; readonly box: number; readonly article: number; readonly quantity: number };

/** The generated workload. */
export interface Workload {
  readonly seed: number;
  readonly transactions: WarehouseTask[][];
  readonly events: number;
  /** (box, article) pairs of the query phase: boxes 0..3 × articles 0..3. */
  readonly queries: readonly (readonly [number, number])[];
}

const MAX_BOXES = 10_000;

/** Generates the workload; `transactions` defaults to the published 500. */
export function generateWorkload(seed = 1, transactions = 500): Workload {
  const random = seeded(seed);
  const parent: (number | null)[] = [];
  // The original tracks quantities only when generating, never updating them after a removal
  // is generated, so removals are of quantity 0 (still a write of each row).
  const out: WarehouseTask[][] = [];
  let events = 0;
  const isInside = (box: number, ancestor: number): boolean => {
    for (let at: number | null = box; at !== null; at = parent[at]!) if (at === ancestor) return true;
    return false;
  };
  for (let t = 0; t < transactions; t++) {
    const size = 1 + Math.floor(random() * 999);
    const tasks: WarehouseTask[] = [];
    for (let i = 0; i < size; i++) {
      const r = random();
      if (parent.length < 4 || (parent.length < MAX_BOXES && r < 0.1)) {
        const box = parent.length;
        parent.push(null);
        tasks.push({ k: 'create', box });
      } else if (r < 0.3) {
        const box = Math.floor(random() * parent.length);
        let to: number | null = random() < 0.1 ? null : Math.floor(random() * parent.length);
        // Never create a cycle: the new parent may not be the box or inside it.
        if (to !== null && isInside(to, box)) to = null;
        parent[box] = to;
        tasks.push({ k: 'move', box, to });
      } else if (r < 0.9) {
        const box = Math.floor(random() * parent.length);
        tasks.push({ k: 'add', box, article: Math.floor(random() * 10), quantity: Math.floor(random() * 10) });
      } else {
        const box = Math.floor(random() * parent.length);
        tasks.push({ k: 'remove', box, article: Math.floor(random() * 10), quantity: 0 });
      }
    }
    events += tasks.length;
    out.push(tasks);
  }
  const queries: [number, number][] = [];
  for (let box = 0; box < 4; box++) for (let article = 0; article < 4; article++) queries.push([box, article]);
  return { seed, transactions: out, events, queries };
}

/** What every implementation of the benchmark provides. */
export interface WarehouseImplementation {
  readonly name: string;
  open(): Promise<void>;
  /** Stores one transaction's tasks durably (resolves when committed). */
  write(tasks: readonly WarehouseTask[]): Promise<void>;
  /** Waits until every write is durable (for implementations that let writes overlap). */
  drain?(): Promise<void>;
  /** Total quantity of `article` in `box` and every box nested inside it. */
  query(box: number, article: number): number;
  /** Bytes on disk (0 for in-memory implementations). */
  diskBytes(): number;
  /** Extra facts for the result table (e.g. events stored and pruned). */
  describe?(): string;
  close(): Promise<void>;
}
