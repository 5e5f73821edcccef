/**
 * The public contract of a `Database`: the options it opens with, what `ingest` and `stats`
 * report, the listener it notifies, and the handles of `append` and `transaction`. (The class is
 * in `database.ts`, which re-exports these.)
 */
import type { Codec } from './codec.js';
import type { InboxLimits } from './inbox.js';
import type { MessageId } from './message-id.js';
import type { ApplyFunction, ProgressCallback } from './projector.js';

/**
 * Methods of a `Database` for the replicator, about received events that wait in memory for their
 * turn to be stored (`IngestResult.deferred`): `[WAITING_COUNT]()` says how many wait (as
 * `stats().deferred`, without the rest of `stats()`); `[WAITING_NEW]()` gives the ids of those that
 * began to wait since its last call, each once. The replicator counts them as held: a session
 * would otherwise ask the peer for them again, once per retry until they are stored. Symbols, so
 * they are no part of the API an application sees.
 */
export const WAITING_COUNT: unique symbol = Symbol('noatun.waitingCount');
/** See {@link WAITING_COUNT}. */
export const WAITING_NEW: unique symbol = Symbol('noatun.waitingNew');

/**
 * An option of `Database.open` for `noatun inspect` (a symbol: no part of the API an application
 * sees): the open records no app name, and refuses with `APP_INVALID` where it would make the view
 * again from the log (the schema changed, or the view is missing or was not closed cleanly)
 * unless the database records the app's name. Inspecting must change nothing, and a database that
 * records no name cannot tell its own app from another: with another app's apply, the view made
 * again was that app's, and pruning (which `inspect` also turns off) removed the events for good.
 */
export const INSPECTING: unique symbol = Symbol('noatun.inspecting');

/** Options of `Database.open`. */
export interface DatabaseOptions<E, R> {
  /** Directory of the database; created if missing. */
  readonly path: string;
  /** Schema of the view's root object. */
  readonly root: R;
  /** The deterministic fold of one event into the view. */
  readonly apply: ApplyFunction<E, R>;
  /**
   * How events become payload bytes.
   * @default MessagePack (msgpackr)
   */
  readonly codec?: Codec<E>;
  /**
   * The clock, in ms since the epoch; tests inject a fake one.
   * @default Date.now
   */
  readonly now?: () => number;
  /**
   * How late an event may arrive (network delay plus offline time) before the past is final.
   * @default 900000 (15 minutes)
   */
  readonly cutoffIntervalMs?: number;
  /**
   * Delete events whose effects were all overwritten (pruning lands with the cutoff).
   * @default true
   */
  readonly autoPrune?: boolean;
  /**
   * Address space reserved for the view file.
   * @default 8 GiB
   */
  readonly maxViewBytes?: number;
  /**
   * Address space reserved for the undo journal (the history a late event rewinds through); it
   * costs no memory. Lower it (and `maxViewBytes`) where address space is scarce.
   * @default 8 GiB
   */
  readonly maxUndoBytes?: number;
  /**
   * Undo history kept at most, in bytes (besides the cutoff, which drops history that is final):
   * a late event older than the history kept is applied by a rebuild of the view from the log,
   * which takes longer. Capped at half of `maxUndoBytes`.
   * @default 256 MiB
   */
  readonly maxUndoHistoryBytes?: number;
  /**
   * The share of time that storing events behind the cutoff may take when they land before
   * applied events (a rewind through the whole undo history, or a rebuild of the view): after such
   * a batch took t, the next may start t × (1 / share − 1) later, and events arriving meanwhile
   * wait in memory (`IngestResult.deferred`), to be stored together. 1 stores them at once,
   * whatever it costs; lower shares keep a flood of old events from taking over the peer.
   * @default 0.1
   */
  readonly lateWorkShare?: number;
  /**
   * How a commit reaches the disk; both are equally durable (a write resolves once LMDB has synced
   * the commit). `'async'`: on the log's writer thread (a worker the database starts at its first
   * write), and a batch is handed to it before it is applied, so the disk's write and sync run
   * while the batch is applied; the event loop runs on meanwhile (a replicator keeps serving its
   * peers), and writes made while a commit is in flight are committed together. `'sync'`: on the
   * calling thread, as SQLite does: the event loop waits for the disk's sync (well under a
   * millisecond on an SSD, more on a slow disk), then takes one turn before the write resolves, so
   * an app writing in a loop still lets it serve I/O between writes. Since the writer thread,
   * `'async'` writes are as fast as `'sync'` ones or faster (0–10% in BENCHMARKS.md, run V).
   * @default 'async'
   */
  readonly commitMode?: 'sync' | 'async';
  /** Progress of long work (rebuilding the view from the log). */
  readonly onProgress?: ProgressCallback;
  /**
   * Applies every local batch a second time in a world with another clock and other random
   * numbers, and refuses it (`NON_DETERMINISTIC_APPLY`, nothing stored) when the results differ;
   * a batch from another peer that differs is reported to `onNonDeterministicApply`. It doubles
   * the cost of applying; meant for development and tests.
   * @default false
   */
  readonly checkDeterminism?: boolean;
  /** Hears about events from other peers whose apply was found not deterministic here. */
  readonly onNonDeterministicApply?: (id: MessageId) => void;
  /**
   * Open even when the schema changed since the view was made and not one stored event applies
   * with the new one (every event fails; the view would be empty). Without it such an open
   * rejects with `SCHEMA_MISMATCH`, since a type change that breaks every event is more likely a
   * mistake than a migration. Beware: an event whose apply fails has no effect, so pruning removes
   * it once it is final; with pruning on, going back to the old schema later finds those events
   * gone from this database (copy the directory first to keep them).
   * @default false
   */
  readonly acceptSchemaChange?: boolean;
  /**
   * The version of `apply`, as the app names it. The view is made by `apply`, and a view made
   * by an earlier `apply` stays as it was when the schema has not changed: change this whenever
   * `apply` gives other results for the same events (a fix, a new rule), and the next open
   * rebuilds the view from the log with the new one. Every peer must then run the new version:
   * peers that apply the same events differently hold different views.
   */
  readonly applyVersion?: string;
  /**
   * Limits on events from other peers: how far ahead of this clock they may be dated, and how many
   * (and how many bytes) may wait for their parents, per sender and in total. See `InboxLimits`.
   */
  readonly inbox?: InboxLimits;
}

