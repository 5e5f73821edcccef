/**
 * The warehouse on plain JS Maps, no persistence: the ceiling a query over memory can reach.
 */
import type { WarehouseImplementation } from './workload.js';

interface Box {
  parent: number | null;
  articles: Map<number, number>;
  children: number[];
}

export function mapsWarehouse(): WarehouseImplementation {
  const boxes = new Map<number, Box>();
  return {
    name: 'JS Maps (in memory)',
    async open() {},
    async write(tasks) {
      for (const task of tasks) {
        if (task.k === 'create') boxes.set(task.box, { parent: null, articles: new Map(), children: [] });
        else if (task.k === 'move') {
          const box = boxes.get(task.box)!;
          if (box.parent !== null) {
            const siblings = boxes.get(box.parent)!.children;
            const i = siblings.indexOf(task.box);
            siblings[i] = siblings[siblings.length - 1]!;
            siblings.pop();
          }
          box.parent = task.to;
          if (task.to !== null) boxes.get(task.to)!.children.push(task.box);
        } else if (task.k === 'add') {
          const articles = boxes.get(task.box)!.articles;
          articles.set(task.article, (articles.get(task.article) ?? 0) + task.quantity);
        } else {
          const articles = boxes.get(task.box)!.articles;
          const current = articles.get(task.article);
          if (current !== undefined) articles.set(task.article, current - task.quantity);
        }
      }
    },
    query(root, article) {
      let total = 0;
      const queue = [root];
      for (let i = 0; i < queue.length; i++) {
        const box = boxes.get(queue[i]!)!;
        total += box.articles.get(article) ?? 0;
        for (const child of box.children) queue.push(child);
      }
      return total;
    },
    diskBytes: () => 0,
    async close() {},
  };
}
