/**
 * Checks the log's LMDB file before LMDB opens it, so that a damaged or foreign file is an error
 * and not the end of the process.
 *
 * Why: lmdb-js 3.5.6 frees an environment twice whenever LMDB's `mdb_env_open` fails (src/env.cpp:
 * `openEnv` deletes it, then `closeEnv` reads it), and the process dies of a segmentation fault.
 * Every refusal of LMDB's open does that: a file that is not LMDB's (magic, version), one cut short
 * before its second meta page, one LMDB may not open for writing. And LMDB trusts its meta pages:
 * a file cut short after them (a tree's root or its last page beyond the end) opens, and the first
 * read of a missing page dies of SIGBUS. So what LMDB's open reads — the meta pages — is read here
 * first, and whatever would make LMDB fail or read past the end is refused with an error.
 *
 * The layout is LMDB's (liblmdb `mdb.c`, as lmdb-js 3.5 builds it on 64-bit Linux): a page header
 * of 24 bytes (page number, txnid, pad, flags, lower/upper), then at byte 24 of a meta page
 * `MDB_meta`: magic u32, version u32, address u64, map size u64, two `MDB_db` of 48 bytes (pad,
 * which in the first is the page size, u32; flags u16; depth u16; branch, leaf and overflow pages,
 * entries and root u64), last page u64, txnid u64, and lmdb-js's boot id i64. LMDB reads a meta
 * at 0 and at the page size; with overlapping sync (lmdb-js opens every environment so on Linux)
 * a third at half the page size, written without magic or version.
 *
 * The check reads the meta pages, picks the one LMDB will open with (see `pickMeta`: after a
 * power loss it may be the one before the newest), and walks the branch and leaf pages of its
 * trees (see `checkTrees`). A sound file passes: every page up to the last one that meta names
 * has been written (LMDB writes a commit's pages before its meta), and its trees are whole.
 */
import * as fs from 'node:fs';
import { ErrorCode, NoatunError, systemErrorFrom } from '../errors.js';

const PAGE_HEADER = 24;
/** Bytes of `MDB_meta` LMDB reads after the page header (its `MDB_metabuf`). */
const META_BYTES = 144;
const MDB_MAGIC = 0xbeefc0de;
const MDB_DATA_VERSION = 2;
const P_META = 0x08;
/** A meta's flag: its commit was not flushed yet (overlapping sync). */
const MDB_UNFLUSHED = 0x1000;
/** Offsets inside a meta page. */
const FLAGS_AT = 18;
const MAGIC_AT = PAGE_HEADER;
const VERSION_AT = PAGE_HEADER + 4;
const PAGE_SIZE_AT = PAGE_HEADER + 24;
/** The meta's flags (those of its free tree's record). */
const META_FLAGS_AT = PAGE_HEADER + 28;
const FREE_ROOT_AT = PAGE_HEADER + 24 + 40;
const MAIN_ROOT_AT = PAGE_HEADER + 24 + 48 + 40;
const LAST_PAGE_AT = PAGE_HEADER + 24 + 96;
const TXNID_AT = LAST_PAGE_AT + 8;
/** lmdb-js's `boot_id` of the meta: the boot it was written in. */
const BOOT_ID_AT = TXNID_AT + 8;
/** Page flags (`mp_flags`) and the words of a page header after them. */
const P_BRANCH = 0x01;
const P_LEAF = 0x02;
const LOWER_AT = 20;
const UPPER_AT = 22;
/**
 * Bytes of a node before its key (`MDB_node`); the flags of a leaf's node whose data is in
 * overflow pages, and of one whose data is a named database's record (`MDB_db`, its root at byte
 * 40 of 48).
 */
const NODE_HEADER = 8;
const F_BIGDATA = 0x01;
const F_SUBDATA = 0x02;
const DB_RECORD_BYTES = 48;
const DB_ROOT_AT = 40;
/** A tree's root when it has none. */
const NO_PAGE = 0xffffffffffffffffn;
/** LMDB's page sizes: a power of two from its minimum to its maximum. */
const MIN_PAGE_SIZE = 512;
const MAX_PAGE_SIZE = 0x10000;

/**
 * Throws `CORRUPT_FILE` when LMDB would refuse the log file `file` or read past its end, and
 * `SYSTEM_CALL_FAILED` when it or its lock file cannot be opened for reading and writing. A
 * missing or empty file passes: LMDB makes a new log of it (and a lock file where there is none).
 */