/** One stored event as `Database.messages` yields it. */
export interface StoredMessage {
  readonly id: MessageId;
  /** Current parent list (pruning may shorten it). */
  readonly parents: readonly MessageId[];
  /** The encoded payload (decode with the database's codec). */
  readonly payload: Uint8Array;
  /** The envelope's wire form, as `Database.ingest` accepts it. */
  readonly bytes: Uint8Array;
}

/** What `Database.ingest` did with a batch. */
export interface IngestResult {
  /** Newly stored events (including those counted in {@link unparked}). */
  readonly stored: number;
  /** Events already stored (or already waiting here). */
  readonly duplicates: number;
  /** Events waiting for their parents. */
  readonly parked: number;
  /** Parked events (from earlier batches) stored because this batch brought their parents; part of {@link stored}. */
  readonly unparked: number;
  /** Events dated too far ahead of this peer's clock (`inbox.maxClockSkewMs`); not stored. */
  readonly future: number;
  /** Events turned away because parking or the queue of late events was full; not stored. */
  readonly refused: number;
  /**
   * Events behind the cutoff that are costly to store (a rewind or rebuild), queued to be stored
   * together with others when the budget allows (see `Database.ingest`), with the events that
   * need one of them as a parent; stored at the latest by `close()`.
   */
  readonly deferred: number;
}

/** Options of `Database.ingest`. */
export interface IngestOptions {
  /**
   * The peer that sent the batch (its id): parking limits are per sender, and
   * `Database.peerLeft` lets go of what a sender that left had parked.
   */
  readonly peer?: string;
}

