/**
 * A known open defect (docs/PRUNING.md, "Open: a victim pruned before its tombstone"), kept as a
 * script outside the test suite until it is fixed: it exits 1 while two databases given the same
 * five events, one of them rebuilt between two cutoff steps, end with different stored sets.
 * Once the fix lands, make it a test in test/core/pruning.test.ts.
 *
 * `node --conditions=noatun-source --import=tsx test/known/victim-before-tombstone.ts`
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Database, s } from '../../src/index.js';

const MIN = 60_000;
const T0 = Date.UTC(2020, 0, 1);
const Root = s.object({ items: s.list(s.u32()), note: s.u32(), other: s.u32() });
type Ev = { k: 'pushNote' | 'readNote' | 'set0' | 'clear' };
let time = T0;
const dirs = [fs.mkdtempSync(path.join(os.tmpdir(), 'noatun-known-')), fs.mkdtempSync(path.join(os.tmpdir(), 'noatun-known-'))];
const open = (dir: string) =>
  Database.open<Ev, typeof Root>({
    path: dir,
    root: Root,
    cutoffIntervalMs: 2 * MIN,
    now: () => time,
    apply(e, root) {
      if (e.k === 'pushNote') {
        // The element, and a note a later event reads: push stays for good.
        root.items.push(1);
        root.note = 7;
      } else if (e.k === 'readNote') root.other = root.note + 1;
      else if (e.k === 'set0') {
        if (root.items.length !== 0) root.items.set(0, 2);
      } else root.items.clear();
    },
  });
const a = await open(dirs[0]!);
let b = await open(dirs[1]!);
const write = async (at: number, event: Ev) => {
  time = T0 + at;
  const id = await a.append(event);
  await b.ingest([a.message(id)!.bytes]);
};
await write(0, { k: 'pushNote' });
await write(1000, { k: 'readNote' });
await write(10_000, { k: 'set0' });
await write(20_000, { k: 'clear' });
// The cutoff passes the first clear but not the second: set0 (the clear's victim) is pruned, the
// clear stays (its marker is current).
time = T0 + 4.5 * MIN;
a.advanceCutoff();
b.advanceCutoff();
await write(5 * MIN, { k: 'clear' });
await b.close();
fs.rmSync(path.join(dirs[1]!, 'view'), { recursive: true });
b = await open(dirs[1]!);
time = T0 + 30 * MIN;
a.advanceCutoff();
b.advanceCutoff();
const ids = (db: typeof a) => [...db.messages()].map((m) => m.id.toString());
const same = JSON.stringify(ids(a)) === JSON.stringify(ids(b));
console.log(same ? 'fixed: the same stored sets' : `open defect: ${ids(a).length} events stored without a rebuild, ${ids(b).length} with one`);
await a.close();
await b.close();
for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
process.exitCode = same ? 0 : 1;
