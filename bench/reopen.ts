/**
 * Reopening a database of 1M events (DESIGN.md §8: ≤ 100 ms, the view is mapped, never replayed).
 * Each side fills a database (1M upserts of a u32 counter over 100k keys, in commits of 1000),
 * closes it, then opens it 5 times, each in a fresh process (so no module, JIT or heap state of
 * the fill helps), timing open plus a first read of 100 keys; the median is reported. The files
 * are in the page cache (they were just written): this measures the database's own work at open.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import Sqlite from 'better-sqlite3';
import { Database, s } from 'noatun';
import { benchDir, bytesOnDisk, cleanup, type Row, seeded, time } from './harness.js';

const Root = s.object({ counters: s.map(s.u32(), s.u32()) });
type Event = [key: number, value: number];
const KEYS = 100_000;
const OPENS = 5;

function openNoatun(dir: string) {
  return Database.open<Event, typeof Root>({
    path: dir,
    root: Root,
    apply([key, value], root) {
      root.counters.set(key, value);
    },
  });
}

function openSqlite(dir: string) {
  const db = new Sqlite(path.join(dir, 'reopen.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  return db;
}

/** The first read after open, and the check value: the sum of keys 0..99. */
function firstRead(side: string, dir: string): { ms: number; check: number } | Promise<{ ms: number; check: number }> {
  const start = process.hrtime.bigint();
  const done = (check: number) => ({ ms: Number(process.hrtime.bigint() - start) / 1e6, check });
  if (side === 'sqlite') {
    const db = openSqlite(dir);
    const select = db.prepare<[number], { value: number }>('SELECT value FROM counters WHERE key = ?');
    let check = 0;
    for (let k = 0; k < 100; k++) check += select.get(k)?.value ?? 0;
    const result = done(check);
    db.close();
    return result;
  }
  return openNoatun(dir).then(async (db) => {
    const check = db.read((root) => {
      let sum = 0;
      for (let k = 0; k < 100; k++) sum += root.counters.get(k) ?? 0;
      return sum;
    });
    const result = done(check);
    await db.close();
    return result;
  });
}

async function fill(side: string, dir: string, count: number): Promise<number> {
  const random = seeded(3);
  const batches: Event[][] = [];
  for (let done = 0; done < count; done += 1000) {
    const batch: Event[] = [];
    for (let i = 0; i < 1000; i++) batch.push([Math.floor(random() * KEYS), done + i]);
    batches.push(batch);
  }
  if (side === 'sqlite') {
    const db = openSqlite(dir);
    db.exec('CREATE TABLE counters (key INTEGER PRIMARY KEY, value INTEGER)');
    const upsert = db.prepare('INSERT INTO counters VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = ?');
    const write = db.transaction((batch: Event[]) => {
      for (const [key, value] of batch) upsert.run(key, value, value);
    });
    const { seconds } = await time(() => {
      for (const batch of batches) write(batch);
    });
    db.close();
    return count / seconds;
  }
  const db = await openNoatun(dir);
  const { seconds } = await time(async () => {
    for (const batch of batches) {
      await db.transaction((tx) => {
        for (const event of batch) tx.append(event);
      });
    }
  });
  await db.close();
  return count / seconds;
}

/** One side of the `reopen` benchmark (`sqlite`, `noatun`). */
export async function runReopenPart(side: string, options: { quick: boolean }): Promise<Row[]> {
  const count = options.quick ? 20_000 : 1_000_000;
  const dir = benchDir(`reopen-${side}`);
  const writeRate = await fill(side, dir, count);
  const script = fileURLToPath(import.meta.url);
  const opens: number[] = [];
  let check: number | undefined;
  for (let i = 0; i < OPENS; i++) {
    const probe = spawnSync(process.execPath, [...process.execArgv, script, `--probe=${side}`, dir], { encoding: 'utf8' });
    if (probe.status !== 0) throw new Error(`reopen probe failed: ${probe.stderr}`);
    const result = JSON.parse(probe.stdout.trim().split('\n').at(-1)!) as { ms: number; check: number };
    opens.push(result.ms);
    if (check !== undefined && check !== result.check) throw new Error('reopen: the first read changed between opens');
    check = result.check;
  }
  opens.sort((a, b) => a - b);
  const disk = bytesOnDisk(dir);
  cleanup();
  const median = opens[opens.length >> 1]!;
  console.log(`reopen (${side}): ${count} events; opens ${opens.map((ms) => ms.toFixed(1)).join(', ')} ms`);
  return [
    {
      workload: `reopen a database of ${count} events`,
      implementation: side === 'sqlite' ? 'better-sqlite3 (WAL, synchronous=FULL)' : 'noatun',
      eventsPerSecond: writeRate,
      diskBytes: disk,
      check: String(check),
      note: `open + first read: median ${median.toFixed(1)} ms of ${OPENS} fresh processes (${opens[0]!.toFixed(1)}–${opens.at(-1)!.toFixed(1)}); events/s is the fill`,
    },
  ];
}

const probe = process.argv.find((a) => a.startsWith('--probe='))?.slice('--probe='.length);
if (probe !== undefined) {
  const result = await firstRead(probe, process.argv.at(-1)!);
  console.log(JSON.stringify(result));
}
