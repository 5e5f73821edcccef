/**
 * The key-value workload of the original's db_bench (noatun-spec.md §9, DESIGN.md §8): 200
 * transactions of 1–999 events, 99% upserts of a 256-letter value under a random u32 key written
 * as a decimal string, 1% deletes of a random key; then point lookups, half of them hits. Each
 * implementation runs in its own process (bench/run.ts); they must agree on the check value.
 */
import * as path from 'node:path';
import Sqlite from 'better-sqlite3';
import { Database, s } from 'noatun';
import { benchDir, bytesOnDisk, cleanup, cpuNote, type Row, seeded, time, WARM_SUFFIX, warmUp } from './harness.js';

/** One event: an upsert (`value` set) or a delete (`value` null). */
type KvEvent = [key: string, value: string | null];

interface KvWorkload {
  readonly transactions: KvEvent[][];
  readonly events: number;
  /** Keys to look up: alternately one that was written and a random one (almost surely absent). */
  readonly lookups: string[];
}

function generate(quick: boolean): KvWorkload {
  const random = seeded(1);
  const u32 = () => String(Math.floor(random() * 2 ** 32));
  const transactions: KvEvent[][] = [];
  const written: string[] = [];
  let events = 0;
  const letters = new Array<string>(256);
  for (let t = 0; t < (quick ? 10 : 200); t++) {
    const size = 1 + Math.floor(random() * 999);
    const batch: KvEvent[] = [];
    for (let i = 0; i < size; i++) {
      if (random() < 0.99) {
        const key = u32();
        for (let c = 0; c < 256; c++) letters[c] = String.fromCharCode(65 + Math.floor(random() * 25));
        batch.push([key, letters.join('')]);
        written.push(key);
      } else batch.push([u32(), null]);
    }
    events += size;
    transactions.push(batch);
  }
  const lookups: string[] = [];
  const count = quick ? 10_000 : 200_000;
  for (let i = 0; i < count; i++) lookups.push(i % 2 === 0 ? written[Math.floor(random() * written.length)]! : u32());
  return { transactions, events, lookups };
}

/** What each side provides. */
interface KvImplementation {
  readonly name: string;
  open(): Promise<void>;
  write(batch: readonly KvEvent[]): Promise<void>;
  get(key: string): string | undefined;
  diskBytes(): number;
  describe?(): string;
  close(): Promise<void>;
}

function sqliteKv(): KvImplementation {
  const dir = benchDir('kv-sqlite');
  let db: Sqlite.Database;
  let writeBatch: (batch: readonly KvEvent[]) => void;
  let select: Sqlite.Statement<[string], { val: string }>;
  return {
    name: 'better-sqlite3 (WAL, synchronous=FULL)',
    async open() {
      db = new Sqlite(path.join(dir, 'kv.db'));
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.exec('CREATE TABLE mapping (key VARCHAR(25) PRIMARY KEY, val VARCHAR(256))');
      const upsert = db.prepare('INSERT INTO mapping VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET val = ?');
      const remove = db.prepare('DELETE FROM mapping WHERE key = ?');
      writeBatch = db.transaction((batch: readonly KvEvent[]) => {
        for (const [key, value] of batch) {
          if (value === null) remove.run(key);
          else upsert.run(key, value, value);
        }
      });
      select = db.prepare('SELECT val FROM mapping WHERE key = ?');
    },
    async write(batch) {
      writeBatch(batch);
    },
    get: (key) => select.get(key)?.val,
    diskBytes: () => bytesOnDisk(dir),
    async close() {
      db.close();
    },
  };
}

function mapKv(): KvImplementation {
  const map = new Map<string, string>();
  return {
    name: 'JS Map (in memory)',
    async open() {},
    async write(batch) {
      for (const [key, value] of batch) {
        if (value === null) map.delete(key);
        else map.set(key, value);
      }
    },
    get: (key) => map.get(key),
    diskBytes: () => 0,
    async close() {},
  };
}

