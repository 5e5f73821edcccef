/**
 * Pruning must not depend on whether a peer rebuilt its view, when the data a tombstone destroyed
 * had been written by more than one event (docs/PRUNING.md, "Destroyed data written by several
 * events"). The shape: `X` writes a datum and stays for other reasons (a later event read
 * something else it wrote), `V` overwrites the datum, `D` destroys it (a list's `clear` or `pop`,
 * an optional set to `null`), and a later event takes what `D` owned so that `D` can go. A peer
 * that rebuilds its view from the stored events between two cutoff steps replays them without
 * whatever was pruned; it must end with the same stored set and cutoff hashes as a peer that
 * never rebuilt, and as a fresh database fed that set.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import test from 'ava';
import { Database, s } from '../../src/index.js';
import { cutoffKey, storedIds } from '../helpers/convergence.js';
import { FakeClock, removeTempDirs, T0, tempDir } from '../helpers/temp.js';

test.after.always(removeTempDirs);

const MIN = 60_000;
const INTERVAL = 2 * MIN;

const Root = s.object({
  items: s.list(s.u32()),
  boxes: s.list(s.object({ n: s.u32() })),
  opt: s.optional(s.u32()),
  nested: s.map(s.u32(), s.object({ tags: s.list(s.u32()), label: s.optional(s.string()) })),
  note: s.u32(),
  other: s.u32(),
});
type Ev =
  | { k: 'pushNote' }
  | { k: 'boxNote' }
  | { k: 'optNote' }
  | { k: 'nestNote' }
  | { k: 'readNote' }
  | { k: 'set0' }
  | { k: 'box0' }
  | { k: 'opt'; v: number | null }
  | { k: 'tag0' }
  | { k: 'label'; v: string | null }
  | { k: 'clear' }
  | { k: 'clearBoxes' }
  | { k: 'pop' }
  | { k: 'push' }
  | { k: 'untag' }
  | { k: 'dropNested' };

function apply(e: Ev, root: s.View<typeof Root>): void {
  switch (e.k) {
    // Each "…Note" event writes a datum and the note, which readNote reads: it stays for good.
    case 'pushNote':
      root.items.push(1);
      root.note = 7;
      break;
    case 'boxNote':
      root.boxes.push({ n: 1 });
      root.note = 8;
      break;
    case 'optNote':
      root.opt = 5;
      root.note = 9;
      break;
    case 'nestNote':
      root.nested.set(1, { tags: [1], label: 'a' });
      root.note = 10;
      break;
    case 'readNote':
      root.other = root.note + 1;
      break;
    case 'set0':
      if (root.items.length !== 0) root.items.set(0, 2);
      break;
    case 'box0': {
      const box = root.boxes.get(0);
      if (box !== undefined) box.n = 2;
      break;
    }
    case 'opt':
      root.opt = e.v;
      break;
    case 'tag0': {
      const tags = root.nested.get(1)?.tags;
      if (tags !== undefined && tags.length !== 0) tags.set(0, 2);
      break;
    }
    case 'label': {
      const entry = root.nested.get(1);
      if (entry !== undefined) entry.label = e.v;
      break;
    }
    case 'clear':
      root.items.clear();
      break;
    case 'clearBoxes':
      root.boxes.clear();
      break;
    case 'pop':
      root.items.pop();
      break;
    case 'push':
      root.items.push(3);
      break;
    case 'untag':
      root.nested.get(1)?.tags.clear();
      break;
    case 'dropNested':
      root.nested.delete(1);
      break;
  }
}

type Db = Database<Ev, typeof Root>;
type Step = readonly [minutes: number, event: Ev] | readonly [minutes: number, 'advance'];

/**
 * Runs `steps` on two databases, the second rebuilding its view from the log (view deleted,
 * reopened) at the step index `rebuildAt`; then moves the clock far past everything and compares
 * their stored ids, cutoff hashes and views, and both against a fresh database given the first's
 * stored events. Returns what differed.
 */
