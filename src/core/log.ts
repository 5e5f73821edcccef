/**
 * The durable event log, in LMDB (lmdb-js): every stored envelope with the event's ordinal, in id
 * order (which is apply order), plus the engine's metadata.
 *
 * Events are stored in runs (see `log-run.ts`): each LMDB value holds the events of a stretch of
 * ids, keyed by the first, and runs never overlap, so the run holding an id is the one with the
 * greatest key at or before it. A transaction's events become a few runs (one put each) instead of
 * one entry per event; an event that lands inside a run, or leaves one, rewrites that run. Runs
 * behind the cutoff are packed (merged and compressed) in the background (see
 * {@link EventLog.packBefore} and `run-pack.ts`); reads unpack them.
 *
 * Writes queued in one event-loop turn (events, removals, metadata) are committed together as one
 * LMDB transaction; {@link EventLog.written} resolves once it is committed and flushed to disk. Until then the entries are kept in an
 * in-memory overlay that every read consults, so the engine can re-apply events it has just
 * queued (a late event's rewind) before they are committed.
 *
 * Format 1 (until 5 Dec 2026) stored one LMDB entry per event in the database `events`; opening
 * such a log converts it (see {@link EventLog.open}).
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Database as LmdbDatabase, open, type RootDatabase } from 'lmdb';
import { makeDirectories } from '../directories.js';
import { DiskFullError, ErrorCode, isNoSpaceErrno, NoatunError, SystemCallError } from '../errors.js';
import { type Envelope, ownCopy } from './envelope.js';
import { checkLogFile, logDamageFrom } from './log-file-check.js';
import { concatRuns, RUN_BYTES, type RunEntry, RunReader, writeRuns } from './log-run.js';
import { LogWriter, META, RUNS, WriteOps } from './log-writer.js';
import { LogOverlay } from './log-overlay.js';
import { MetaShape } from './meta-shape.js';
import { compareIdBytes, idFloor, idKey, idTimestamp } from './message-id.js';
import { type RecentRun, RecentRuns } from './recent-runs.js';
import { isPacked, pack, unpack } from './run-pack.js';

/** Format 1: bytes before the envelope in a stored value (the ordinal, little-endian). */
const ORDINAL_BYTES = 4;

/** One stored event as the log holds it. */
export interface StoredEvent {
  /** The id's 16 bytes. */
  readonly key: Uint8Array;
  /** The event's ordinal: its stable identity in view trackers. */
  readonly ordinal: number;
  /** The envelope in its canonical binary form. */
  readonly envelope: Uint8Array;
  /**
   * The decoded envelope, when the writer already has it (saves a parse on apply). The database
   * drops it once the batch is applied: a queued event stays in the log's overlay until its commit
   * is durable, and the parsed envelope (its id, parents, payload view) need not stay with it.
   */
  decoded?: Envelope | undefined;
  /**
   * A local event's value as the codec copied it ({@link Codec.copy}): its first apply takes it
   * (and clears it) instead of decoding the payload. Dropped with {@link decoded}.
   */
  copy?: { readonly value: unknown } | undefined;
}

/** A queued write: an event to store, or (`event` null) the removal of one. */
interface OverlayEntry {
  readonly key: Uint8Array;
  /** The stored event, or null for a queued removal. */
  readonly event: StoredEvent | null;
  /** The number of the commit that writes it (see {@link LogOverlay.release}). */
  readonly commit: number;
}

/** Progress of converting a log of format 1 at open: `done` of `total` events moved. */
export type LogConversionProgress = (progress: { readonly done: number; readonly total: number }) => void;

/**
 * The log format this code writes: 3, runs of which those behind the cutoff may be packed (see
 * `run-pack.ts`). Format 2 (runs, none packed) is read as it is and becomes 3 when opened.
 */
export const LOG_FORMAT = 3;
const META_FORMAT = 'log.format';
const META_COUNT = 'log.count';
const META_STRIDES = 'log.strides';
/** The last id of the packed frontier (see {@link EventLog.packBefore}). */
const META_PACKED_THROUGH = 'log.packedThrough';
/**
 * 16 random bytes, new with the first commit of every session that stores or removes events (see
 * {@link EventLog.writeToken}).
 */
const META_WRITE_TOKEN = 'log.writeToken';
/**
 * Set once the runs were found in order, each starting after the last id of the one before (see
 * {@link EventLog.open}): a log packed before 6 Dec 2026 could hold a pack laid over a run.
 */
const META_RUNS_IN_ORDER = 'log.runsInOrder';
/**
 * Plain bytes of runs packed into one, at most. Larger packs compress better (zstd at level 1 over
 * the warehouse benchmark's runs: 2.38× in packs of 4 KiB, 2.62× of 16 KiB, 2.66× of 32 KiB,
 * 2.68× of 64 KiB) and waste less of their last overflow page, but reading one event unpacks the
 * whole pack (37 µs for 32 KiB).
 */
const PACK_BYTES = 32 * 1024;
/** Format 1's database of one entry per event. */
const FORMAT_1_EVENTS = 'events';
/**
 * The largest plain run kept for the next lookup (runs of small events are at most
 * {@link RUN_BYTES}; packed ones unpack to at most {@link PACK_BYTES}).
 */
const CACHED_RUN_BYTES = PACK_BYTES;
/** Bytes of the newest runs kept in memory for packing, at most (see `recent-runs.ts`). */
const RECENT_RUN_BYTES = 16 * 2 ** 20;
/**
 * A failed write counts as a full disk below this much free space on the log's file system (see
 * `#describeFailure`): LMDB reports EIO for a full disk on some file systems.
 */
const LOW_SPACE_BYTES = 16 * 2 ** 20;
/** Free bytes below which a batch is not committed before it is applied (see `EventLog.#roomy`). */
const ROOMY_BYTES = 256 * 2 ** 20;
/** Compared with a run that is gone (never equal to one: a run has at least its count). */
const EMPTY = Buffer.alloc(0);
/** Packs made ahead of the commits that write them, at most. */
const MAX_READY_PACKS = 8;
/** Rounds `packAll` goes on after its commits dropped packs (see there). */
const MAX_PACK_RETRIES = 3;

/** How long the packing steps of one turn may run before the next waits for another turn. */
const PACK_TURN_MS = 1;

/** Events moved per transaction when converting format 1 (a crash resumes after the last one). */
const CONVERSION_BATCH = 16_384;

/** Every event key is a 16-byte id: its latin1 string (see {@link idKey}). */
const keyString = idKey;

const compareKeys = compareIdBytes;

const asBuffer = (bytes: Uint8Array): Buffer =>
  Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);

/** A copy the caller owns (small ones in Node's Buffer pool: see `ownCopy`). */
const copyBytes = ownCopy;

/** Packs taken by a commit: what writes them inside its transaction, and what to call once it is done. */
interface TakenPacks {
  /**
   * Whether `write` must run inside the transaction (it reads the runs it replaces there): not
   * in a batch handed to lmdb-js's writer without a callback.
   */
  readonly inTransaction: boolean;
  /**
   * Writes the packs into `to` (their runs checked against `runs` first) and the frontier with
   * `putMeta`. `touched`: run keys the same commit writes before (the writer thread's commits are
   * worked out here, where `runs` does not show them yet): a pack over one of them is dropped.
   */
  readonly write: (
    runs: LmdbDatabase<Buffer, Buffer>,
    to: RunWrites,
    putMeta: (name: string, value: unknown) => void,
    touched?: readonly Uint8Array[],
  ) => void;
  /** The packed frontier to save: all that `write` writes when not {@link inTransaction}. */
  readonly through: Uint8Array | undefined;
  readonly done: () => void;
}

/** Where a commit's run writes go: LMDB inside a transaction, or the writer thread's list. */
interface RunWrites {
  put(key: Buffer, value: Buffer): unknown;
  remove(key: Buffer): unknown;
}

/** A plain run read for packing: its key, its value as read, and the value read as a run. */
interface PackSource {
  readonly key: Buffer;
  readonly value: Buffer;
  readonly reader: RunReader;
}

/** Runs to pack into one, and what the frontier becomes once they are. */
interface PackStretch {
  /** In id order, consecutive; none when only the frontier moves. */
  readonly sources: readonly PackSource[];
  /** The first run key after the last source (none when it is the last run or not known). */
  readonly next: Buffer | undefined;
  /** The new frontier, or undefined when the runs are behind it already (packed again). */
  readonly through: Uint8Array | undefined;
  /** The last id of the sources. */
  readonly last: Uint8Array;
  /** The sources are runs this session appended, kept in memory (see `EventLog.#recent`). */
  readonly fromMemory?: boolean;
}

/** The last id of `sources` (a copy). */
function lastId(sources: readonly PackSource[]): Uint8Array {
  const reader = sources[sources.length - 1]!.reader;
  return copyBytes(reader.key(reader.count - 1));
}

/** A plain run from LMDB for packing (lmdb-js hands out values as copies of their own). */
/** What one commit writes, as {@link EventLog} takes it from its queue. */
interface CommitBatch {
  /** The queued puts and removals. */
  readonly entries: OverlayEntry[];
  /** The commit's number (see {@link OverlayEntry.commit}). */
  readonly commit: number;
  /** The queued metadata. */
  readonly meta: Map<string, unknown>;
  /** How much the entries change the count of stored events. */
  readonly counted: number;
  /** The per-stride hashes, when they changed. */
  readonly strides: SavedStrides | undefined;
  /** Packs that ride with the commit (see `#takePacks`). */
  readonly packs: TakenPacks | undefined;
}

/** Whether an overlay entry stores an event (rather than removing one). */
function storesEvent(entry: OverlayEntry): boolean {
  return entry.event !== null;
}

/** Writes a commit's metadata through `put`: the count of stored events `count`, then the rest. */
function putMeta(batch: CommitBatch, count: number, put: (name: string, value: unknown) => void): void {
  put(META_COUNT, count);
  if (batch.strides !== undefined) put(META_STRIDES, batch.strides);
  for (const [name, value] of batch.meta) put(name, value);
}

function plainSource(key: Uint8Array, value: Uint8Array): PackSource {
  const ownKey = Buffer.from(key);
  const bytes = asBuffer(value);
  return { key: ownKey, value: bytes, reader: new RunReader(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), ownKey) };
}

/** A run read from LMDB: its key and its bytes (a copy of its own). */
interface LoadedRun {
  readonly key: Buffer;
  readonly reader: RunReader;
}