const KvRoot = s.object({ mapping: s.map(s.string(), s.string()) });

/** Noatun on the key-value workload; `commitMode` as `DatabaseOptions` (the default when omitted). */
function noatunKv(commitMode?: 'sync' | 'async'): KvImplementation {
  const dir = benchDir('kv-noatun');
  let db: Database<KvEvent, typeof KvRoot>;
  return {
    name: commitMode === undefined ? 'noatun' : `noatun (commitMode '${commitMode}')`,
    async open() {
      db = await Database.open<KvEvent, typeof KvRoot>({
        path: dir,
        root: KvRoot,
        ...(commitMode === undefined ? {} : { commitMode }),
        apply([key, value], root) {
          if (value === null) root.mapping.delete(key);
          else root.mapping.set(key, value);
        },
      });
    },
    async write(batch) {
      await db.transaction((tx) => {
        for (const event of batch) tx.append(event);
      });
    },
    // One read session per lookup, as an application answering single requests would.
    get: (key) => db.read((root) => root.mapping.get(key)),
    diskBytes: () => bytesOnDisk(dir),
    describe: () => `stored ${db.stats().stored}`,
    async close() {
      await db.close();
    },
  };
}

const parts: Record<string, () => KvImplementation> = {
  sqlite: sqliteKv,
  map: mapKv,
  noatun: () => noatunKv(),
  'noatun-sync': () => noatunKv('sync'),
};

async function writeAll(impl: KvImplementation, workload: KvWorkload): Promise<void> {
  for (const batch of workload.transactions) await impl.write(batch);
}

/** Folds lookup results into a check value: hits, and a hash of every value's letters. */
function lookupAll(impl: KvImplementation, keys: readonly string[]): number {
  let check = 0;
  for (let i = 0; i < keys.length; i++) {
    const value = impl.get(keys[i]!);
    if (value !== undefined) check = (Math.imul(check, 31) + value.length + value.charCodeAt(i & 255)) | 0;
  }
  return check;
}

/**
 * One implementation of the `kv` benchmark (`sqlite`, `map`, `noatun`, `noatun-sync`). With
 * `--warm`, the writes run once on a database of their own first, in the same process and not
 * measured, so that the measured writes run with the JavaScript already compiled (see
 * {@link warmUp}).
 */
export async function runKvPart(part: string, options: { quick: boolean; args: readonly string[] }): Promise<Row[]> {
  const workload = generate(options.quick);
  const warm = options.args.includes('--warm');
  if (warm) await warmUp(parts[part]!(), (impl) => writeAll(impl, workload));
  const impl = parts[part]!();
  const name = warm ? `${impl.name}${WARM_SUFFIX}` : impl.name;
  console.log(`kv (${name}): ${workload.transactions.length} transactions, ${workload.events} events, ${workload.lookups.length} lookups`);
  await impl.open();
  let cpu = '';
  const writes = await time(async () => {
    cpu = await cpuNote(() => writeAll(impl, workload));
  });
  // The first pass gives the check value and warms the lookup path up.
  const check = lookupAll(impl, workload.lookups);
  const minSeconds = options.quick ? 0.05 : 1;
  let lookups = 0;
  const reads = await time(() => {
    const start = process.hrtime.bigint();
    while (Number(process.hrtime.bigint() - start) / 1e9 < minSeconds) {
      if (lookupAll(impl, workload.lookups) !== check) throw new Error('kv: lookups changed between passes');
      lookups += workload.lookups.length;
    }
  });
  const disk = impl.diskBytes();
  const description = impl.describe?.();
  await impl.close();
  cleanup();
  return [
    {
      workload: 'key-value (upserts/deletes; point lookups, half hits)',
      implementation: name,
      eventsPerSecond: workload.events / writes.seconds,
      queriesPerSecond: lookups / reads.seconds,
      diskBytes: disk,
      check: String(check),
      note: `check ${check}${description === undefined ? '' : `; ${description}`}${cpu === '' ? '' : `; writes: ${cpu}`}`,
    },
  ];
}