async function run(steps: readonly Step[], rebuildAt: number): Promise<string | undefined> {
  const clock = new FakeClock(T0);
  const dirs = [tempDir(), tempDir()];
  const open = (dir: string) => Database.open<Ev, typeof Root>({ path: dir, root: Root, apply, now: clock.now, cutoffIntervalMs: INTERVAL });
  const a = await open(dirs[0]!);
  let b: Db = await open(dirs[1]!);
  for (const [i, [minutes, what]] of steps.entries()) {
    if (i === rebuildAt) {
      await b.close();
      fs.rmSync(path.join(dirs[1]!, 'view'), { recursive: true });
      b = await open(dirs[1]!);
    }
    clock.time = T0 + minutes * MIN;
    if (what === 'advance') {
      a.advanceCutoff();
      b.advanceCutoff();
    } else {
      const id = await a.append(what);
      await b.ingest([a.message(id)!.bytes]);
    }
  }
  clock.time = T0 + (steps.at(-1)![0] + 60) * MIN;
  a.advanceCutoff();
  b.advanceCutoff();
  const fresh = await open(tempDir());
  await fresh.ingest([...a.messages()].map((m) => m.bytes.slice()));
  fresh.advanceCutoff();
  const view = (db: Db) => JSON.stringify(db.read((root) => root.export()));
  const differences: string[] = [];
  for (const [name, db] of [
    ['the rebuilt peer', b],
    ['a fresh copy', fresh],
  ] as const) {
    if (storedIds(db).join() !== storedIds(a).join()) differences.push(`${name} stores ${storedIds(db).length} events, the peer that never rebuilt ${storedIds(a).length}`);
    else if (cutoffKey(db) !== cutoffKey(a)) differences.push(`${name} has other cutoff hashes`);
    if (view(db) !== view(a)) differences.push(`${name} has another view: ${view(db)} vs ${view(a)}`);
  }
  await Promise.all([a.close(), b.close(), fresh.close()]);
  return differences.length === 0 ? undefined : differences.join('; ');
}

/** Runs `steps` with a rebuild before every step in turn (and none). */
async function everyRebuild(t: { is(actual: unknown, expected: unknown, message?: string): void }, steps: readonly Step[]): Promise<void> {
  for (let at = 0; at <= steps.length; at++) {
    t.is(await run(steps, at), undefined, at === steps.length ? 'without a rebuild' : `rebuilt before step ${at}`);
  }
}

test('a list element set and then cleared: the clear waits for the element pushed by a stored event', async (t) => {
  await everyRebuild(t, [
    [0, { k: 'pushNote' }],
    [0.02, { k: 'readNote' }],
    [0.2, { k: 'set0' }],
    [0.3, { k: 'clear' }],
    [4.5, 'advance'],
    [5, { k: 'clear' }],
    [9, 'advance'],
    [10, { k: 'clear' }],
  ]);
});

test('a list element set and then popped', async (t) => {
  await everyRebuild(t, [
    [0, { k: 'pushNote' }],
    [0.02, { k: 'readNote' }],
    [0.2, { k: 'set0' }],
    [0.3, { k: 'pop' }],
    [4.5, 'advance'],
    [5, { k: 'clear' }],
    [9, 'advance'],
    [10, { k: 'clear' }],
  ]);
});

test('a field of an object in a list set and then cleared', async (t) => {
  await everyRebuild(t, [
    [0, { k: 'boxNote' }],
    [0.02, { k: 'readNote' }],
    [0.2, { k: 'box0' }],
    [0.3, { k: 'clearBoxes' }],
    [4.5, 'advance'],
    [5, { k: 'clearBoxes' }],
    [9, 'advance'],
    [10, { k: 'clearBoxes' }],
  ]);
});

test('an optional set again and then set to null', async (t) => {
  await everyRebuild(t, [
    [0, { k: 'optNote' }],
    [0.02, { k: 'readNote' }],
    [0.2, { k: 'opt', v: 6 }],
    [0.3, { k: 'opt', v: null }],
    [4.5, 'advance'],
    [5, { k: 'opt', v: null }],
    [9, 'advance'],
    [10, { k: 'opt', v: 7 }],
    [10.5, { k: 'opt', v: null }],
  ]);
});

test('a list and an optional inside a map entry, changed and then destroyed with the entry', async (t) => {
  await everyRebuild(t, [
    [0, { k: 'nestNote' }],
    [0.02, { k: 'readNote' }],
    [0.2, { k: 'tag0' }],
    [0.25, { k: 'label', v: 'b' }],
    [0.3, { k: 'untag' }],
    [0.35, { k: 'label', v: null }],
    [4.5, 'advance'],
    [5, { k: 'untag' }],
    [5.1, { k: 'label', v: 'c' }],
    [9, 'advance'],
    [10, { k: 'dropNested' }],
    [10.5, { k: 'nestNote' }],
    [11, { k: 'dropNested' }],
  ]);
});

test('pushes a clear destroyed still go before the clear (scenario 28), also with a rebuild', async (t) => {
  await everyRebuild(t, [
    [0, { k: 'push' }],
    [0.1, { k: 'push' }],
    [0.2, { k: 'clear' }],
    [4.5, 'advance'],
  ]);
  t.pass();
});