/** The LMDB-backed log of one database directory. */
export class EventLog {
  readonly path: string;
  readonly #env: RootDatabase;
  readonly #runs: LmdbDatabase<Buffer, Buffer>;
  readonly #meta: LmdbDatabase<unknown, string>;
  /** Queued and committing entries by id (reads see them before LMDB does); see {@link #letGo}. */
  readonly #overlay = new LogOverlay<OverlayEntry>();
  /** The number of the commit that takes what is queued now (see {@link OverlayEntry.commit}). */
  #nextCommit = 0;
  /** Entries and metadata queued in this turn, committed together by {@link #commit}. */
  #pending: OverlayEntry[] = [];
  #pendingMeta = new Map<string, unknown>();
  /** Whether this session has committed, or queued, its write token (see {@link writeToken}). */
  #tokenWritten = false;
  /**
   * Metadata of the transactions handed to LMDB and not yet done, oldest first, readable until
   * they are (two may be in flight: a value queued in the older one only is still the latest).
   */
  readonly #committingMeta: Map<string, unknown>[] = [];
  #scheduled = false;
  /** Commits handed to LMDB and not yet done (their entries are still in the overlay). */
  #committing = 0;
  #lastWrite: Promise<unknown> = Promise.resolve();
  /**
   * The writer thread (see `log-writer.ts`), in `'async'` mode once {@link startWriter} ran; while
   * it is starting, commits go to lmdb-js.
   */
  #writer: LogWriter | undefined;
  /** The commit the writer thread is writing: no other starts meanwhile (see {@link #commit}). */
  #onWriter: Promise<unknown> | undefined;
  /**
   * Settles with the commit of what was queued while the writer thread was busy, once it is
   * made (see {@link #commit}); {@link written} waits for it.
   */
  #deferred: PromiseWithResolvers<unknown> | undefined;
  /** The first failed write (the log refuses writes from then on; see {@link written}). */
  #failure: unknown;
  /**
   * What the first failed write is reported as, once {@link #failureCause} is known: lmdb-js rejects
   * a failed commit with a generic error whose `commitError` promise holds the system's.
   */
  #failureError: NoatunError | undefined;
  #failureCause: Promise<unknown> | undefined;
  #closed = false;
  /** Events in LMDB as of the last transaction written (kept in the metadata too). */
  #count = 0;
  /**
   * What queued writes will change the count by, before their transaction counts them exactly:
   * queued in this turn, and handed to LMDB but not yet written.
   */
  #countQueued = 0;
  #countCommitting = 0;
  /** The highest id in LMDB as of the last transaction written. */
  #last: Uint8Array | undefined;
  /** Bumped whenever LMDB's content may have changed: the run cache is stale then. */
  #generation = 0;
  /**
   * `'sync'`: each commit runs on this thread and is durable when {@link #commit} returns;
   * `'async'`: commits go to lmdb-js's writer thread (see `DatabaseOptions.commitMode`).
   */
  commitMode: 'sync' | 'async' = 'async';
  /** Per-stride XORs of stored ids, when tracked (see {@link trackStrides}). */
  #strides: StrideHashes | undefined;
  /** The key of the run the last lookup read from LMDB (see {@link #inRun}). */
  #lastRunKey: Buffer | undefined;
  /** A run looked up twice in a row, kept: consecutive lookups of nearby ids read LMDB once. */
  #cached: { generation: number; run: LoadedRun; first: Uint8Array; last: Uint8Array } | undefined;
  /** Runs whose events are all before this id are packed in the background (see {@link packBefore}). */
  #packHorizon: Uint8Array | undefined;
  #packHorizonTime = -Infinity;
  /**
   * The last id of the packed frontier: the runs up to it were packed or are being packed (or
   * were left plain, a large event's), those after it not yet. Saved with each pack.
   */
  #packedThrough: Uint8Array | undefined;
  /**
   * Plain runs written behind the frontier in this session (a pruned event's pack rewritten as
   * plain runs), by {@link keyString}: packed again in the background. Not saved: after a restart
   * they stay plain.
   */
  readonly #repack = new Map<string, Uint8Array>();
  /**
   * The stretches of packs being made, ready, or handed to LMDB and not yet written: no other pack
   * takes their runs (it would write their events twice).
   */
  readonly #claims = new Set<PackStretch>();
  /**
   * The newest runs as written in this session (see `recent-runs.ts`): the frontier packs them from
   * here instead of reading them back from LMDB.
   */
  readonly #recent = new RecentRuns(RECENT_RUN_BYTES);
  /** Packs made and not yet handed to LMDB, oldest first (see {@link #takePacks}). */
  #ready: { stretch: PackStretch; packed: Buffer | undefined }[] = [];
  /** A packing step is scheduled (see {@link #schedulePack}). */
  #packScheduled = false;
  /** When the turn of the packing steps now running began (see {@link #runPackStep}). */
  #packTurn = 0;
  /** A packing step is reading, compressing or writing (see {@link #runPackStep}). */
  #packBusy = false;
  /** The last packing step started. */
  #packWork: Promise<unknown> | undefined;
  /**
   * What {@link packBytes} starts as in each log opened: {@link PACK_BYTES}. Tests make it small,
   * so that a few hundred events make several packs (randomized tests then pack as they go).
   */
  static defaultPackBytes = PACK_BYTES;
  /** Plain bytes packed into one run at most (see {@link defaultPackBytes}). */
  packBytes = EventLog.defaultPackBytes;
  /** What packing did in this session, for stats and tests. */
  readonly packStats = { packs: 0, runs: 0, plainBytes: 0, packedBytes: 0, fromMemory: 0, dropped: 0 };

  private constructor(file: string, env: RootDatabase) {
    this.path = file;
    this.#env = env;
    this.#runs = env.openDB<Buffer, Buffer>({ name: 'runs', encoding: 'binary', keyEncoding: 'binary' });
    this.#meta = env.openDB<unknown, string>({ name: 'meta', encoding: 'msgpack' });
  }

