/**
 * A damaged, cut-short or missing log file is refused with `CORRUPT_FILE` and changes nothing;
 * it never takes the process down.
 *
 * lmdb-js 3.5.6 frees an environment twice whenever LMDB's open fails, and LMDB trusts its meta
 * pages, so before `src/core/log-file-check.ts` a log whose first page was damaged died of
 * SIGSEGV, and one cut short of the pages its meta names died of SIGBUS at the first read. A log
 * deleted or emptied beside a view that applied its events opened as a new database and threw that
 * view away. Each case here damages a copy of a real database, opens it in a child process (a
 * crash shows as a signal), checks that every file is as it was, puts the log back and opens it
 * again: every event is there.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { open } from 'lmdb';
import { Database, s } from '../../src/index.js';
import { removeTempDirs, tempDir } from '../helpers/temp.js';

test.after.always(removeTempDirs);

const child = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'open-child.ts');
const Root = s.object({ total: s.u32() });
/** Events of the database each case damages: enough for a log of a few dozen pages. */
const EVENTS = 3000;

/** A database of EVENTS events (1 + 2 + … + EVENTS in total), closed; its directory. */
async function makeDatabase(): Promise<string> {
  const dir = tempDir();
  const db = await Database.open<number, typeof Root>({
    path: dir,
    root: Root,
    apply: (n, root) => {
      root.total += n;
    },
  });
  for (let from = 1; from <= EVENTS; from += 500) {
    await db.transaction((tx) => {
      for (let n = from; n < from + 500 && n <= EVENTS; n++) tx.append(n);
    });
  }
  await db.close();
  return dir;
}

const TOTAL = (EVENTS * (EVENTS + 1)) / 2;

/** Every file under `dir` (but the directory's lock file) with its bytes. */
function snapshot(dir: string): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  for (const entry of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const file = path.join(entry.parentPath, entry.name);
    const name = path.relative(dir, file);
    // (The directory's lock file names the last process that opened it.)
    if (name === 'LOCK') continue;
    files.set(name, fs.readFileSync(file));
  }
  return files;
}

interface Report {
  code?: string;
  message?: string;
  total?: number;
  stored?: number;
  /** The signal the child died of, when `allowDeath` let it. */
  died?: string;
}

function openInChild(dir: string, allowDeath = false): Report {
  const result = spawnSync(process.execPath, ['--conditions=noatun-source', '--import=tsx', child, dir], { encoding: 'utf8', timeout: 120_000 });
  if (allowDeath && result.signal !== null) return { died: result.signal };
  if (result.signal !== null || result.status !== 0) {
    throw new Error(`the open died (signal ${result.signal}, status ${result.status}): ${result.stderr}`);
  }
  return JSON.parse(result.stdout.trim().split('\n').pop()!) as Report;
}

const PAGE = 4096;

/** Ways to damage the log file: each gets the file's path and its sound bytes. */
const damages: Record<string, (file: string, sound: Buffer) => void> = {
  'its first two pages zeroed': (file, sound) => fs.writeFileSync(file, Buffer.concat([Buffer.alloc(2 * PAGE), sound.subarray(2 * PAGE)])),
  'its first two pages overwritten with garbage': (file, sound) =>
    fs.writeFileSync(file, Buffer.concat([Buffer.alloc(2 * PAGE, 0xab), sound.subarray(2 * PAGE)])),
  'a text file in its place': (file) => fs.writeFileSync(file, 'not a database\n'),
  'cut to 100 bytes': (file, sound) => fs.writeFileSync(file, sound.subarray(0, 100)),
  'cut to its first page': (file, sound) => fs.writeFileSync(file, sound.subarray(0, PAGE)),
  'cut to three pages': (file, sound) => fs.writeFileSync(file, sound.subarray(0, 3 * PAGE)),
  'cut to half': (file, sound) => fs.writeFileSync(file, sound.subarray(0, Math.floor(sound.length / 2 / PAGE) * PAGE)),
  'cut by its last page': (file, sound) => fs.writeFileSync(file, sound.subarray(0, sound.length - PAGE)),
  // LMDB checks only the first meta page's magic; it picks between the metas by transaction id.
  "its newest meta's tree root beyond the file": (file, sound) => {
    const bytes = Buffer.from(sound);
    bytes.writeBigUInt64LE(BigInt(sound.length / PAGE + 5), newestMeta(sound) + 24 + 24 + 48 + 40);
    fs.writeFileSync(file, bytes);
  },
  'a directory in its place': (file) => {
    fs.rmSync(file);
    fs.mkdirSync(file);
  },
};

