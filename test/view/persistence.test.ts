/**
 * The view file persists: another process reads what this one wrote, the file grows past its
 * first capacity, and damaged, foreign or other-schema files are refused.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import type { NoatunError } from '../../src/errors.js';
import * as s from '../../src/view/schema.js';
import { untracked } from '../../src/view/tracking.js';
import { removeTempDirs, tempDir } from '../helpers/temp.js';
import { PersistRoot } from './fixtures/persist-schema.js';
import { openView } from './view-helpers.js';

test.after.always(removeTempDirs);

const reader = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'read-view.ts');

function fill(dir: string, n: number) {
  const view = openView(PersistRoot, dir);
  view.write(untracked, (root) => {
    root.count = n;
    root.name = 'Ålesund ✓';
    root.big = 2n ** 60n + 1n;
    for (let i = 0; i < n; i++) {
      root.items.set(i, { label: `item ${i} ${'x'.repeat(i % 40)}`, weight: i / 4 });
      root.order.push(`o${i}`);
    }
  });
  return view;
}

test('a view written here is read back by a new process, after growing past its first capacity several times', (t) => {
  const dir = tempDir();
  const view = fill(dir, 50_000);
  const stats = view.stats();
  t.true(stats.viewFileBytes >= 8 * 64 * 1024, `file grew to ${stats.viewFileBytes} bytes`);
  view.close();
  const out = execFileSync(process.execPath, ['--import=tsx', reader, dir], { encoding: 'utf8' });
  t.deepEqual(JSON.parse(out), {
    count: 50_000,
    name: 'Ålesund ✓',
    big: (2n ** 60n + 1n).toString(),
    items: 50_000,
    item77: { label: `item 77 ${'x'.repeat(37)}`, weight: 77 / 4 },
    order: 50_000,
    last: 'o49999',
  });
});

function damage(dir: string, at: number, bytes: number[]): void {
  const file = path.join(dir, 'view.bin');
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, Buffer.from(bytes), 0, bytes.length, at);
  fs.closeSync(fd);
}

test('a damaged magic, an unknown version or an impossible allocation top is refused with CORRUPT_FILE', (t) => {
  for (const [at, bytes] of [
    [0, [0x42]],
    [8, [99, 0, 0, 0]],
    [40, [0xff, 0xff, 0xff, 0x7f]],
    [36, [5, 0, 0, 0]],
  ] as [number, number[]][]) {
    const dir = tempDir();
    fill(dir, 10).close();
    damage(dir, at, bytes);
    const error = t.throws(() => openView(PersistRoot, dir));
    t.is((error as NoatunError).code, 'CORRUPT_FILE', `damage at ${at}`);
  }
});

test('a foreign file is refused with CORRUPT_FILE', (t) => {
  const dir = tempDir();
  fs.writeFileSync(path.join(dir, 'view.bin'), Buffer.alloc(8192, 7));
  const error = t.throws(() => openView(PersistRoot, dir));
  t.is((error as NoatunError).code, 'CORRUPT_FILE');
});

test('a damaged journal is refused with CORRUPT_FILE', (t) => {
  const dir = tempDir();
  fill(dir, 10).close();
  const fd = fs.openSync(path.join(dir, 'journal.bin'), 'r+');
  fs.writeSync(fd, Buffer.from([0, 0, 0, 0]), 0, 4, 0);
  fs.closeSync(fd);
  const error = t.throws(() => openView(PersistRoot, dir));
  t.is((error as NoatunError).code, 'CORRUPT_FILE');
});

test('reopening with another schema is refused with SCHEMA_MISMATCH', (t) => {
  const dir = tempDir();
  fill(dir, 10).close();
  const Other = s.object({ count: s.u64() });
  const error = t.throws(() => openView(Other, dir));
  t.is((error as NoatunError).code, 'SCHEMA_MISMATCH');
});

test('after close, reads throw CLOSED and kept accessors throw', (t) => {
  const view = fill(tempDir(), 10);
  const kept = view.read((root) => root.items);
  view.close();
  view.close();
  t.is((t.throws(() => view.read((root) => root.count)) as NoatunError).code, 'CLOSED');
  t.is((t.throws(() => kept.size) as NoatunError).code, 'VIEW_ACCESS_OUTSIDE_SESSION');
});

test('growing past maxViewBytes throws VIEW_FULL and leaves the view usable', (t) => {
  const Root = s.object({ texts: s.list(s.string()) });
  const view = openView(Root, tempDir(), 256 * 1024);
  const error = t.throws(() =>
    view.write(untracked, (root) => {
      for (let i = 0; i < 100_000; i++) root.texts.push('y'.repeat(100));
    }),
  );
  t.is((error as NoatunError).code, 'VIEW_FULL');
  t.true(view.read((root) => root.texts.length) > 0);
  view.close();
});