  /**
   * Opens (creating if missing) the log in `directory`. A log of format 1 (one LMDB entry per
   * event, written before 5 Dec 2026) is converted first, in transactions of
   * {@link CONVERSION_BATCH} events that each move their events from the old database to runs, so a
   * conversion cut short by a crash resumes where it stopped at the next open. A log written by a
   * newer format is refused.
   */
  static async open(directory: string, onConversion?: LogConversionProgress): Promise<EventLog> {
    const file = path.join(directory, 'log.mdb');
    makeDirectories(directory);
    // A compacted copy left by a conversion cut short (see #compactInPlace): the log is whole.
    fs.rmSync(file + COMPACT_SUFFIX, { force: true });
    const env = openEnv(file);
    let converted = false;
    try {
      const log = new EventLog(file, env);
      const format = log.#storedMeta(META_FORMAT, MetaShape.any);
      if (format !== undefined && format !== 2 && format !== LOG_FORMAT) {
        throw new NoatunError(
          ErrorCode.CORRUPT_FILE,
          `the event log ${file} has format ${String(format)}; this version of Noatun reads formats 1 to ${LOG_FORMAT}: open it with the version that wrote it`,
        );
      }
      const through = log.#storedMeta(META_PACKED_THROUGH, MetaShape.id);
      if (through !== undefined) log.#packedThrough = Uint8Array.from(through);
      const count = log.#storedMeta(META_COUNT, MetaShape.count);
      log.#count = count ?? 0;
      log.#last = log.#readLastKey();
      // The root database's keys are the names of the databases in the file (a handful).
      const format1 = [...env.getKeys()].includes(FORMAT_1_EVENTS);
      // Every commit that writes runs writes the count, and the first one the format (a format-1
      // log being converted has its count and no format yet). Without them beside runs, the
      // metadata page is damaged (LMDB does not notice zeroed records in a page): trusted, the
      // count of 0 made the open throw the view away and make an empty one, and later commits
      // numbered new events from the start again, for good.
      if (log.#last !== undefined && (count === undefined || (format === undefined && !format1))) {
        throw new NoatunError(
          ErrorCode.CORRUPT_FILE,
          `the event log ${file} holds events, but its metadata is damaged (no ${count === undefined ? 'count of events' : 'format'} recorded): restore log.mdb from a backup, or take a copy of the events from a peer into a new database`,
        );
      }
      if (format1) {
        await log.#convertFormat1(onConversion);
        converted = true;
      }
      // Format 2 has no packed runs: it is format 3 as it is (and an older version refuses it now).
      if (format !== LOG_FORMAT) await systemCause(log.#meta.put(META_FORMAT, LOG_FORMAT));
      if (log.#storedMeta(META_RUNS_IN_ORDER, MetaShape.flag) !== true) {
        await log.#putRunsInOrder();
        if (log.runsPutInOrder !== 0) log.#last = log.#readLastKey();
      }
      if (!converted) return log;
    } catch (error) {
      await env.close();
      throw error;
    }
    await compactInPlace(file, env);
    return EventLog.open(directory);
  }

  /**
   * Once per log: finds the stretches where a run starts at or before the last id of a run before
   * it, and writes each again as runs in id order. Packing before 6 Dec 2026 could lay a pack over
   * a run that came between its runs after they were read (see `sameRuns`): the events were all
   * there, but out of order from run to run, so lookups missed some. Only a log that was packed
   * can hold one; its runs are read once (packs unpacked): 0.15 s for a million events, all packed.
   */
  async #putRunsInOrder(): Promise<void> {
    const stretches: { keys: Buffer[]; entries: RunEntry[] }[] = [];
    if (this.#packedThrough !== undefined) {
      let stretch: { keys: Buffer[]; entries: RunEntry[] } | undefined;
      let previous: LoadedRun | undefined;
      let highest: Uint8Array | undefined;
      for (const { key, value } of this.#runs.getRange({})) {
        const run = loadRun(key, value);
        const reader = run.reader;
        if (highest !== undefined && compareKeys(reader.key(0), highest) <= 0) {
          if (stretch === undefined) {
            stretch = { keys: [previous!.key], entries: [] };
            for (let i = 0; i < previous!.reader.count; i++) stretch.entries.push(previous!.reader.entry(i));
          }
          stretch.keys.push(run.key);
          for (let i = 0; i < reader.count; i++) stretch.entries.push(reader.entry(i));
        } else if (stretch !== undefined) {
          stretches.push(stretch);
          stretch = undefined;
        }
        const last = reader.key(reader.count - 1);
        if (highest === undefined || compareKeys(last, highest) > 0) highest = last;
        previous = run;
      }
      if (stretch !== undefined) stretches.push(stretch);
    }
    await systemCause(this.#env.childTransaction(() => {
      for (const { keys, entries } of stretches) {
        for (const key of keys) this.#runs.remove(key);
        entries.sort((a, b) => compareKeys(a.key, b.key));
        const unique = entries.filter((entry, i) => i === 0 || compareKeys(entries[i - 1]!.key, entry.key) !== 0);
        writeRuns(unique, (first, run) => this.#runs.put(asBuffer(first), run));
      }
      this.#meta.put(META_RUNS_IN_ORDER, true);
    }));
    this.#generation++;
    this.runsPutInOrder = stretches.length;
  }

  /** Stretches of runs {@link #putRunsInOrder} wrote again at this open (for tests and logs). */
  runsPutInOrder = 0;

  /** Moves every event of format 1's `events` database into runs, then drops that database. */
  async #convertFormat1(onConversion?: LogConversionProgress): Promise<void> {
    const old = this.#env.openDB<Buffer, Buffer>({ name: FORMAT_1_EVENTS, encoding: 'binary', keyEncoding: 'binary' });
    const total = (old.getStats() as { entryCount: number }).entryCount;
    let done = 0;
    for (;;) {
      const keys: Buffer[] = [];
      const batch: OverlayEntry[] = [];
      for (const { key, value } of old.getRange({ limit: CONVERSION_BATCH })) {
        keys.push(Buffer.from(key));
        const event = readFormat1(key, value);
        // An entry too short for an envelope is no event; one whose envelope names another id is
        // filed under that id, and the rebuild's check of every envelope drops it as damaged.
        // (Written directly, never in the overlay: no commit number.)
        if (event !== undefined) batch.push({ key: event.envelope.subarray(1, 17), event, commit: -1 });
      }
      if (keys.length === 0) break;
      await systemCause(this.#env.childTransaction(() => {
        this.#count += this.#write(batch, this.#runs);
        this.#meta.put(META_COUNT, this.#count);
        for (const key of keys) old.remove(key);
      }));
      this.#generation++;
      done += keys.length;
      onConversion?.({ done, total });
    }
    await old.drop();
    await this.#env.flushed;
  }

  /** The stored event with this id, or undefined. */
  get(key: Uint8Array): StoredEvent | undefined {
    const pending = this.#overlay.get(key);
    if (pending !== undefined) return pending.event === null ? undefined : owned(pending.event);
    return this.#inRun(key, (reader) => {
      const i = reader.indexOf(key);
      return i < 0 ? undefined : { key: copyBytes(key), ordinal: reader.ordinal(i), envelope: copyBytes(reader.envelope(i)) };
    });
  }

  /**
   * The ids of stored events named by ordinal and the first {@link ID_PREFIX_BYTES} bytes of
   * their id (timestamp and sequence: what the view's pruning records keep of it): event `i` is
   * `ordinals[i]` with prefix `prefixes[i * 8, i * 8 + 8)`, and `out[i]` its id, undefined when no
   * stored event matches. Queued events count. Looked up in id order, so that a batch mostly reads
   * runs already at hand.
   */
  keysOf(prefixes: Uint8Array, ordinals: Uint32Array): (Uint8Array | undefined)[] {
    const n = ordinals.length;
    const out = new Array<Uint8Array | undefined>(n).fill(undefined);
    const order = new Uint32Array(n);
    for (let i = 0; i < n; i++) order[i] = i;
    if (n > 1) {
      // By prefix, as a number (rounded beyond 2^53: close enough for an order that only saves reads).
      const rank = new Float64Array(n);
      for (let i = 0, b = 0; i < n; i++, b += ID_PREFIX_BYTES) {
        rank[i] =
          (prefixes[b]! * 2 ** 24 + ((prefixes[b + 1]! << 16) | (prefixes[b + 2]! << 8) | prefixes[b + 3]!)) * 2 ** 32 +
          (prefixes[b + 4]! * 2 ** 24 + ((prefixes[b + 5]! << 16) | (prefixes[b + 6]! << 8) | prefixes[b + 7]!));
      }
      order.sort((a, b) => rank[a]! - rank[b]!);
    }
    // A queued event is not in LMDB yet (an id is put only when not stored): those are looked up
    // last, in an index of the queue made only if some event was not found (pruning asks for old ones).
    let queued: Map<number, Uint8Array> | undefined;
    // The batch keeps the run it read last (not the log's kept run, which other lookups rely on).
    const batch: RunCache = { run: undefined };
    for (const i of order) {
      const prefix = prefixes.subarray(i * ID_PREFIX_BYTES, (i + 1) * ID_PREFIX_BYTES);
      const ordinal = ordinals[i]!;
      let key = this.#committedKeyOf(prefix, ordinal, batch);
      if (key === undefined && this.#overlay.size !== 0) {
        if (queued === undefined) {
          queued = new Map();
          for (const entry of this.#overlay.values()) if (entry.event !== null) queued.set(entry.event.ordinal, entry.key);
        }
        const pending = queued.get(ordinal);
        if (pending !== undefined && startsWith(pending, prefix)) key = copyBytes(pending);
      }
      out[i] = key;
    }
    return out;
  }

  /** Scratch for {@link #committedKeyOf}: a prefix followed by 0xff bytes. */
  readonly #bound = new Uint8Array(16);

  /**
   * The id in LMDB of event `ordinal` whose id starts with `prefix`: its events with that prefix
   * end in the run that would hold the prefix followed by 0xff bytes, and are read backwards from
   * there (into the runs before, in the rare case that they start a run).
   */
  #committedKeyOf(prefix: Uint8Array, ordinal: number, batch: RunCache): Uint8Array | undefined {
    let from: Uint8Array | undefined = this.#bound.fill(0xff);
    from.set(prefix);
    const kept = this.#keptKeyOf(from, prefix, ordinal, batch);
    if (kept !== undefined) return kept;
    while (from !== undefined) {
      const reader = this.#runFor(from, batch);
      if (reader === undefined) return undefined;
      const found = scanBack(reader, from, prefix, ordinal);
      if (found !== undefined) return found ?? undefined;
      // Every event of the run before `from` has the prefix: the run before may hold more.
      from = predecessor(reader.key(0));
    }
    return undefined;
  }

  /**
   * The id of event `ordinal` with `prefix` when a run kept in memory (see {@link #recent}) holds
   * it, else undefined (then LMDB is read). Those runs mirror the log as this session wrote it, but
   * a hit needs no such promise: ordinals are never reused and an event's id never changes, so an
   * entry with the ordinal and the prefix names the event wherever it is found.
   */
  #keptKeyOf(bound: Uint8Array, prefix: Uint8Array, ordinal: number, batch: RunCache): Uint8Array | undefined {
    let reader = covering(batch.kept, bound);
    if (reader === undefined) {
      const run = this.#recent.floor(bound);
      if (run === undefined) return undefined;
      reader = new RunReader(new Uint8Array(run.run.buffer, run.run.byteOffset, run.run.byteLength), run.key);
      batch.kept = cachedRun(reader);
    }
    return scanBack(reader, bound, prefix, ordinal) ?? undefined;
  }

  /**
   * The run that would hold `key` (the last one starting at or before it), or undefined: the
   * batch's last run when it is that one, else read with its value in one lookup and kept in the
   * batch for the next (a batch of {@link keysOf} comes in id order).
   */
  #runFor(key: Uint8Array, batch: RunCache): RunReader | undefined {
    const kept = covering(batch.run, key);
    if (kept !== undefined) return kept;
    for (const { key: runKey, value } of this.#runs.getRange({ start: asBuffer(key), reverse: true, limit: 1 })) {
      const reader = loadRun(runKey, value).reader;
      batch.run = cachedRun(reader);
      return reader;
    }
    return undefined;
  }

  /** Whether an event with this id is stored. */
  has(key: Uint8Array): boolean {
    const pending = this.#overlay.get(key);
    if (pending !== undefined) return pending.event !== null;
    return this.#inRun(key, (reader) => reader.indexOf(key) >= 0) ?? false;
  }

  /**
   * Calls `read` with the run that would hold `key` (the last one starting at or before it), or
   * returns undefined when there is none. `read` must copy what it keeps (the run may be kept for
   * the next lookups). Lookups in id order (a session serving a range, a rewind) mostly fall in
   * the run of the one before: a run looked up twice in a row is kept for the next ones.
   */
  #inRun<T>(key: Uint8Array, read: (reader: RunReader) => T): T | undefined {
    const cached = this.#cached;
    if (
      cached !== undefined &&
      cached.generation === this.#generation &&
      compareKeys(cached.first, key) <= 0 &&
      compareKeys(key, cached.last) <= 0
    ) {
      return read(cached.run.reader);
    }
    for (const found of this.#runs.getKeys({ start: asBuffer(key), reverse: true, limit: 1 }) as Iterable<Buffer>) {
      const runKey = Buffer.from(found);
      // Not `getBinaryFast`: for a value larger than its read buffer (a large event) lmdb-js grows
      // that buffer to twice the value and keeps it for good.
      const value = this.#runs.getBinary(runKey);
      if (value === undefined) return undefined;
      const packed = isPacked(value);
      const reader = readRun(runKey, value);
      const again = packed || (this.#lastRunKey !== undefined && compareKeys(this.#lastRunKey, runKey) === 0);
      this.#lastRunKey = runKey;
      // Kept for the next lookup unless it is one large event (a run of many small ones is small);
      // a packed one at once, not to unpack it again.
      if (again && reader.bytes.byteLength <= Math.max(CACHED_RUN_BYTES, this.packBytes)) {
        this.#cached = { generation: this.#generation, run: { key: runKey, reader }, first: reader.key(0), last: reader.key(reader.count - 1) };
      }
      return read(reader);
    }
    return undefined;
  }

  /** Reads the run with the greatest first id ≤ `key` (a copy of its own), or undefined when there is none. */
  #floorRun(key: Uint8Array): LoadedRun | undefined {
    for (const { key: runKey, value } of this.#runs.getRange({ start: asBuffer(key), reverse: true, limit: 1 })) {
      return loadRun(runKey, value);
    }
    return undefined;
  }

  /** The first run key > `key`, or undefined. */
  #nextRunKey(key: Uint8Array): Buffer | undefined {
    for (const runKey of this.#runs.getKeys({ start: asBuffer(key), limit: 2 }) as Iterable<Buffer>) {
      if (compareKeys(runKey, key) > 0) return Buffer.from(runKey);
    }
    return undefined;
  }

  /** The highest id in LMDB (the last event of the last run), or undefined when it holds none. */
  #readLastKey(): Uint8Array | undefined {
    for (const { key, value } of this.#runs.getRange({ reverse: true, limit: 1 })) {
      const reader = loadRun(key, value).reader;
      return reader.key(reader.count - 1);
    }
    return undefined;
  }

  /**
   * Queues an event for storage (visible to reads at once, durable after {@link written}). The
   * id must not be stored already (or be queued for removal first): the log counts it as new until
   * its transaction counts exactly.
   */
  put(event: StoredEvent): void {
    this.#assertWritable();
    const entry: OverlayEntry = { key: event.key, event, commit: this.#nextCommit };
    const prior = this.#overlay.set(entry);
    if (prior === undefined || prior.event === null) this.#countQueued++;
    if (this.#strides !== undefined) this.#strides.toggle(event.key);
    this.#queue(entry);
  }

  /** Queues the removal of a stored event. */
  remove(key: Uint8Array): void {
    this.#assertWritable();
    const entry: OverlayEntry = { key: copyBytes(key), event: null, commit: this.#nextCommit };
    const prior = this.#overlay.set(entry);
    if (prior === undefined || prior.event !== null) this.#countQueued--;
    if (this.#strides !== undefined) this.#strides.toggle(key);
    this.#queue(entry);
  }

  /**
   * Starts keeping, for every stride of `strideMs` at or after `floor`, the XOR of the ids of the
   * stored events dated in it, kept as events are stored and removed and saved with each commit
   * (the cutoff hashes move by these, without reading the log). Read back when saved for the same
   * stride and floor; otherwise computed from the log's ids from `floor` on. Call before any write.
   */
  trackStrides(strideMs: number, floor: number): void {
    const saved = this.#storedMeta(META_STRIDES, SAVED_STRIDES);
    if (saved !== undefined && saved !== null && saved.strideMs === strideMs && saved.floor === floor) {
      this.#strides = new StrideHashes(strideMs, floor, saved.hashes);
      return;
    }
    const strides = new StrideHashes(strideMs, floor, []);
    for (const key of this.keys(idFloor(floor))) strides.toggle(key);
    strides.changed = true;
    this.#strides = strides;
    this.#schedule();
  }

  /**
   * Marks the saved per-stride hashes stale: this session does not track them (a database opened
   * without pruning), so the next one that does computes them afresh.
   */
  forgetStrides(): void {
    this.#strides = undefined;
    if (this.#storedMeta(META_STRIDES, MetaShape.any) != null) this.setMeta(META_STRIDES, null);
  }

  /**
   * The XOR of the ids of stored events dated before `time` and at or after the stride floor;
   * `time` must be a stride boundary. See {@link trackStrides}.
   */
  strideHashBefore(time: number): Uint8Array {
    return this.#trackedStrides().hashBefore(time);
  }

  /** The XOR of the ids of stored events in the stride starting at `time` (a stride boundary). */
  strideHash(time: number): Uint8Array {
    return this.#trackedStrides().hashAt(time);
  }

  /** Forgets the strides before `time` and stops tracking events dated before it. */
  dropStridesBefore(time: number): void {
    this.#trackedStrides().dropBefore(time);
    this.#schedule();
  }

  #trackedStrides(): StrideHashes {
    if (this.#strides === undefined) throw new NoatunError(ErrorCode.INTERNAL, 'the log does not track strides');
    return this.#strides;
  }

  /**
   * Whether logs opened from now on start a writer thread for their asynchronous commits (see
   * {@link startWriter}); tests turn it off to cover lmdb-js's own path.
   */
  static writerThread = true;

  /**
   * Writer threads a process (a JavaScript thread) runs at most: each is a V8 isolate of its own
   * (about 16 MiB), and a process that opens many databases at once (a test suite ran 12 GB with
   * one per database) would start one for each. Logs opened past the limit commit through lmdb-js,
   * as before run V, until a thread stops (its database closed) and a later write starts one.
   */
  static maxWriterThreads = 4;

  /**
   * Starts the writer thread (see `log-writer.ts`): once it is up, `'async'` commits made with
   * nothing in flight go there instead of to lmdb-js (see {@link #commit}). Resolves once it is
   * up (or could not start: commits then stay with lmdb-js). With {@link maxWriterThreads}
   * running in this process, none starts (a later call may, once one stopped).
   */
  startWriter(): Promise<void> {
    if (this.#writer === undefined && !this.#closed && EventLog.writerThread && LogWriter.running < EventLog.maxWriterThreads) {
      this.#writer = new LogWriter(this.path);
    }
    return this.#writer?.started ?? Promise.resolve();
  }

  #roomCheckedAt = -Infinity;
  #room = true;

  /**
   * Whether the log's file system has room to spare (checked at most every 100 ms). Near a full
   * disk a batch is not committed before it is applied: a view that fills the disk refuses the
   * batch and the database goes on, but a log commit that meets the full disk makes the log refuse
   * writes until a reopen (see {@link #fail}), and an early commit could meet it first.
   */
  #roomy(): boolean {
    const now = performance.now();
    if (now - this.#roomCheckedAt < 100) return this.#room;
    this.#roomCheckedAt = now;
    try {
      const stats = fs.statfsSync(this.path);
      this.#room = stats.bavail * stats.bsize >= ROOMY_BYTES;
    } catch {
      this.#room = false;
    }
    return this.#room;
  }

  /** The writer thread's state: see `DatabaseStats.writerThread`. */
  get writerThread(): 'starting' | 'running' | 'off' {
    const writer = this.#writer;
    if (writer === undefined || this.commitMode !== 'async') return 'off';
    return writer.ready ? 'running' : writer.stopped ? 'off' : 'starting';
  }

  /**
   * Commits what is queued now, when the writer thread takes it: `'async'` mode, the thread up,
   * nothing in flight. The commit then runs while this thread goes on. Returns whether it did; if not,
   * the commit is made as usual (by {@link written}, or at the end of this turn).
   *
   * `mark`, a metadata value, is written with this commit and set to null by the next one (the
   * database marks a batch it has not applied yet this way: see `Database.open`).
   */
  startCommit(mark?: { readonly name: string; readonly value: unknown }): boolean {
    if (!this.#scheduled || this.commitMode !== 'async' || this.#writer?.ready !== true) return false;
    if (this.#committing !== 0 || this.#failure !== undefined || this.#closed) return false;
    if (!this.#roomy()) return false;
    if (mark !== undefined) this.#pendingMeta.set(mark.name, mark.value);
    this.#commit();
    // The mark is cleared by whichever commit comes next, without asking for one.
    if (mark !== undefined) this.#pendingMeta.set(mark.name, null);
    return true;
  }

  /**
   * The log's write token: 16 random bytes that every session which stores or removes events
   * replaces with its first such commit, or undefined for a log no such session wrote (before 8
   * Dec 2026). A
   * view records the token of the log it was sealed with (`Database`): two copies of one database
   * that went on apart share the log's id and may reach the same count of events, and a view moved
   * from one to the other was trusted as it was; their tokens differ.
   */
  get writeToken(): Uint8Array | undefined {
    return this.getMeta(META_WRITE_TOKEN, MetaShape.id);
  }

  /** Queues a metadata value; it commits in the same transaction as the events queued with it. */
  setMeta(name: string, value: unknown): void {
    this.#assertWritable();
    this.#pendingMeta.set(name, value);
    this.#schedule();
  }

  /**
   * A metadata value (the latest queued or committed one), or undefined. One read from the file
   * that is not of `shape` (or does not decode) is `CORRUPT_FILE`: see `meta-shape.ts`.
   */
  getMeta<T>(name: string, shape: MetaShape<T>): T | undefined {
    if (this.#pendingMeta.has(name)) return this.#pendingMeta.get(name) as T;
    for (let i = this.#committingMeta.length - 1; i >= 0; i--) {
      const meta = this.#committingMeta[i]!;
      if (meta.has(name)) return meta.get(name) as T;
    }
    return this.#storedMeta(name, shape);
  }

  /** A metadata value as the file holds it, checked (see {@link getMeta}). */
  #storedMeta<T>(name: string, shape: MetaShape<T>): T | undefined {
    let value: unknown;
    try {
      value = this.#meta.get(name);
    } catch (error) {
      throw this.#damagedMeta(name, `it does not decode (${String(error)})`, error);
    }
    if (value === undefined || shape.is(value)) return value as T | undefined;
    throw this.#damagedMeta(name, `it should be ${shape.what}, and is ${describeMeta(value)}`);
  }

  #damagedMeta(name: string, reason: string, cause?: unknown): NoatunError {
    return new NoatunError(
      ErrorCode.CORRUPT_FILE,
      `the event log ${this.path} is damaged: its metadata '${name}' cannot be read: ${reason}. Restore the log from a backup, or move the database directory away and let the peers send the events again`,
      cause === undefined ? undefined : { cause },
    );
  }

  /** Queues `entry` (already the overlay's entry of its id) for the next commit. */
  #queue(entry: OverlayEntry): void {
    this.#pending.push(entry);
    this.#schedule();
  }

  #schedule(): void {
    if (!this.#scheduled) {
      this.#scheduled = true;
      queueMicrotask(() => this.#commit());
    }
  }

  /**
   * Commits everything queued so far as one LMDB transaction: events, removals and metadata
   * together, so the metadata (next ordinal, heads) never disagrees with the events after a crash.
   */
  #commit(): void {
    if (!this.#scheduled) return;
    if (this.#onWriter !== undefined && this.#failure === undefined) {
      // The writer thread is busy: what is queued waits, still scheduled, and goes in one commit
      // when it is done (a commit of lmdb-js's started meanwhile could be written before it).
      this.#deferred ??= Promise.withResolvers<unknown>();
      return;
    }
    this.#scheduled = false;
    // After a failed commit nothing more goes to LMDB (after an I/O error its environment may fail
    // every transaction, and lmdb-js would reject a promise of its own that nothing observes);
    // what is queued stays in memory until the database is reopened.
    if (this.#failure !== undefined) return;
    // The session's first commit that stores or removes events gives the log a new write token
    // (see writeToken). Not one of metadata only: an open that is refused may have queued some,
    // which its close commits, and a new token then would have the next open rebuild the view.
    if (!this.#tokenWritten && this.#pending.length !== 0) {
      this.#tokenWritten = true;
      this.#pendingMeta.set(META_WRITE_TOKEN, randomBytes(16));
    }
    const entries = this.#pending;
    const meta = this.#pendingMeta;
    const counted = this.#countQueued;
    const strides = this.#strides?.changed === true ? this.#strides.save() : undefined;
    this.#pending = [];
    const commit = this.#nextCommit++;
    this.#pendingMeta = new Map();
    this.#countQueued = 0;
    this.#countCommitting += counted;
    this.#committingMeta.push(meta);
    const metaDb = this.#meta;
    // Packs made in the background ride with this commit (see #takePacks).
    const packs = this.#failure === undefined ? this.#takePacks() : undefined;
    const batch: CommitBatch = { entries, commit, meta, counted, strides, packs };
    if (this.commitMode === 'sync' && this.#committing === 0 && this.#failure === undefined) {
      this.#commitNow(batch);
      return;
    }
    let done: Promise<unknown>;
    const writer = this.#writer;
    if (this.#committing === 0 && writer?.ready === true) {
      try {
        done = this.#commitOnWriter(writer, batch);
      } catch (error) {
        // A damaged run met while merging: nothing was handed to the thread; the commit failed.
        done = Promise.reject(error);
      }
      this.#onWriter = done;
    } else if (this.#committing === 0 && packs?.inTransaction !== true && this.#appends(entries)) {
      // Only new runs above every stored id, and nothing in flight: the runs are made now and
      // handed to lmdb-js as one batch (one transaction), which its writer thread commits without
      // calling back into this thread (a transaction callback waits for this thread to be free).
      // (Made before the batch opens: a throw inside it would leave a part of it to be written.)
      const made: [Buffer, Buffer][] = [];
      this.#appendRuns(entries, (first, run) => {
        made.push([asBuffer(first), run]);
        this.#remember(first, run);
      });
      this.#count += entries.length;
      this.#countCommitting -= counted;
      const count = this.#count;
      this.#generation++;
      const runs = this.#runs;
      done = this.#env.batch(() => {
        for (const [first, run] of made) runs.put(first, run);
        const put = (name: string, value: unknown) => metaDb.put(name, value);
        packs?.write(runs, runs, put);
        putMeta(batch, count, put);
      });
    } else {
      done = this.#childCommit(batch);
    }
    this.#committing++;
    this.#lastWrite = done;
    done.then(
      () => {
        // Committed: reads see the entries in LMDB now, the overlay can let go of them (all at
        // once when nothing was queued since: the usual case, one commit per batch).
        this.#committing--;
        this.#generation++;
        packs?.done();
        if (this.#onWriter === done) this.#onWriter = undefined;
        this.#letGo(entries, meta, commit);
        // What was queued while the thread wrote goes now, together.
        const deferred = this.#deferred;
        if (deferred !== undefined) {
          this.#deferred = undefined;
          this.#commit();
          deferred.resolve(this.#lastWrite);
        }
      },
      (error: unknown) => {
        this.#committing--;
        this.#generation++;
        packs?.done();
        if (this.#onWriter === done) this.#onWriter = undefined;
        this.#fail(error);
        this.#deferred?.reject(error);
        this.#deferred = undefined;
      },
    );
  }

  /**
   * Commits on the writer thread (nothing in flight): what the transaction writes is worked out
   * here, against what LMDB holds now (every earlier commit is written), and the thread writes it.
   * This thread is free meanwhile; its read transaction moves on to the commit before the overlay
   * lets go of the entries.
   */
  #commitOnWriter(writer: LogWriter, batch: CommitBatch): Promise<unknown> {
    const { entries, counted, packs } = batch;
    const ops = new WriteOps();
    const touched: Uint8Array[] = [];
    const to: RunWrites = {
      put: (key, value) => {
        ops.put(RUNS, key, value);
        touched.push(key);
      },
      remove: (key) => {
        ops.remove(RUNS, key);
        touched.push(key);
      },
    };
    const appends = this.#appends(entries);
    if (appends) {
      this.#appendRuns(entries, (first, run) => {
        to.put(asBuffer(first), run);
        this.#remember(first, run);
      });
      this.#count += entries.length;
    } else {
      this.#count += this.#write(entries, to, false);
    }
    this.#countCommitting -= counted;
    this.#generation++;
    const put = (name: string, value: unknown) => ops.put(META, name, this.#encodeMeta(value));
    packs?.write(this.#runs, to, put, touched);
    putMeta(batch, this.#count, put);
    return writer.commit(ops).then(() => {
      this.#env.resetReadTxn();
      if (!appends) this.#last = this.#readLastKey();
    });
  }

  /**
   * Commits through lmdb-js's writer thread in a child transaction (of the batch lmdb-js writes):
   * when the callback throws (a damaged run met while merging), lmdb-js aborts what the callback
   * wrote; in a plain one it would commit the part written before the throw.
   */
  #childCommit(batch: CommitBatch): Promise<unknown> {
    const metaDb = this.#meta;
    return this.#env.childTransaction(() => {
      this.#count += this.#write(batch.entries, this.#runs);
      const put = (name: string, value: unknown) => metaDb.put(name, value);
      batch.packs?.write(this.#runs, this.#runs, put);
      this.#countCommitting -= batch.counted;
      putMeta(batch, this.#count, put);
    });
  }

  /** A metadata value as lmdb-js would store it (for the writer thread, which writes bytes). */
  #encodeMeta(value: unknown): Uint8Array {
    // A copy: the encoder reuses its buffer.
    return Uint8Array.prototype.slice.call((this.#meta as unknown as { encoder: { encode(v: unknown): Uint8Array } }).encoder.encode(value));
  }

  /**
   * Commits `entries` and `meta` in one LMDB transaction on this thread: durable (LMDB syncs the
   * data, then writes its meta page synchronously) when it returns. A throw inside (a damaged run
   * met while merging, a write that fails) aborts the transaction: nothing of it is written, and
   * the log refuses further writes, as after a failed asynchronous commit.
   */
  #commitNow(batch: CommitBatch): void {
    const { entries, meta, counted, packs } = batch;
    const metaDb = this.#meta;
    let count = this.#count;
    try {
      this.#env.transactionSync(() => {
        count += this.#write(entries, this.#runs);
        const put = (name: string, value: unknown) => metaDb.put(name, value);
        packs?.write(this.#runs, this.#runs, put);
        putMeta(batch, count, put);
      });
    } catch (error) {
      // Not written: the entries stay in the overlay and the metadata with the committing ones
      // (reads keep seeing them), as after a failed asynchronous commit.
      this.#generation++;
      packs?.done();
      this.#fail(error);
      return;
    }
    this.#generation++;
    packs?.done();
    this.#countCommitting -= counted;
    this.#count = count;
    this.#letGo(entries, meta, batch.commit);
  }

  /**
   * A commit of `entries` and `meta` is written: reads see them in LMDB now, so the overlay and the
   * committing metadata let go of them (the overlay all at once when nothing was queued or is in
   * flight since: the usual case, one commit per batch). Not after a failed commit: its entries
   * were never written, and reads keep seeing them.
   */
  #letGo(entries: OverlayEntry[], meta: Map<string, unknown>, commit: number): void {
    if (this.#committing === 0 && this.#pending.length === 0 && this.#failure === undefined) this.#overlay.clear();
    else this.#overlay.release(commit, entries);
    entries.length = 0;
    this.#committingMeta.splice(this.#committingMeta.indexOf(meta), 1);
  }

  /**
   * Writes queued entries into runs, inside an LMDB write transaction; returns by how much the
   * number of stored events changed. Entries above every stored id (local writes, a copy, gossip)
   * become new runs without reading any; otherwise each run an entry falls in is read, merged with
   * its entries, and written again (as several runs if it outgrew one).
   */
  #write(entries: readonly OverlayEntry[], sink: RunWrites, readLast = true): number {
    this.#generation++;
    const through = this.#packedThrough;
    const put = (first: Uint8Array, run: Buffer): void => {
      sink.put(asBuffer(first), run);
      // A plain run behind the packed frontier (a pack that lost an event, rewritten): pack it again.
      if (through !== undefined && compareKeys(first, through) <= 0) this.#repack.set(keyString(first), copyBytes(first));
    };
    if (this.#appends(entries)) {
      this.#appendRuns(entries, (first, run) => {
        put(first, run);
        this.#remember(first, run);
      });
      return entries.length;
    }
    // The last entry queued for an id is what stays; then in id order.
    const latest = new Map<string, OverlayEntry>();
    for (const entry of entries) latest.set(keyString(entry.key), entry);
    const changes = [...latest.values()].sort((a, b) => compareKeys(a.key, b.key));
    // Group the changes by the run they fall in (all reads happen before the first write): a
    // group's ids lie between its run's first id and the next run's, so rewriting the run with its
    // changes, split however it comes, never overlaps another run.
    const groups: { run: LoadedRun | undefined; from: number; to: number }[] = [];
    for (let from = 0; from < changes.length; ) {
      const key = changes[from]!.key;
      const run = this.#floorRun(key);
      const next = this.#nextRunKey(key);
      let to = from + 1;
      while (to < changes.length && (next === undefined || compareKeys(changes[to]!.key, next) < 0)) to++;
      groups.push({ run, from, to });
      from = to;
    }
    let delta = 0;
    for (const { run, from, to } of groups) {
      if (run !== undefined && run.reader.bytes.byteLength <= RUN_BYTES && removalsOnly(changes, from, to)) {
        // Events removed from a plain run (what pruning does): its other events' bytes are copied
        // into the one run that is left, without an entry object per event.
        const reader = run.reader;
        const drop = new Uint8Array(reader.count);
        let dropped = 0;
        for (let c = from, i = 0; c < to && i < reader.count; ) {
          const order = reader.compareKey(i, changes[c]!.key);
          if (order < 0) i++;
          else if (order > 0) c++;
          else {
            drop[i++] = 1;
            c++;
            dropped++;
          }
        }
        if (dropped === 0) continue;
        sink.remove(run.key);
        const value = reader.without(drop);
        const kept = this.#recent.size !== 0 ? ([] as RecentRun[]) : undefined;
        if (value !== undefined) {
          const first = reader.key(drop.indexOf(0));
          put(first, value);
          kept?.push({ key: Buffer.from(first), run: value });
        }
        if (kept !== undefined) this.#recent.replace(run.key, kept);
        delta -= dropped;
        continue;
      }
      const merged = mergeRun(run?.reader, changes, from, to);
      if (run !== undefined) sink.remove(run.key);
      // The runs kept in memory for packing keep mirroring the log (see #recent).
      const kept = run !== undefined && this.#recent.size !== 0 ? ([] as RecentRun[]) : undefined;
      writeRuns(merged, (first, value) => {
        put(first, value);
        kept?.push({ key: Buffer.from(first), run: value });
      });
      if (kept !== undefined) this.#recent.replace(run!.key, kept);
      delta += merged.length - (run?.reader.count ?? 0);
    }
    // (Read from the transaction; without one, the caller reads it once the commit is written.)
    if (readLast) this.#last = this.#readLastKey();
    if (this.#repack.size !== 0) this.#schedulePack();
    return delta;
  }

  /** Hands `entries` (appending: see {@link #appends}) to `put` as new runs; their last id is the log's last. */
  #appendRuns(entries: readonly OverlayEntry[], put: (first: Uint8Array, run: Buffer) => void): void {
    if (entries.length === 0) return;
    writeRuns(entries.map(toRunEntry), put);
    this.#last = copyBytes(entries[entries.length - 1]!.key);
  }

  /** Whether `entries` only store events, in id order, each above every id in LMDB. */
  #appends(entries: readonly OverlayEntry[]): boolean {
    let previous = this.#last;
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i]!;
      if (entry.event === null || (previous !== undefined && compareKeys(entry.key, previous) <= 0)) return false;
      previous = entry.key;
    }
    return true;
  }

  /**
   * Packs, in the background, the runs whose events are all before `time` (the cutoff: events
   * there are final, so their runs rarely change again): plain runs in id order are merged by
   * {@link PACK_BYTES} and compressed (see `run-pack.ts`). The horizon never moves back. Each pack
   * is compressed in a step of its own between events (a setImmediate turn, about 30 µs for a
   * pack of 32 KiB) and written with the next commit (see {@link #takePacks}).
   */
  packBefore(time: number): void {
    // (An id's time is below 2^48: a nominal cutoff past it, a test's clock far in the future,
    // packs everything.)
    time = Math.min(time, 2 ** 48 - 1);
    if (!(time > this.#packHorizonTime) || time <= 0) return;
    this.#packHorizonTime = time;
    this.#packHorizon = idFloor(time);
    this.#schedulePack();
  }

  /**
   * Runs the packing step that is waiting for its turn now (see {@link packBefore}). The database
   * calls it once its cutoff work is done, before a write: with the writer thread taking the
   * commits, this thread is rarely idle between writes, and packing done only in idle turns fell
   * behind (the warehouse's log: 470 packs instead of 520, 0.7 MB more; BENCHMARKS.md, run V).
   */
  packNow(): void {
    if (!this.#packScheduled || this.#packBusy) return;
    this.#packTurn = performance.now();
    void this.#runPackStep();
  }

  /**
   * Commits what is queued, then packs until nothing before the horizon is left to pack (see
   * {@link packBefore}), and commits the packs.
   */
  async packAll(): Promise<void> {
    await this.written();
    let retries = 0;
    for (;;) {
      if (this.#packBusy) {
        await this.#packWork;
        continue;
      }
      const more = await this.#runPackStep();
      let dropped = false;
      if (this.#ready.length !== 0) {
        const droppedBefore = this.packStats.dropped;
        this.#schedule();
        await this.written();
        dropped = this.packStats.dropped !== droppedBefore;
      }
      // A pack its commit dropped (a run it covers changed while it was made: with the writer
      // thread, a step can read runs that a commit in flight then rewrites) is queued to be made
      // again, from what is written now. Without another round, packing everything stopped short
      // of it (a randomized log test, one seed in 60 in thread mode). A few rounds at most: writes
      // going on meanwhile could keep dropping packs, and background packing takes them up later.
      if (!more && !(dropped && retries++ < MAX_PACK_RETRIES)) break;
    }
    if (this.#failure !== undefined) throw await this.#reportedFailure();
  }

  #schedulePack(): void {
    if (this.#packScheduled || this.#closed || this.#packHorizon === undefined) return;
    this.#packScheduled = true;
    setImmediate(() => {
      this.#packScheduled = false;
      this.#packTurn = performance.now();
      void this.#runPackStep();
    });
  }

  /**
   * Starts a packing step unless one is running; one that did something starts the next in the
   * same turn while the turn has taken less than {@link PACK_TURN_MS}, and schedules it otherwise.
   * (One step a turn fell behind once commits no longer left this thread idle for several turns
   * each: the warehouse's log made 291 packs instead of 520 and took 3.4 MB more; see also
   * {@link packNow}. BENCHMARKS.md, run V.)
   */
  #runPackStep(): Promise<boolean> {
    if (this.#packBusy || this.#closed || this.#failure !== undefined || this.#packHorizon === undefined) {
      return Promise.resolve(false);
    }
    this.#packBusy = true;
    const work = this.#packStep().then(
      (more) => {
        this.#packBusy = false;
        if (more && performance.now() - this.#packTurn < PACK_TURN_MS) void this.#runPackStep();
        else if (more) this.#schedulePack();
        return more;
      },
      (error: unknown) => {
        this.#packBusy = false;
        this.#fail(error);
        return false;
      },
    );
    this.#packWork = work;
    return work;
  }

  /**
   * Makes one pack (runs written behind the frontier first, then the frontier's next
   * {@link PACK_BYTES}) and queues it for the next commit. Resolves to whether to go on: there may
   * be more to pack and the queue has room.
   */
  async #packStep(): Promise<boolean> {
    if (this.#ready.length >= MAX_READY_PACKS) return false;
    let stretch = this.#repackStretch();
    if (stretch === undefined) {
      const fromMemory = this.#memoryStretch();
      if (fromMemory === null) return false; // waiting for a full pack
      stretch = fromMemory ?? this.#frontierStretch();
    }
    if (stretch === undefined) return false;
    const { sources, through } = stretch;
    // The frontier is claimed now, so that the next step reads on after it (and the runs kept in
    // memory up to it are let go: a commit rewriting the pack would not replace them).
    if (through !== undefined) {
      this.#packedThrough = through;
      this.#recent.dropThrough(through);
    }
    let packed: Buffer | undefined;
    if (sources.length !== 0) {
      const plain = concatRuns(sources.map((source) => source.value));
      this.#claims.add(stretch);
      packed = pack(plain);
      if (packed === undefined) this.#forgetClaim(stretch);
    }
    // Nothing worth packing (one large event's run, or runs that do not compress) behind the
    // frontier: nothing to write.
    if (packed === undefined && through === undefined) return true;
    this.#ready.push({ stretch, packed });
    return this.#ready.length < MAX_READY_PACKS;
  }

  /**
   * Ready packs ride with the next commit: no transaction or sync of their own, and no write the
   * application did not cause (a database whose writes went quiet writes nothing more until its
   * next write or its close, which takes them).
   *
   * Takes the ready packs for the commit being handed to LMDB now, and returns what writes them
   * inside its transaction (undefined when there are none). A pack whose ids a queued or in-flight
   * write covers (this commit's too), or whose runs that transaction finds changed, is dropped and
   * its runs queued to be packed again.
   */
  #takePacks(): TakenPacks | undefined {
    if (this.#ready.length === 0) return undefined;
    const ready = this.#ready;
    this.#ready = [];
    const taken: { stretch: PackStretch; packed: Buffer }[] = [];
    let through: Uint8Array | undefined;
    for (const { stretch, packed } of ready) {
      if (stretch.through !== undefined) through = stretch.through;
      if (packed === undefined) continue;
      if (!this.#mayPack(stretch)) {
        this.#dropPack(stretch);
        continue;
      }
      taken.push({ stretch, packed });
    }
    this.#schedulePack();
    return {
      inTransaction: taken.length !== 0,
      through,
      write: (runs, to, putMeta, touched) => {
        for (const { stretch, packed } of taken) {
          // Inside the commit's transaction, after its own writes: the runs must be as they were
          // taken, or the pack would undo a write that reached them meanwhile (an event inserted
          // into the last of them once the run after it was emptied, say), and no other run may
          // have come between them (a large event's run of its own, its neighbour rewritten as it
          // was): the pack would cover it, and runs would overlap.
          if (!sameRuns(runs, stretch.sources) || (touched !== undefined && touchesStretch(touched, stretch.sources))) {
            this.#dropPack(stretch);
            continue;
          }
          for (const { key } of stretch.sources) to.remove(key);
          to.put(stretch.sources[0]!.key, packed);
          const stats = this.packStats;
          stats.packs++;
          if (stretch.fromMemory === true) stats.fromMemory++;
          stats.runs += stretch.sources.length;
          for (const { value } of stretch.sources) stats.plainBytes += value.byteLength;
          stats.packedBytes += packed.byteLength;
        }
        if (through !== undefined) putMeta(META_PACKED_THROUGH, through);
      },
      // Written or not (a failed commit), their runs are free for other packs again.
      done: () => {
        for (const { stretch } of taken) this.#forgetClaim(stretch);
      },
    };
  }

  /** A pack not written: its runs are packed again later. */
  #dropPack(stretch: PackStretch): void {
    this.packStats.dropped++;
    this.#forgetClaim(stretch);
    for (const { key } of stretch.sources) this.#repack.set(keyString(key), key);
  }

  /** Keeps an appended run for packing (see {@link #recent}). */
  #remember(first: Uint8Array, run: Buffer): void {
    if (this.#packHorizon !== undefined) this.#recent.append(Buffer.from(first), run);
  }

  /**
   * Whether `stretch` may still be packed as far as this thread knows: no queued or in-flight
   * write is to the ids its runs cover (a cheap first check; the runs are compared with what LMDB
   * holds inside the transaction that writes the pack).
   */
  #mayPack(stretch: PackStretch): boolean {
    const { sources, next } = stretch;
    return !this.#overlay.hasIn(sources[0]!.key, next);
  }

  /** The runs of `stretch` are free for other packs again. */
  #forgetClaim(stretch: PackStretch): void {
    this.#claims.delete(stretch);
  }

  /** Whether the run `key` is one of the runs of a pack being made, ready or being written. */
  #claimed(key: Uint8Array): boolean {
    for (const { sources, last } of this.#claims) {
      if (compareKeys(key, sources[0]!.key) >= 0 && compareKeys(key, last) <= 0) return true;
    }
    return false;
  }

  /** Plain runs behind the frontier that were written in this session, from the first of them. */
  #repackStretch(): PackStretch | undefined {
    const through = this.#packedThrough;
    while (through !== undefined && this.#repack.size !== 0) {
      let start: Uint8Array | undefined;
      for (const key of this.#repack.values()) if (start === undefined || compareKeys(key, start) < 0) start = key;
      this.#repack.delete(keyString(start!));
      const sources: PackSource[] = [];
      let bytes = 0;
      let next: Buffer | undefined;
      for (const { key, value } of this.#runs.getRange({ start: asBuffer(start!) })) {
        if (
          compareKeys(key, through) > 0 ||
          isPacked(value) ||
          value.byteLength > RUN_BYTES ||
          (sources.length !== 0 && bytes + value.byteLength > this.packBytes) ||
          // Part of a pack being made or written: packed already if that one is written.
          this.#claimed(key)
        ) {
          next = Buffer.from(key);
          break;
        }
        const source = plainSource(key, value);
        sources.push(source);
        bytes += value.byteLength;
        this.#repack.delete(keyString(source.key));
      }
      if (sources.length !== 0) return { sources, next, through: undefined, last: lastId(sources) };
    }
    return undefined;
  }

  /**
   * The frontier's next pack from the runs kept as appended (see {@link #recent}), when the run
   * right after the frontier is the first of them: null when they are but not a full pack of them
   * is before the horizon yet; undefined when they cannot tell (then LMDB is read).
   */
  #memoryStretch(): PackStretch | null | undefined {
    const recent = this.#recent;
    const through = this.#packedThrough;
    // Those at or behind the frontier were packed (or passed) by reading LMDB.
    if (through !== undefined) recent.dropThrough(through);
    const head = recent.first()?.key;
    if (head === undefined) return undefined;
    const after = through === undefined ? this.#firstRunKey() : this.#nextRunKey(through);
    if (after === undefined || compareKeys(after, head) !== 0) return undefined;
    const horizon = this.#packHorizon!;
    const sources: PackSource[] = [];
    let bytes = 0;
    for (const { key, run } of recent) {
      if (run.byteLength > RUN_BYTES) return sources.length === 0 ? undefined : this.#memoryPack(sources, key);
      if (sources.length !== 0 && bytes + run.byteLength > this.packBytes) return this.#memoryPack(sources, key);
      const reader = new RunReader(new Uint8Array(run.buffer, run.byteOffset, run.byteLength), key);
      if (compareKeys(reader.key(reader.count - 1), horizon) >= 0) return null;
      sources.push({ key, value: run, reader });
      bytes += run.byteLength;
    }
    return null;
  }

  /** A pack of `sources` from {@link #recent}, the run `next` after them. */
  #memoryPack(sources: PackSource[], next: Buffer): PackStretch {
    const last = lastId(sources);
    return { sources, next, through: last, last, fromMemory: true };
  }

  /** The first run key, or undefined when the log holds none. */
  #firstRunKey(): Buffer | undefined {
    for (const runKey of this.#runs.getKeys({ limit: 1 }) as Iterable<Buffer>) return Buffer.from(runKey);
    return undefined;
  }

  /**
   * The next {@link PACK_BYTES} of plain runs after the frontier, when so many are before the
   * horizon (a pack waits until it is full); runs it cannot pack (packed already, or one large
   * event's) move the frontier past them.
   */
  #frontierStretch(): PackStretch | undefined {
    const horizon = this.#packHorizon!;
    const start = this.#packedThrough;
    const sources: PackSource[] = [];
    let bytes = 0;
    let through: Uint8Array | undefined;
    /** The frontier past runs skipped before the first source. */
    let skipped: Uint8Array | undefined;
    for (const { key, value } of this.#runs.getRange(start === undefined ? {} : { start: asBuffer(start) })) {
      if (start !== undefined && compareKeys(key, start) <= 0) continue;
      if (sources.length !== 0 && bytes + value.byteLength > this.packBytes) {
        return { sources, next: Buffer.from(key), through: through!, last: through! };
      }
      if (isPacked(value) || value.byteLength > RUN_BYTES) {
        if (sources.length !== 0) return { sources, next: Buffer.from(key), through: through!, last: through! };
        const reader = readRun(key, value);
        const last = reader.key(reader.count - 1);
        if (compareKeys(last, horizon) >= 0) break;
        skipped = copyBytes(last);
        continue;
      }
      const source = plainSource(key, value);
      const last = source.reader.key(source.reader.count - 1);
      if (compareKeys(last, horizon) >= 0) break;
      sources.push(source);
      bytes += value.byteLength;
      through = copyBytes(last);
    }
    return skipped === undefined ? undefined : { sources: [], next: undefined, through: skipped, last: skipped };
  }

  /**
   * Resolves once everything queued so far is committed and flushed to disk. Rejects (and the log
   * refuses further writes) if a commit failed.
   */
  async written(): Promise<void> {
    this.#commit();
    try {
      // (A commit deferred behind the writer thread's comes after every one made before it.)
      await (this.#deferred?.promise ?? this.#lastWrite);
      await this.#env.flushed;
    } catch (error) {
      // Reported below, as the engine's error.
      this.#fail(error);
    }
    // A commit made on this thread is done before this line: without a turn of the event loop
    // here, an app writing in a loop (`for (…) await db.append(…)`) would never let it serve
    // I/O meanwhile, and a replicating peer's writes would leave in one burst. (A swarm of 50
    // peers writing so relayed 1.15–1.20 envelope copies per delivery without the turn, 1.01–1.02
    // with it, as with asynchronous commits: BENCHMARKS.md, run O.)
    if (this.commitMode === 'sync') await new Promise((resolve) => setImmediate(resolve));
    if (this.#failure !== undefined) throw await this.#reportedFailure();
  }

  /**
   * Records the first failed write. lmdb-js rejects a failed commit with a generic error and the
   * system's error in a second, rejected promise (`commitError`), which nothing else observes: left
   * alone, it would end the process as an unhandled rejection.
   */
  #fail(error: unknown): void {
    // Every failed commit's promise is observed, not only the first's: lmdb-js makes a new one
    // for a commit that fails after the last was rejected (a write that met a damaged page, then
    // the commit of the close), and an unobserved one ended the process.
    const cause = commitCause(error);
    if (this.#failure !== undefined) return;
    this.#failure = error;
    this.#failureCause = cause;
  }

  /** The first failed write as the engine reports it (see {@link #describeFailure}). */
  async #reportedFailure(): Promise<NoatunError> {
    const cause = await this.#failureCause;
    this.#failureError ??= this.#describeFailure(cause ?? this.#failure);
    return this.#failureError;
  }

  /**
   * `DISK_FULL` when the system said so (ENOSPC, EDQUOT), or when the write failed with another
   * error (LMDB reports EIO for a full disk on some file systems) while the log's file system has
   * less than 16 MiB free; `CORRUPT_FILE` when LMDB found a page of the log damaged;
   * `SYSTEM_CALL_FAILED` otherwise. Each names the error.
   */
  #describeFailure(cause: unknown): NoatunError {
    const e = cause as { code?: unknown; errno?: unknown } | null;
    const errno = typeof e?.code === 'number' ? e.code : typeof e?.errno === 'number' ? Math.abs(e.errno) : 0;
    let free: number | undefined;
    try {
      const stats = fs.statfsSync(this.path);
      free = stats.bavail * stats.bsize;
    } catch {}
    const detail = `writing the event log failed (${String(cause)}${free === undefined ? '' : `; ${free} bytes free on its file system`}); the database refuses further writes until it is reopened, which keeps every acknowledged write`;
    if (isNoSpaceErrno(errno) || (free !== undefined && free < LOW_SPACE_BYTES)) {
      return new DiskFullError(this.path, detail, { cause });
    }
    // A write that met a damaged page of the log (LMDB keeps no checksums: it finds a page damaged
    // only when it follows a page number that cannot be) is the file's damage, not the system's.
    return logDamageFrom(cause, this.path) ?? new NoatunError(ErrorCode.SYSTEM_CALL_FAILED, detail, { cause });
  }

  #assertWritable(): void {
    if (this.#closed) throw new NoatunError(ErrorCode.CLOSED, 'the database is closed');
    if (this.#failure !== undefined) throw this.#failureError ?? this.#describeFailure(this.#failure);
  }

  /** Queued entries from `start` (inclusive; all when omitted), in id order. */
  #pendingFrom(start: Uint8Array | undefined): OverlayEntry[] {
    const pending: OverlayEntry[] = [];
    for (const entry of this.#overlay.values()) {
      if (start === undefined || compareKeys(entry.key, start) >= 0) pending.push(entry);
    }
    return pending.sort((a, b) => compareKeys(a.key, b.key));
  }

  /**
   * The events in LMDB from `start` (inclusive; the beginning when omitted), each as its run and
   * index. Each run is a copy of its own (see `loadRun`), so the views stay valid while the caller
   * reads the log meanwhile.
   */
  *#committed(start: Uint8Array | undefined, checked = false): Generator<[RunReader, number]> {
    let from: Uint8Array | undefined = start;
    if (start !== undefined) {
      for (const runKey of this.#runs.getKeys({ start: asBuffer(start), reverse: true, limit: 1 }) as Iterable<Buffer>) {
        from = Buffer.from(runKey);
      }
    }
    for (const { key, value } of this.#runs.getRange(from === undefined ? {} : { start: asBuffer(from) })) {
      const reader = loadRun(key, value).reader;
      if (checked) reader.checkAll();
      for (let i = start === undefined ? 0 : reader.lowerBound(start); i < reader.count; i++) yield [reader, i];
    }
  }

  /**
   * Stored events in id order from `start` (inclusive; the beginning when omitted), including
   * queued ones. Each is the caller's own copy; do not write to the log while iterating. With
   * `checked`, each run's whole table is checked as it is read (`RunReader.checkAll`): a run
   * whose table is damaged throws `CORRUPT_FILE` naming it.
   */
  *range(start?: Uint8Array, checked = false): Generator<StoredEvent> {
    const pending = this.#pendingFrom(start);
    let p = 0;
    for (const [reader, i] of this.#committed(start, checked)) {
      const key = reader.key(i);
      while (p < pending.length && compareKeys(pending[p]!.key, key) < 0) {
        const event = pending[p++]!.event;
        if (event !== null) yield owned(event);
      }
      if (p < pending.length && compareKeys(pending[p]!.key, key) === 0) {
        const event = pending[p++]!.event;
        if (event !== null) yield owned(event);
        continue;
      }
      yield { key: copyBytes(key), ordinal: reader.ordinal(i), envelope: copyBytes(reader.envelope(i)) };
    }
    while (p < pending.length) {
      const event = pending[p++]!.event;
      if (event !== null) yield owned(event);
    }
  }

  /**
   * Ids of stored events in order (committed plus queued) from `start` (inclusive; the beginning
   * when omitted), without copying their envelopes. Each id is the caller's own copy.
   */
  *keys(start?: Uint8Array): Generator<Uint8Array> {
    const pending = this.#pendingFrom(start);
    let p = 0;
    for (const [reader, i] of this.#committed(start)) {
      const key = reader.key(i);
      while (p < pending.length && compareKeys(pending[p]!.key, key) < 0) {
        if (pending[p]!.event !== null) yield copyBytes(pending[p]!.key);
        p++;
      }
      if (p < pending.length && compareKeys(pending[p]!.key, key) === 0) {
        if (pending[p]!.event !== null) yield copyBytes(pending[p]!.key);
        p++;
        continue;
      }
      yield copyBytes(key);
    }
    for (; p < pending.length; p++) if (pending[p]!.event !== null) yield copyBytes(pending[p]!.key);
  }

  /** The id bytes of the last stored event (highest id), or undefined when empty. */
  lastKey(): Uint8Array | undefined {
    // Nothing queued or in flight: the last id the commits kept track of is LMDB's.
    if (this.#overlay.size === 0 && this.#committing === 0) return this.#last === undefined ? undefined : copyBytes(this.#last);
    let last = this.#overlay.highest(storesEvent);
    // The highest committed id not queued for removal (almost always the last run's last).
    const overlay = this.#overlay;
    search: for (const { key, value } of this.#runs.getRange({ reverse: true })) {
      const reader = loadRun(key, value).reader;
      for (let i = reader.count - 1; i >= 0; i--) {
        const id = reader.key(i);
        const queued = overlay.get(id);
        if (queued !== undefined && queued.event === null) continue;
        if (last === undefined || compareKeys(id, last) > 0) last = id;
        break search;
      }
    }
    return last === undefined ? undefined : copyBytes(last);
  }

  /** Number of stored events (committed plus queued). */
  count(): number {
    return this.#count + this.#countCommitting + this.#countQueued;
  }

  /** Bytes of the LMDB file on disk. */
  get byteLength(): number {
    try {
      return fs.statSync(this.path).size;
    } catch {
      return 0;
    }
  }

  /** Waits for queued writes, then closes. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    // Packs made since the last commit go with this one.
    // (And metadata queued without asking for a commit: see startCommit.)
    if ((this.#ready.length !== 0 || this.#pendingMeta.size !== 0) && this.#failure === undefined) this.#schedule();
    this.#commit();
    this.#closed = true;
    try {
      await (this.#deferred?.promise ?? this.#lastWrite);
      // The last pack step's promise settles (steps compress synchronously, and none starts once
      // the log is closed: packs ready before the commit above went with it).
      await this.#packWork;
      await this.#env.flushed;
    } catch (error) {
      this.#fail(error);
    }
    if (this.#failure === undefined) {
      await this.#writer?.close();
      await this.#env.close();
      return;
    }
    // After a failed commit lmdb-js never settles that commit's flush, and its close waits for it:
    // the environment is closed without waiting (its files are released when it is done).
    void this.#writer?.close().catch(() => {});
    void this.#env.close().catch(() => {});
    throw await this.#reportedFailure();
  }
}

/** The per-stride hashes as saved in the log's metadata. */
interface SavedStrides {
  readonly strideMs: number;
  readonly floor: number;
  readonly hashes: readonly (readonly [number, Uint8Array])[];
}

/** The saved per-stride hashes, or null once marked stale (see `EventLog.forgetStrides`). */
const SAVED_STRIDES: MetaShape<SavedStrides | null> = {
  is: (value: unknown): value is SavedStrides | null => {
    if (value === null) return true;
    if (typeof value !== 'object') return false;
    const saved = value as Record<string, unknown>;
    return (
      typeof saved.strideMs === 'number' &&
      typeof saved.floor === 'number' &&
      Array.isArray(saved.hashes) &&
      saved.hashes.every((entry: unknown) => Array.isArray(entry) && entry.length === 2 && typeof entry[0] === 'number' && entry[1] instanceof Uint8Array && entry[1].byteLength === 16)
    );
  },
  what: 'per-stride hashes (or null)',
};

/**
 * Awaits a write of lmdb-js made outside the log's commits (at open: a format mark, runs put in
 * order, a conversion). A failed commit rejects with a generic error whose `commitError` promise
 * holds the system's error: that one is thrown instead (the open tells a full disk by it), and the
 * promise is observed (left alone, its rejection ended the process).
 */
async function systemCause<T>(write: Promise<T>): Promise<T> {
  try {
    return await write;
  } catch (error) {
    throw await commitCause(error);
  }
}

/**
 * The error behind a failed write of lmdb-js: the system's, from the `commitError` promise of a
 * failed commit (observed here, so its rejection never goes unhandled), else the error itself.
 */
function commitCause(error: unknown): Promise<unknown> {
  const inner = (error as { commitError?: unknown } | null)?.commitError;
  return inner instanceof Promise ? inner.then(() => error, (cause: unknown) => cause) : Promise.resolve(error);
}

/** A damaged metadata value, briefly, for the error. */
function describeMeta(value: unknown): string {
  if (value === null) return 'null';
  if (value instanceof Uint8Array) return `${value.byteLength} bytes`;
  if (Array.isArray(value)) return `a list of ${value.length}`;
  return typeof value === 'object' ? 'an object' : `${typeof value} ${String(value).slice(0, 40)}`;
}

/**
 * XORs of 16-byte ids per stride of time (stride `i` covers `[i * strideMs, (i + 1) * strideMs)`),
 * of ids dated at or after `floor` only.
 */
class StrideHashes {
  readonly #strideMs: number;
  #floor: number;
  readonly #hashes: Map<number, Uint8Array>;
  /** Changed since last saved. */
  changed = false;

  constructor(strideMs: number, floor: number, hashes: SavedStrides['hashes']) {
    this.#strideMs = strideMs;
    this.#floor = floor;
    this.#hashes = new Map(hashes.map(([stride, hash]) => [stride, Uint8Array.from(hash)]));
  }

  /** XORs `id` into its stride's hash (an event stored or removed), unless dated before the floor. */
  toggle(id: Uint8Array): void {
    const time = idTimestamp(id);
    if (time < this.#floor) return;
    const stride = Math.floor(time / this.#strideMs);
    let hash = this.#hashes.get(stride);
    if (hash === undefined) {
      hash = new Uint8Array(16);
      this.#hashes.set(stride, hash);
    }
    for (let i = 0; i < 16; i++) hash[i]! ^= id[i]!;
    this.changed = true;
  }

  hashBefore(time: number): Uint8Array {
    const hash = new Uint8Array(16);
    for (const [stride, strideHash] of this.#hashes) {
      if (stride * this.#strideMs < time) for (let i = 0; i < 16; i++) hash[i]! ^= strideHash[i]!;
    }
    return hash;
  }

  hashAt(time: number): Uint8Array {
    return Uint8Array.from(this.#hashes.get(Math.floor(time / this.#strideMs)) ?? new Uint8Array(16));
  }

  dropBefore(time: number): void {
    for (const stride of [...this.#hashes.keys()]) if (stride * this.#strideMs < time) this.#hashes.delete(stride);
    this.#floor = Math.max(this.#floor, time);
    this.changed = true;
  }

  /** A copy to save (the saved value must not change with later events). */
  save(): SavedStrides {
    this.changed = false;
    return {
      strideMs: this.#strideMs,
      floor: this.#floor,
      hashes: [...this.#hashes].map(([stride, hash]) => [stride, hash.slice()] as const),
    };
  }
}

/** File descriptors an LMDB environment opens (its data, lock and meta files), and one spare. */
const ENV_DESCRIPTORS = 4;

/**
 * Opens the LMDB environment of the log file.
 *
 * lmdb-js (3.5.6) frees an environment twice when LMDB's open fails after it has registered the
 * environment, and the process dies of it (SIGSEGV). Running out of file descriptors
 * (`ulimit -n`) does that, and so does a damaged file. So the descriptors the open needs are
 * taken and given back first, and the file's meta pages are checked (see `log-file-check.ts`):
 * either is an error here instead of a crash there.
 */
function openEnv(file: string): RootDatabase {
  ensureDescriptors(file, ENV_DESCRIPTORS);
  checkLogFile(file);
  try {
    return open({ path: file, compression: false, maxDbs: 8, eventTurnBatching: false });
  } catch (cause) {
    throw new NoatunError(ErrorCode.CORRUPT_FILE, `cannot open the event log ${file}: ${(cause as Error).message}`, {
      cause,
    });
  }
}

/** Throws `SYSTEM_CALL_FAILED` (EMFILE or ENFILE) when fewer than `count` file descriptors are free. */
function ensureDescriptors(file: string, count: number): void {
  const taken: number[] = [];
  try {
    for (let i = 0; i < count; i++) taken.push(fs.openSync(path.dirname(file), 'r'));
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    if (e.code === 'EMFILE' || e.code === 'ENFILE') {
      throw new SystemCallError(
        'open',
        Math.abs(e.errno ?? 0),
        `${e.code}: no file descriptor left to open the event log (close files, or raise the limit: ulimit -n)`,
        file,
        { cause: error },
      );
    }
    // Anything else is for LMDB's own open to meet and report.
  } finally {
    for (const fd of taken) fs.closeSync(fd);
  }
}

/** The name of the compacted copy of the log while it is written (next to the log). */
const COMPACT_SUFFIX = '.compact';

/**
 * Replaces the log file with a compacted copy and closes `env`. After a conversion the pages of
 * format 1 are free but still in the file (LMDB files never shrink); the copy leaves them out. The
 * copy is flushed before it replaces the log by a rename, so a crash leaves one whole log or the
 * other (and a stray copy, removed at the next open).
 */
async function compactInPlace(file: string, env: RootDatabase): Promise<void> {
  const copy = file + COMPACT_SUFFIX;
  try {
    await env.backup(copy, true);
  } finally {
    await env.close();
  }
  const fd = fs.openSync(copy, 'r+');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(copy, file);
  const dir = fs.openSync(path.dirname(file), 'r');
  try {
    fs.fsyncSync(dir);
  } finally {
    fs.closeSync(dir);
  }
}

/**
 * A queued event as a run entry: the stored event itself, which has the id (the entry's key), the
 * ordinal and the envelope a run holds (views into the writer's buffer), so no object per event.
 */
function toRunEntry(entry: OverlayEntry): RunEntry {
  return entry.event!;
}

/**
 * A run LMDB handed out, its table checked. lmdb-js hands out binary values as copies of their
 * own (never views of its map or of a reused buffer), so the run is read in place, through a plain
 * Uint8Array (views of it are cheaper to make than views of a Buffer); the key is copied (16 bytes).
 */
function loadRun(key: Uint8Array, value: Uint8Array): LoadedRun {
  const ownKey = Buffer.from(key);
  return { key: ownKey, reader: readRun(ownKey, value) };
}

/** A stored run value read as a plain run: in place, or unpacked when packed (see `run-pack.ts`). */
function readRun(key: Uint8Array, value: Uint8Array): RunReader {
  const plain = isPacked(value) ? unpack(value, key) : new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  return new RunReader(plain, key);
}

/** Whether `changes[from, to)` only remove events. */
function removalsOnly(changes: readonly OverlayEntry[], from: number, to: number): boolean {
  for (let c = from; c < to; c++) if (changes[c]!.event !== null) return false;
  return true;
}

/**
 * The events of `run` (none when undefined) with `changes[from, to)` applied: an entry with an
 * event stores it (in place of one with the same id), a removal drops the id. In id order.
 */
function mergeRun(run: RunReader | undefined, changes: readonly OverlayEntry[], from: number, to: number): RunEntry[] {
  const merged: RunEntry[] = [];
  const count = run?.count ?? 0;
  let i = 0;
  let c = from;
  while (i < count || c < to) {
    const order = i >= count ? 1 : c >= to ? -1 : compareKeys(run!.key(i), changes[c]!.key);
    if (order < 0) {
      merged.push(run!.entry(i++));
      continue;
    }
    if (order === 0) i++;
    const change = changes[c++]!;
    if (change.event !== null) merged.push(toRunEntry(change));
  }
  return merged;
}

/** A format-1 value (the ordinal, then the envelope), or undefined when it cannot hold an event. */
function readFormat1(key: Uint8Array, value: Uint8Array): StoredEvent | undefined {
  if (value.length < ORDINAL_BYTES + 17) return undefined;
  const ordinal = value[0]! | (value[1]! << 8) | (value[2]! << 16) | (value[3]! * 2 ** 24);
  return { key: Uint8Array.from(key), ordinal, envelope: Uint8Array.prototype.slice.call(value, ORDINAL_BYTES) };
}

/**
 * A queued event as readers get it: its key and envelope are views into the batch's buffer, which
 * is the value being written, so readers get copies (as they do of committed events), which they
 * may keep and change. The decoded form is the writer's own and is shared.
 */
/** Bytes of an id that name an event together with its ordinal: the timestamp and the sequence. */
export const ID_PREFIX_BYTES = 8;

/**
 * Whether `runs` holds exactly `sources` from the first of them to the last: the same keys, none
 * between them, and the same bytes.
 */
function sameRuns(runs: LmdbDatabase<Buffer, Buffer>, sources: readonly PackSource[]): boolean {
  const last = sources[sources.length - 1]!.key;
  let i = 0;
  for (const key of runs.getKeys({ start: asBuffer(sources[0]!.key) }) as Iterable<Buffer>) {
    if (compareKeys(key, last) > 0) break;
    const source = sources[i];
    if (source === undefined || compareKeys(key, source.key) !== 0) return false;
    i++;
  }
  return i === sources.length && sources.every(({ key, value }) => value.equals(runs.getBinary(asBuffer(key)) ?? EMPTY));
}

/** Whether a key in `touched` lies within the runs of `sources` (from the first's key to the last's). */
function touchesStretch(touched: readonly Uint8Array[], sources: readonly PackSource[]): boolean {
  const first = sources[0]!.key;
  const last = sources[sources.length - 1]!.key;
  return touched.some((key) => compareKeys(key, first) >= 0 && compareKeys(key, last) <= 0);
}

/** The run a batch of lookups read last (see `EventLog.keysOf`). */
interface RunCache {
  /** The run read from LMDB last. */
  run: CachedRun | undefined;
  /** The run kept in memory looked at last. */
  kept?: CachedRun;
}

/** A run with its first and last ids. */
interface CachedRun {
  readonly reader: RunReader;
  readonly first: Uint8Array;
  readonly last: Uint8Array;
}

function cachedRun(reader: RunReader): CachedRun {
  return { reader, first: reader.key(0), last: reader.key(reader.count - 1) };
}

/** The run of `cached` when `key` lies within its ids, else undefined. */
function covering(cached: CachedRun | undefined, key: Uint8Array): RunReader | undefined {
  return cached !== undefined && compareKeys(cached.first, key) <= 0 && compareKeys(key, cached.last) <= 0 ? cached.reader : undefined;
}

/**
 * Reads `reader`'s events backwards from the last at or before `bound` while their ids start with
 * `prefix`: the id of the one with `ordinal` (a copy); null when an id without the prefix ends the
 * search; undefined when every event before `bound` has the prefix (the run before may hold more).
 */
function scanBack(reader: RunReader, bound: Uint8Array, prefix: Uint8Array, ordinal: number): Uint8Array | null | undefined {
  let i = reader.lowerBound(bound);
  if (i < reader.count && reader.compareKey(i, bound) === 0) i++;
  for (let j = i - 1; j >= 0; j--) {
    if (!reader.keyStartsWith(j, prefix)) return null;
    if (reader.ordinal(j) === ordinal) return Uint8Array.from(reader.key(j));
  }
  return undefined;
}

function startsWith(key: Uint8Array, prefix: Uint8Array): boolean {
  for (let b = 0; b < prefix.length; b++) if (key[b] !== prefix[b]) return false;
  return true;
}

/** The greatest id below `key`, or undefined when `key` is all zeros. */
function predecessor(key: Uint8Array): Uint8Array | undefined {
  const out = Uint8Array.from(key);
  for (let b = out.length - 1; b >= 0; b--) {
    if (out[b] !== 0) {
      out[b]!--;
      return out;
    }
    out[b] = 0xff;
  }
  return undefined;
}

function owned(event: StoredEvent): StoredEvent {
  return event.decoded === undefined
    ? { key: copyBytes(event.key), ordinal: event.ordinal, envelope: copyBytes(event.envelope) }
    : { key: copyBytes(event.key), ordinal: event.ordinal, envelope: copyBytes(event.envelope), decoded: event.decoded };
}