export function checkLogFile(file: string): void {
  const lockFile = `${file}-lock`;
  try {
    fs.closeSync(fs.openSync(lockFile, fs.constants.O_RDWR));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw systemErrorFrom(error, 'open', lockFile);
  }
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDWR);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    if (code === 'EISDIR') throw damaged(file, 'it is a directory', error);
    throw systemErrorFrom(error, 'open', file);
  }
  try {
    const size = fs.fstatSync(fd).size;
    if (size === 0) return;
    const first = read(fd, 0, PAGE_HEADER + META_BYTES, size, file);
    const view = new DataView(first.buffer, first.byteOffset, first.byteLength);
    if ((view.getUint16(FLAGS_AT, true) & P_META) === 0 || view.getUint32(MAGIC_AT, true) !== MDB_MAGIC) {
      throw damaged(file, 'its first page is not an LMDB meta page (the file is damaged, or not a log)');
    }
    const version = view.getUint32(VERSION_AT, true) & 0xffff;
    if (version !== MDB_DATA_VERSION) throw damaged(file, `its LMDB data version is ${version}, not ${MDB_DATA_VERSION}`);
    const pageSize = view.getUint32(PAGE_SIZE_AT, true);
    if (pageSize < MIN_PAGE_SIZE || pageSize > MAX_PAGE_SIZE || (pageSize & (pageSize - 1)) !== 0) {
      throw damaged(file, `its meta page gives a page size of ${pageSize}`);
    }
    // The metas LMDB reads: at 0, at the page size, and (lmdb-js opens every environment with
    // overlapping sync where it has it) at half the page size. One without a transaction is never
    // picked. What is checked is the one LMDB will open with (see pickMeta).
    const metas: { at: number; meta: DataView }[] = [{ at: 0, meta: view }];
    for (const at of process.platform === 'win32' ? [pageSize] : [pageSize / 2, pageSize]) {
      const bytes = read(fd, at, PAGE_HEADER + META_BYTES, size, file);
      const meta = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      if (meta.getBigUint64(TXNID_AT, true) !== 0n) metas.push({ at, meta });
    }
    const { at, meta } = pickMeta(metas);
    checkMeta(meta, at, pageSize, size, file);
    checkTrees(fd, meta, pageSize, size, file);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The meta LMDB opens with, as lmdb-js's LMDB picks it (`mdb_pick_meta`, with the previous
 * snapshot and overlapping sync lmdb-js asks for): the one of the newest transaction, unless that
 * commit was not flushed yet (its flag 0x1000) and was made in another boot of the machine (its
 * `boot_id`, the first hex digits of Linux's boot id), or `LMDB_RESTORE=safe` is set: then LMDB
 * rolls back to the one before. So after a power loss that left the newest commit's pages half
 * written, the check looks at the snapshot LMDB will use, not at the one it will drop.
 */
function pickMeta(metas: readonly { at: number; meta: DataView }[]): { at: number; meta: DataView } {
  const byTxn = [...metas].sort((a, b) => {
    const x = a.meta.getBigUint64(TXNID_AT, true);
    const y = b.meta.getBigUint64(TXNID_AT, true);
    return x > y ? -1 : x < y ? 1 : 0;
  });
  const newest = byTxn[0]!;
  const previous = byTxn[1];
  if (previous === undefined || (newest.meta.getUint16(META_FLAGS_AT, true) & MDB_UNFLUSHED) === 0) return newest;
  const bootId = newest.meta.getBigInt64(BOOT_ID_AT, true);
  if (bootId !== 0n && bootId === currentBootId() && process.env.LMDB_RESTORE !== 'safe') return newest;
  return previous;
}

/** This boot's id as LMDB reads it (`strtoll` of `/proc/sys/kernel/random/boot_id` in base 16), or 0. */
function currentBootId(): bigint {
  try {
    const digits = /^[0-9a-fA-F]+/.exec(fs.readFileSync('/proc/sys/kernel/random/boot_id', 'latin1'))?.[0];
    if (digits === undefined) return 0n;
    const value = BigInt(`0x${digits}`);
    return value > 0x7fffffffffffffffn ? 0x7fffffffffffffffn : value;
  } catch {
    return 0n;
  }
}

/** Checks the meta at byte `at` (read into `meta`), the one LMDB opens with: it must name pages the file holds. */
function checkMeta(meta: DataView, at: number, pageSize: number, size: number, file: string): void {
  const lastPage = meta.getBigUint64(LAST_PAGE_AT, true);
  const pages = BigInt(Math.floor(size / pageSize));
  if (lastPage >= pages) {
    throw damaged(file, `it is ${size} bytes long, and its meta page at byte ${at} names page ${lastPage} of ${pageSize} bytes (cut short?)`);
  }
  for (const rootAt of [FREE_ROOT_AT, MAIN_ROOT_AT]) {
    const root = meta.getBigUint64(rootAt, true);
    if (root !== 0xffffffffffffffffn && (root < 2n || root > lastPage)) {
      throw damaged(file, `its meta page at byte ${at} names page ${root} as a tree's root, outside pages 2 to ${lastPage}`);
    }
  }
}

/**
 * Walks the trees the newest meta names: the free-page list (the pages earlier transactions let
 * go, which only a write reads, to reuse them), the main tree, and the named databases the main
 * tree lists (the runs, the metadata). Each page must say it is that page and a branch or a leaf,
 * with a header and node offsets that fit it; each branch's children and each leaf's overflow
 * pages must lie in the file and say so too.
 *
 * Why: LMDB keeps no checksums and follows the page numbers it reads. A garbage page in a tree let
 * a rebuild end the process (LMDB followed a garbage page number: one page in fifteen in some
 * runs), and one in the free-page list let an open rebuild the view from every event and then fail
 * its first write with `MDB_BAD_TXN` (`SYSTEM_CALL_FAILED`), or let a database open and fail a
 * later write. The walk reads the trees' branch and leaf pages (about 50 for the warehouse
 * benchmark's log of 236,546 events: under a millisecond) and checks that each overflow value
 * lies in the file.
 */
function checkTrees(fd: number, meta: DataView, pageSize: number, size: number, file: string): void {
  const lastPage = Number(meta.getBigUint64(LAST_PAGE_AT, true));
  const seen = new Set<number>();
  const trees: { root: bigint; name: string; main: boolean }[] = [
    { root: meta.getBigUint64(FREE_ROOT_AT, true), name: 'its free-page list', main: false },
    { root: meta.getBigUint64(MAIN_ROOT_AT, true), name: 'its main tree', main: true },
  ];
  // One page at a time, into one buffer read through 16-bit words (node offsets and a node's
  // fields are even): an open reads hundreds of pages, most of them before V8 has compiled this.
  const page = Buffer.alloc(pageSize);
  const u16 = new Uint16Array(page.buffer, page.byteOffset, pageSize / 2);
  const load = (at: number, name: string): void => {
    if (at < 2 || at > lastPage) throw damaged(file, `${name} names page ${at}, outside pages 2 to ${lastPage}`);
    readInto(fd, page, at * pageSize, size, file, 'the pages its meta names');
    if (page.readBigUInt64LE(0) !== BigInt(at)) throw damaged(file, `page ${at} of ${name} holds another page`);
    if ((u16[FLAGS_AT >> 1]! & (P_BRANCH | P_LEAF)) === 0) throw damaged(file, `page ${at} of ${name} is not a tree page`);
  };
  while (trees.length !== 0) {
    const { root, name, main } = trees.pop()!;
    if (root === NO_PAGE) continue;
    const pending = [Number(root)];
    while (pending.length !== 0) {
      const at = pending.pop()!;
      const bad = (what: string) => damaged(file, `page ${at} of ${name} ${what}`);
      if (seen.has(at)) throw bad('is reached twice');
      seen.add(at);
      load(at, name);
      const flags = u16[FLAGS_AT >> 1]!;
      const lower = u16[LOWER_AT >> 1]!;
      const upper = u16[UPPER_AT >> 1]!;
      // (This LMDB counts `lower`, `upper` and the nodes' offsets from the end of the header.)
      if ((flags & (P_BRANCH | P_LEAF)) === (P_BRANCH | P_LEAF) || lower > upper || PAGE_HEADER + upper > pageSize || (lower & 1) !== 0) {
        throw bad(`has a header that cannot be (flags ${flags}, lower ${lower}, upper ${upper})`);
      }
      const branch = (flags & P_BRANCH) !== 0;
      for (let i = 0; i < lower; i += 2) {
        const node = PAGE_HEADER + u16[(PAGE_HEADER + i) >> 1]!;
        if (node < PAGE_HEADER + upper || node + NODE_HEADER > pageSize || (node & 1) !== 0) throw bad(`names a node at byte ${node}, outside its nodes`);
        // A node: data size or child page number (low 32 bits), flags or its high 16 bits, key size, key, data.
        const w = node >> 1;
        const low = u16[w]! + u16[w + 1]! * 0x10000;
        const data = node + NODE_HEADER + u16[w + 3]!;
        if (branch) {
          if (data > pageSize) throw bad(`names a node at byte ${node} that runs past its end`);
          pending.push(low + u16[w + 2]! * 2 ** 32);
          continue;
        }
        const nodeFlags = u16[w + 2]!;
        if ((nodeFlags & F_BIGDATA) !== 0) {
          if (data + 8 > pageSize) throw bad(`names a node at byte ${node} that runs past its end`);
          // (Where the value lies is checked, not its pages: reading the first page of each took
          // the warehouse's open 5 ms, a key-value database's 20. A value read from garbage pages
          // fails the run's own checks.)
          const first = page.readUInt32LE(data) + page.readUInt32LE(data + 4) * 2 ** 32;
          const last = first + Math.ceil((PAGE_HEADER + low) / pageSize) - 1;
          if (first < 2 || last > lastPage) throw bad(`names a value of ${low} bytes at pages ${first} to ${last}, outside pages 2 to ${lastPage}`);
        } else if (data + low > pageSize) {
          throw bad(`names a node at byte ${node} that runs past its end`);
        } else if (main && (nodeFlags & F_SUBDATA) !== 0 && low >= DB_RECORD_BYTES) {
          // A named database: its record's root is its tree.
          const key = page.toString('latin1', node + NODE_HEADER, data);
          trees.push({ root: page.readBigUInt64LE(data + DB_ROOT_AT), name: `its tree '${key}'`, main: false });
        }
      }
    }
  }
}

/** Reads `into.byteLength` bytes at `at` into `into`; a file that ends before them is damaged (`what`: what they are, for the error). */
function readInto(fd: number, into: Buffer, at: number, size: number, file: string, what: string): void {
  if (at + into.byteLength > size) throw damaged(file, `it is ${size} bytes long, shorter than ${what}`);
  let got = 0;
  while (got < into.byteLength) {
    const n = fs.readSync(fd, into, got, into.byteLength - got, at + got);
    if (n === 0) throw damaged(file, `it ended at ${at + got} bytes while ${what} were read`);
    got += n;
  }
}

/** Reads `length` bytes at `at`; a file that ends before them is damaged (LMDB reads them whole). */
function read(fd: number, at: number, length: number, size: number, file: string): Buffer {
  const bytes = Buffer.alloc(length);
  readInto(fd, bytes, at, size, file, 'its meta pages');
  return bytes;
}

function damaged(file: string, reason: string, cause?: unknown): NoatunError {
  return new NoatunError(
    ErrorCode.CORRUPT_FILE,
    `cannot open the event log ${file}: ${reason}. The log holds the database's events; restore it from a backup, or move the database directory away and let the peers send the events again`,
    cause === undefined ? undefined : { cause },
  );
}

/**
 * LMDB's codes for pages it found damaged while reading (`MDB_PAGE_NOTFOUND`, `MDB_CORRUPTED`,
 * `MDB_INVALID`, `MDB_INCOMPATIBLE`, `MDB_BAD_VALSIZE`, `MDB_PROBLEM`): lmdb-js throws them as
 * plain errors with the number as their `code`.
 */
const LMDB_DAMAGE_CODES = new Set([-30797, -30796, -30793, -30784, -30781, -30779]);

/**
 * `CORRUPT_FILE` for the log `file` when `error` is LMDB finding its pages damaged (see
 * {@link LMDB_DAMAGE_CODES}), else undefined.
 */
export function logDamageFrom(error: unknown, file: string): NoatunError | undefined {
  if (error instanceof NoatunError || error === null || typeof error !== 'object') return undefined;
  const code = (error as { code?: unknown }).code;
  if (typeof code !== 'number' || !LMDB_DAMAGE_CODES.has(code)) return undefined;
  return damaged(file, `LMDB found its pages damaged (${String((error as Error).message)})`, error);
}