/** Counts and sizes from `Database.stats`. */
export interface DatabaseStats {
  /** Events in the log. */
  readonly stored: number;
  /** Events pruned since the database was created. */
  readonly pruned: number;
  /** Stored events whose apply threw (their writes were rolled back): `failures().length`. */
  readonly failedApplies: number;
  /** Update heads. */
  readonly heads: number;
  /** Events waiting for their parents. */
  readonly parked: number;
  /** Events behind the cutoff waiting for the budget to store them (see `Database.ingest`). */
  readonly deferred: number;
  /** Events re-applied after late arrivals since open. */
  readonly reapplied: number;
  /** Full rebuilds of the view since open. */
  readonly rebuilds: number;
  /** Bytes of the log file. */
  readonly logBytes: number;
  /** Bytes of the view in use. */
  readonly viewBytes: number;
  /** Bytes of undo history. */
  readonly undoBytes: number;
  /** How the view was obtained at open: trusted from disk, created, or rebuilt from the log. */
  readonly openedBy: 'clean-load' | 'new' | 'rebuild';
  /** The cutoff time (ms): the past before it is final. */
  readonly cutoffTime: number;
  /**
   * Stored events that deleted data of events still stored (they stay while those do). One whose
   * victims were pruned counts no more: a replay of the stored events finds nothing for it to delete.
   */
  readonly tombstones: number;
  /** Pruning records in the view (one per stored event). */
  readonly records: number;
  /**
   * While events that arrived from other peers behind the cutoff may still be followed by others
   * they concern, pruning is paused: until the cutoff passes this time (ms). 0 when not paused.
   */
  readonly pruningPausedUntil: number;
  /**
   * Where asynchronous commits go (see `DatabaseOptions.commitMode`): `'running'`, the log's
   * writer thread; `'starting'`, lmdb-js's writer until the thread is up (it starts with the first
   * write or ingest, and is up some tens of milliseconds later); `'off'`, before that first write,
   * with `commitMode: 'sync'`, or when the thread could not start.
   */
  readonly writerThread: 'starting' | 'running' | 'off';
}

/** A stored event as `DatabaseListener.stored` hears of it. */
export interface StoredNotice {
  readonly id: MessageId;
  /** The envelope's wire form (do not modify). */
  readonly bytes: Uint8Array;
  /** Appended here (not ingested from another peer). */
  readonly local: boolean;
}

/** Hears about changes to the set of stored events (see `Database.subscribe`). */
export interface DatabaseListener {
  /** Events were stored (and applied). */
  stored?(events: readonly StoredNotice[]): void;
  /** Events left the log: pruned, removed, or dropped as damaged. */
  removed?(ids: readonly Uint8Array[]): void;
}

/** Why an event is (or is not) still stored: see `Database.explain`. */
export interface Explanation {
  readonly id: MessageId;
  /** Whether the event is stored. */
  readonly stored: boolean;
  /** Data items (fields, map entries, list elements) whose current value it wrote. */
  readonly owns: number;
  /** Stored events that read data it wrote: it stays while they do. */
  readonly readBy: MessageId[];
  /** Stored events whose data it read. */
  readonly read: MessageId[];
  /** It deleted data of events still stored ({@link deletedDataOf}): it stays while they do. */
  readonly tombstone: boolean;
  /** Stored events whose data it deleted. */
  readonly deletedDataOf: MessageId[];
  /** Its apply threw (its writes were rolled back); kept until the cutoff passes it. */
  readonly failed: boolean;
  /**
   * When its last datum was overwritten or deleted (ms), or null while it owns data. It can be
   * pruned once the cutoff is past this time.
   */
  readonly overwrittenAt: number | null;
  /** The current cutoff time (ms). */
  readonly cutoffTime: number;
  /** One line per reason it is kept (empty when stored and about to be pruned, or not stored). */
  readonly keptBecause: string[];
}

/**
 * Where a local event goes in time. By default it takes the current time (`now()`); `time` gives
 * another (a backdated event); `before`/`after` place it immediately before or after an existing
 * event with the same timestamp — e.g. an event that pre-empts or undoes another.
 */
export interface AppendOptions {
  /** The event's timestamp in ms since the epoch. */
  readonly time?: number;
  /** Place the event just before this id (same timestamp, next lower sequence value). */
  readonly before?: MessageId;
  /** Place the event just after this id (same timestamp, next higher sequence value). */
  readonly after?: MessageId;
}

/** The transaction handle of `Database.transaction`. */
export interface Transaction<E> {
  /** Adds an event to the transaction; returns its id at once. */
  append(event: E, options?: AppendOptions): MessageId;
}
