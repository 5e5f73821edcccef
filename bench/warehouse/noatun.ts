/**
 * The warehouse on Noatun: each transaction is one durable commit of its tasks; queries walk the
 * boxes' children breadth-first in the memory-mapped view.
 */
import { Database, s } from 'noatun';
import { benchDir, bytesOnDisk } from '../harness.js';
import type { WarehouseImplementation, WarehouseTask } from './workload.js';

const StorageBox = s.object({
  id: s.u32(),
  articles: s.map(s.u32(), s.u32()),
  parent: s.optional(s.u32()),
  children: s.list(s.u32()),
});
export const Warehouse = s.object({ boxes: s.map(s.u32(), StorageBox) });

export function apply(task: WarehouseTask, root: s.View<typeof Warehouse>): void {
  switch (task.k) {
    case 'create':
      root.boxes.set(task.box, { id: task.box, articles: new Map(), parent: null, children: [] });
      break;
    case 'move': {
      const box = root.boxes.get(task.box)!;
      const old = box.parent;
      if (old !== null) {
        const siblings = root.boxes.get(old)!.children;
        const length = siblings.length;
        for (let i = 0; i < length; i++) {
          if (siblings.get(i) === task.box) {
            siblings.set(i, siblings.get(length - 1)!);
            siblings.pop();
            break;
          }
        }
      }
      box.parent = task.to;
      if (task.to !== null) root.boxes.get(task.to)!.children.push(task.box);
      break;
    }
    case 'add': {
      const articles = root.boxes.get(task.box)!.articles;
      articles.set(task.article, (articles.get(task.article) ?? 0) + task.quantity);
      break;
    }
    case 'remove': {
      const articles = root.boxes.get(task.box)!.articles;
      const current = articles.get(task.article);
      if (current !== undefined) articles.set(task.article, current - task.quantity);
      break;
    }
  }
}

/**
 * Noatun on the warehouse. `inFlight` (default 1: each transaction awaited before the next, as
 * SQLite's run) lets that many commits overlap. With pruning on, a virtual clock moves 10 s per transaction (the
 * workload spans ~80 minutes), so the cutoff advances and pruning really runs during the writes.
 * `commitMode` as `DatabaseOptions` (the engine's default when omitted).
 */
export function noatunWarehouse(options: { autoPrune: boolean; inFlight?: number; commitMode?: 'sync' | 'async' }): WarehouseImplementation {
  const dir = benchDir('noatun');
  let db: Database<WarehouseTask, typeof Warehouse>;
  let now = Date.UTC(2025, 0, 1);
  const inFlight = options.inFlight ?? 1;
  const pending: Promise<unknown>[] = [];
  return {
    name: `noatun (autoPrune ${options.autoPrune ? 'on' : 'off'}${inFlight > 1 ? `, ≤${inFlight} commits in flight` : ''}${options.commitMode === undefined ? '' : `, commitMode '${options.commitMode}'`})`,
    async open() {
      db = await Database.open<WarehouseTask, typeof Warehouse>({
        path: dir,
        root: Warehouse,
        autoPrune: options.autoPrune,
        ...(options.commitMode === undefined ? {} : { commitMode: options.commitMode }),
        now: () => now,
        apply,
      });
    },
    async write(tasks) {
      // With more than one commit in flight, the next transaction is projected while the previous
      // one is being flushed, and the log commits the queued ones together (group commit). Each
      // transaction is still durable when its promise resolves; drain() waits for the last ones.
      pending.push(
        db.transaction((tx) => {
          for (const task of tasks) tx.append(task);
        }),
      );
      now += 10_000;
      if (pending.length >= inFlight) await pending.shift();
    },
    async drain() {
      await Promise.all(pending.splice(0));
    },
    query(start, article) {
      return db.read((root) => {
        const boxes = root.boxes;
        let total = 0;
        const queue = [start];
        for (let i = 0; i < queue.length; i++) {
          const box = boxes.get(queue[i]!)!;
          total += box.articles.get(article) ?? 0;
          const children = box.children;
          const n = children.length;
          for (let c = 0; c < n; c++) queue.push(children.get(c)!);
        }
        return total;
      });
    },
    diskBytes: () => bytesOnDisk(dir),
    describe: () => {
      const stats = db.stats();
      return `stored ${stats.stored}, pruned ${stats.pruned}`;
    },
    async close() {
      await db.close();
    },
  };
}