/** The byte where the meta of the newest transaction starts (LMDB's metas: at 0, half a page, a page). */
function newestMeta(sound: Buffer): number {
  const txn = (at: number) => sound.readBigUInt64LE(at + 24 + 24 + 96 + 8);
  return [0, PAGE / 2, PAGE].reduce((best, at) => (txn(at) > txn(best) ? at : best), 0);
}

/**
 * Damage to a meta LMDB does not open with. LMDB takes the newest meta whose commit was flushed,
 * or made in this boot (`pickMeta` in log-file-check.ts): a page of 0xff bytes has the highest
 * transaction id, but says its commit was not flushed, in another boot, so LMDB opens with the
 * one before, and its next commit writes over the damaged one. This was refused until the check
 * picked the meta as LMDB does.
 */
test('the second meta page overwritten with 0xff opens whole: LMDB opens with another meta', async (t) => {
  const dir = await makeDatabase();
  const file = path.join(dir, 'log.mdb');
  let sound = fs.readFileSync(file);
  // Damaging the only copy of the newest meta would lose its transaction, as in LMDB anywhere.
  // A commit made with lmdb-js's overlapping sync writes the half-page meta too, a synchronous
  // one does not (the log makes some of each, depending on when its writer thread is up), and the
  // full page a transaction's meta goes to is its id's parity: when the second full page holds
  // the only newest, one more transaction (a metadata value written again as it is) moves the
  // newest to the first page.
  if (newestMeta(sound) === PAGE) {
    const env = open({ path: file, noSubdir: true });
    const meta = env.openDB({ name: 'meta', encoding: 'msgpack' });
    const format: unknown = meta.get('log.format');
    env.transactionSync(() => void meta.put('log.format', format));
    await env.close();
    sound = fs.readFileSync(file);
  }
  t.not(newestMeta(sound), PAGE, 'the second meta page is not the only newest');
  const bytes = Buffer.from(sound);
  bytes.fill(0xff, PAGE, 2 * PAGE);
  fs.writeFileSync(file, bytes);
  t.deepEqual(openInChild(dir, true), { total: TOTAL, stored: EVENTS });
});

for (const [name, damage] of Object.entries(damages)) {
  test(`the log file damaged (${name}) is refused with CORRUPT_FILE, changes nothing, and opens again once restored`, async (t) => {
    const dir = await makeDatabase();
    const file = path.join(dir, 'log.mdb');
    const sound = fs.readFileSync(file);
    damage(file, sound);
    const before = snapshot(dir);
    const report = openInChild(dir);
    t.is(report.code, 'CORRUPT_FILE', JSON.stringify(report));
    t.true(report.message!.includes(file), report.message);
    t.deepEqual(snapshot(dir), before, 'the refused open changed a file');
    fs.rmSync(file, { recursive: true, force: true });
    fs.writeFileSync(file, sound);
    t.deepEqual(openInChild(dir), { total: TOTAL, stored: EVENTS });
  });
}

for (const [name, remove] of Object.entries({
  deleted: (file: string) => fs.rmSync(file),
  emptied: (file: string) => fs.writeFileSync(file, ''),
})) {
  test(`a log ${name} beside a view of its events is refused with CORRUPT_FILE, and the view is kept`, async (t) => {
    const dir = await makeDatabase();
    const file = path.join(dir, 'log.mdb');
    const sound = fs.readFileSync(file);
    const view = snapshot(path.join(dir, 'view'));
    remove(file);
    const files = () => fs.readdirSync(dir).map((name) => `${name} ${fs.statSync(path.join(dir, name)).isFile() ? fs.statSync(path.join(dir, name)).size : 'dir'}`);
    const before = files();
    const report = openInChild(dir);
    t.is(report.code, 'CORRUPT_FILE', JSON.stringify(report));
    t.regex(report.message!, /holds no event, but the view beside it has applied 3000 events of another log/);
    // The refusal leaves no log behind (it left a new one of 45 KB), and the lock file as it was.
    t.deepEqual(files().filter((line) => !line.startsWith('LOCK ')), before.filter((line) => !line.startsWith('LOCK ')));
    // Refused again while the log is still missing; the view is as it was.
    t.is(openInChild(dir).code, 'CORRUPT_FILE');
    t.deepEqual(snapshot(path.join(dir, 'view')), view);
    fs.writeFileSync(file, sound);
    t.deepEqual(openInChild(dir), { total: TOTAL, stored: EVENTS });
  });
}

test('a log with a damaged tree page is refused with CORRUPT_FILE when its view is rebuilt, never opened with some of its events', async (t) => {
  const dir = await makeDatabase();
  const file = path.join(dir, 'log.mdb');
  const sound = fs.readFileSync(file);
  // LMDB keeps no checksums. A tree page of garbage made a rebuild's cursor end early without an
  // error (the database opened with the events before the page), or made LMDB throw its own
  // MDB_CORRUPTED or MDB_PAGE_NOTFOUND, or (LMDB following a garbage page number inside its tree)
  // now and then killed the process. Every branch and leaf page is damaged in turn (stale ones, no
  // longer in the tree, change nothing): the trees are walked before LMDB opens the file
  // (`checkTrees` in log-file-check.ts), so a damaged page of one is refused, and none kills.
  const pages: number[] = [];
  for (let page = 2; page < sound.length / PAGE; page++) {
    const flags = sound.readUInt16LE(page * PAGE + 18);
    if (sound.readBigUInt64LE(page * PAGE) === BigInt(page) && (flags === 0x01 || flags === 0x02)) pages.push(page);
  }
  t.true(pages.length >= 5, `tree pages: ${pages.join(' ')}`);
  const refused: number[] = [];
  const died: string[] = [];
  for (const page of pages) {
    const damaged = Buffer.from(sound);
    damaged.fill(0xab, page * PAGE, (page + 1) * PAGE);
    fs.writeFileSync(file, damaged);
    fs.rmSync(path.join(dir, 'view'), { recursive: true, force: true });
    const report = openInChild(dir, true);
    if (report.died !== undefined) died.push(`${page} (${report.died})`);
    else if (report.code === undefined) t.deepEqual(report, { total: TOTAL, stored: EVENTS }, `page ${page}`);
    else {
      t.is(report.code, 'CORRUPT_FILE', `page ${page}: ${JSON.stringify(report)}`);
      t.deepEqual(fs.readFileSync(file), damaged, `page ${page}: the refused open changed the log`);
      refused.push(page);
    }
  }
  t.log(`tree pages ${pages.join(' ')}: refused for ${refused.join(' ')}; LMDB killed the process for ${died.join(' ') || 'none'}`);
  t.true(refused.length >= 3, `refused for pages ${refused.join(' ')} of ${pages.join(' ')}`);
  t.deepEqual(died, [], 'no damaged page killed the process');
  // The free-page list's root (of the newest meta): only a write reads it, and an open that
  // rebuilt the view then failed its first write with SYSTEM_CALL_FAILED (MDB_BAD_TXN), now and
  // then. It is checked before the open: refused every time.
  const metas = [0, PAGE / 2, PAGE].map((at) => ({ txn: sound.readBigUInt64LE(at + 24 + 24 + 96 + 8), free: Number(sound.readBigUInt64LE(at + 24 + 24 + 40)) }));
  const freeRoot = metas.sort((a, b) => (a.txn > b.txn ? -1 : a.txn < b.txn ? 1 : 0))[0]!.free;
  t.true(pages.includes(freeRoot), `the free-page list's root ${freeRoot} is a tree page`);
  t.true(refused.includes(freeRoot), `the free-page list's root ${freeRoot} damaged is refused`);
  fs.writeFileSync(file, sound);
  fs.rmSync(path.join(dir, 'view'), { recursive: true, force: true });
  t.deepEqual(openInChild(dir), { total: TOTAL, stored: EVENTS });
});

test('a metadata value of the log damaged into another shape is CORRUPT_FILE naming it, never a raw error', async (t) => {
  // LMDB keeps no checksums: bytes damaged inside the metadata's leaf decode into anything. Before
  // the values were checked, scattered bytes there made an open throw "Cannot read properties of
  // undefined (reading 'map')" (3 trials in 90). Each value in turn becomes an object, then a
  // string; the open (view removed: a rebuild reads the most) is refused naming it, or reaches
  // the whole view when it does not read that value.
  const sound = await makeDatabase();
  const names = await (async () => {
    const env = open({ path: path.join(sound, 'log.mdb'), noSubdir: true, readOnly: true });
    const meta = env.openDB({ name: 'meta', encoding: 'msgpack' });
    const keys = [...meta.getKeys()].map(String);
    await env.close();
    return keys;
  })();
  t.true(names.length >= 8, `metadata: ${names.join(' ')}`);
  const refused: string[] = [];
  for (const name of names) {
    for (const value of [{ damaged: 1 }, 'damaged']) {
      const dir = tempDir();
      fs.cpSync(sound, dir, { recursive: true });
      fs.rmSync(path.join(dir, 'view'), { recursive: true, force: true });
      const env = open({ path: path.join(dir, 'log.mdb'), noSubdir: true });
      await env.openDB({ name: 'meta', encoding: 'msgpack' }).put(name, value);
      await env.close();
      const report = openInChild(dir);
      if (report.code === undefined) {
        t.deepEqual(report, { total: TOTAL, stored: EVENTS }, `${name} = ${JSON.stringify(value)}`);
        continue;
      }
      t.is(report.code, 'CORRUPT_FILE', `${name} = ${JSON.stringify(value)}: ${JSON.stringify(report)}`);
      if (name !== 'log.format') t.regex(report.message!, new RegExp(`metadata '${name.replace('.', '\\.')}'`), JSON.stringify(report));
      refused.push(name);
    }
  }
  t.log(`metadata ${names.join(' ')}: refused for ${[...new Set(refused)].join(' ')}`);
  t.true(new Set(refused).size >= 5, `refused for ${[...new Set(refused)].join(' ')}`);
});

const damagedWriteChild = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'damaged-write-child.ts');

for (const mode of ['async', 'sync'] as const) {
  test(`a write that meets damaged pages of the log under an open database fails and the process lives (${mode} commits)`, (t) => {
    // Before: the failed commit's error was SYSTEM_CALL_FAILED naming LMDB's MDB_PAGE_NOTFOUND,
    // and the close's failing commit rejected a promise of lmdb-js nothing observed, which ended
    // the process. After a failed synchronous commit lmdb-js reports only MDB_BAD_TXN, which says
    // nothing of the cause: that one stays SYSTEM_CALL_FAILED.
    const dir = tempDir();
    const result = spawnSync(process.execPath, ['--conditions=noatun-source', '--import=tsx', damagedWriteChild, dir, mode], { encoding: 'utf8', timeout: 120_000 });
    t.is(result.signal, null, result.stderr);
    t.is(result.status, 0, result.stderr);
    const report = JSON.parse(result.stdout.trim().split('\n').pop()!) as { damaged: number; code?: string; closed: string };
    t.true(report.damaged >= 5, JSON.stringify(report));
    if (mode === 'async') t.is(report.code, 'CORRUPT_FILE', JSON.stringify(report));
    else t.true(report.code === 'CORRUPT_FILE' || report.code === 'SYSTEM_CALL_FAILED', JSON.stringify(report));
    t.is(report.closed, 'ok', JSON.stringify(report));
  });
}

test("a directory in place of the log's lock file is refused with SYSTEM_CALL_FAILED, not a crash", async (t) => {
  const dir = await makeDatabase();
  const lock = path.join(dir, 'log.mdb-lock');
  fs.rmSync(lock);
  fs.mkdirSync(lock);
  const report = openInChild(dir);
  t.is(report.code, 'SYSTEM_CALL_FAILED', JSON.stringify(report));
  t.regex(report.message!, /EISDIR/);
  fs.rmdirSync(lock);
  t.deepEqual(openInChild(dir), { total: TOTAL, stored: EVENTS });
});

test('a database whose view directory was removed opens, rebuilt from its log', async (t) => {
  const dir = await makeDatabase();
  fs.rmSync(path.join(dir, 'view'), { recursive: true });
  t.deepEqual(openInChild(dir), { total: TOTAL, stored: EVENTS });
});
