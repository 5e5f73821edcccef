/**
 * The Database: the public face of the engine. It stores events durably in the log, projects
 * them into the view in id order, and answers queries against the view.
 *
 * @example
 * const db = await Database.open({ path: 'company-db', root: Company, apply(event, root) {
 *   root.totalSalary += event.salary;
 * } });
 * await db.append({ name: 'Andersen', salary: 25 });
 * db.read((root) => root.totalSalary); // 25
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { assertSupportedNode, diskFullFrom, ErrorCode, NoatunError, quote } from '../errors.js';
import { makeDirectoriesOrRefuse } from '../directories.js';
import { DEFAULT_MAX_JOURNAL_BYTES, DEFAULT_MAX_VIEW_BYTES } from '../view/constants.js';
import { type InspectOptions, inspectView, type ObjectNode } from '../view/inspect.js';
import type { ObjectSchema, View } from '../view/schema.js';
import { untracked } from '../view/tracking.js';
import { describeValue } from '../view/composite.js';
import { checkViewOptions, MaterializedView } from '../view/view.js';
import { isAsyncResult } from './async-result.js';
import { RecFlag } from './bookkeeping.js';
import { type Codec, type Copied, messagePackCodec } from './codec.js';
import {
  DEFAULT_CUTOFF_INTERVAL_MS,
  DEFAULT_MAX_UNDO_HISTORY_BYTES,
  REBUILD_DUTY_CYCLE,
} from './constants.js';
import type { CutoffState } from './cutoff.js';
import {
  type AppendOptions,
  type DatabaseListener,
  type DatabaseOptions,
  type DatabaseStats,
  type Explanation,
  type IngestOptions,
  type IngestResult,
  type StoredMessage,
  type Transaction,
  INSPECTING,
  WAITING_COUNT,
  WAITING_NEW,
} from './database-contract.js';
import { lockDirectory } from './directory-lock.js';
import {
  DEFAULT_ENVELOPE_LIMITS,
  decodeEnvelopes,
  type Envelope,
  encodeEnvelope,
  encodeEnvelopeInto,
  envelopeSize,
  mintEnvelope,
  readEnvelopeUnchecked,
  withParents,
} from './envelope.js';
import { Finality } from './finality.js';
import { Inbox, LOCAL_SOURCE, resolveInboxLimits } from './inbox.js';
import { LateQueue } from './late-queue.js';
import { checkClock, checkCodec, checkOptionKinds, clockTime, idBytes, placement, timeOutOfRange } from './database-options.js';
import { EventLog, type StoredEvent } from './log.js';
import { MetaShape } from './meta-shape.js';
import { logDamageFrom } from './log-file-check.js';
import { compareIdBytes, FRESH_SEQUENCE_MIN, IdMinter, idFloor, MAX_TIMESTAMP, MessageId } from './message-id.js';
import {
  ApplyFailedError,
  type ApplyFailure,
  EngineWord,
  describeFailure,
  isEnvironmentFailure,
  Projector,
  UnconfirmedBatchError,
  ViewRestoreError,
} from './projector.js';

const META_NEXT_ORDINAL = 'nextOrdinal';
const META_HEADS = 'heads';
const META_LOG_ID = 'logId';
/** The name of the app whose events the log holds (see `refuseOtherApp`). */
const META_APP_NAME = 'appName';
const META_PRUNED = 'pruned';
const META_COMPACTED_BYTES = 'compactedBytes';
const META_PRUNED_AT_COMPACTION = 'prunedAtCompaction';
/**
 * The ordinals (first, last) of a batch written to the log before it was applied, and 1 for a
 * local one (0 for a peer's), until the next commit (see {@link Database.open}); null otherwise.
 */
const META_UNCONFIRMED = 'unconfirmed';
/** The view is compacted (rebuilt) only past this size (see `#compactionDue`). */
const MIN_COMPACT_BYTES = 8 * 2 ** 20;
/**
 * How far behind the nominal cutoff the log packs its runs (see `EventLog.packBefore`). At the
 * cutoff: packing runs inside the cutoff interval too (a lag of minus the interval) left the
 * warehouse benchmark's database larger, 53.2 -> 57.1-58.2 MB, and its writes slower, as pruning
 * unpacked what was just packed (BENCHMARKS.md, run Q).
 */
const PACK_LAG_MS = 0;
/** How long the view may stay dirty after the last write before it is flushed and marked clean. */
const CHECKPOINT_DELAY_MS = 1000;

/** Whether two ids are the same (the same object, as in a local chain, or the same bytes). */
function sameId(a: MessageId, b: MessageId): boolean {
  return a === b || compareIdBytes(a.bytes, b.bytes) === 0;
}

function keyOf(id: MessageId): string {
  return id.key;
}

/** An embedded, event-sourced database with a memory-mapped view. */
export class Database<E, R extends ObjectSchema<unknown>> {
  readonly path: string;
  readonly #options: DatabaseOptions<E, R>;
  readonly #log: EventLog;
  readonly #projector: Projector<E, R>;
  readonly #codec: Codec<E>;
  readonly #now: () => number;
  readonly #minter = new IdMinter();
  readonly #heads = new Map<string, MessageId>();
  /** Events from other peers waiting for their parents, and the sorting of incoming batches. */
  readonly #inbox: Inbox;
  /** Costly late events waiting for the re-application budget (see `late-queue.ts`). */
  readonly #late: LateQueue;
  readonly #discarded: MessageId[] = [];
  /**
   * Set when the view could not be put back after a failed projection (it is behind the log), or
   * when a commit of the log failed (a full disk: the view and the memory hold batches the log
   * does not): every later call throws this until the database is reopened, which brings the view
   * back to what the log holds (rebuilding it, with a larger `maxViewBytes` if that was the cause).
   */
  #broken: NoatunError | undefined;
  readonly #releaseLock: () => void;
  #nextOrdinal: number;
  /** The cutoff, its hashes, the pruning hold and the ids pruned lately. */
  readonly #finality: Finality;
  /** View bytes in use after the last rebuild: auto-compaction compares against it. */
  #compactedBytes: number;
  readonly #listeners = new Set<DatabaseListener>();
  readonly #autoPrune: boolean;
  /** Opened by `noatun inspect` (see {@link INSPECTING}), which turns pruning off itself. */
  readonly #inspecting: boolean;
  /** See {@link DatabaseOptions.maxUndoHistoryBytes}. */
  readonly #maxUndoHistoryBytes: number;
  #openedBy: DatabaseStats['openedBy'];
  #closed = false;
  /** The first {@link close}'s work: later calls wait for it. */
  #closing: Promise<void> | undefined;
  #checkpointTimer: NodeJS.Timeout | undefined;
  #pendingWrites = 0;

  private constructor(
    options: DatabaseOptions<E, R>,
    log: EventLog,
    projector: Projector<E, R>,
    releaseLock: () => void,
    openedBy: DatabaseStats['openedBy'],
  ) {
    const database = this;
    this.path = options.path;
    this.#options = options;
    this.#log = log;
    this.#projector = projector;
    this.#codec = options.codec ?? messagePackCodec<E>();
    // The clock is checked at every reading too: one that later returns a string or a negative
    // time would date events wrongly without a word (see checkClock).
    const now = options.now;
    this.#now = now === undefined ? Date.now : () => clockTime(now());
    this.#releaseLock = releaseLock;
    this.#openedBy = openedBy;
    this.#nextOrdinal = log.getMeta(META_NEXT_ORDINAL, MetaShape.count) ?? 1;
    this.#autoPrune = options.autoPrune ?? true;
    this.#inspecting = (options as { [INSPECTING]?: boolean })[INSPECTING] === true;
    this.#maxUndoHistoryBytes = Math.min(
      options.maxUndoHistoryBytes ?? DEFAULT_MAX_UNDO_HISTORY_BYTES,
      Math.floor((options.maxUndoBytes ?? DEFAULT_MAX_JOURNAL_BYTES) / 2),
    );
    this.#finality = new Finality(log, options.cutoffIntervalMs ?? DEFAULT_CUTOFF_INTERVAL_MS, () => this.#now());
    this.#compactedBytes = log.getMeta(META_COMPACTED_BYTES, MetaShape.count) ?? projector.view.stats().viewBytes;
    this.#late = new LateQueue(
      {
        get cutoff() {
          return database.#finality.time;
        },
        landsBeforeApplied: (key) => this.#projector.landsBeforeApplied(key),
        landsBeforeHistory: (key) => this.#projector.landsBeforeHistory(key),
        isStored: (key) => this.#log.has(key),
        commit: (envelopes) => this.#commit(envelopes, false),
        canStore: () => !this.#closed && this.#broken === undefined,
        stored: () => void this.#durable().catch(() => {}),
      },
      options.lateWorkShare ?? REBUILD_DUTY_CYCLE,
    );
    this.#inbox = new Inbox(
      {
        get cutoff() {
          return database.#finality.time;
        },
        now: () => this.#now(),
        // A queued late event is known: offered again, it is a duplicate; as a parent after the
        // cutoff, its children wait with it (see LateQueue.split).
        isStored: (id) => this.#log.has(id) || (this.#late.size !== 0 && this.#late.has(MessageId.adopt(id).key)),
        highestStored: () => {
          const highest = this.#log.lastKey();
          const late = this.#late.highest;
          return late !== undefined && (highest === undefined || Buffer.compare(late, highest) > 0) ? late : highest;
        },
      },
      options.inbox,
    );
    for (const bytes of log.getMeta(META_HEADS, MetaShape.idList) ?? []) {
      const id = MessageId.fromBytes(bytes);
      this.#heads.set(keyOf(id), id);
    }
  }

  /**
   * Opens (or creates) a database. A view that does not match the log (crash mid-write, damaged
   * file, changed schema) is rebuilt from the log, reporting progress through `onProgress`.
   */
  static async open<E, R extends ObjectSchema<unknown>>(options: DatabaseOptions<E, R>): Promise<Database<E, R>> {
    assertSupportedNode();
    if (options === null || typeof options !== 'object') {
      throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `Database.open takes an options object, got ${describeValue(options)}`);
    }
    if (typeof options.apply !== 'function') throw new NoatunError(ErrorCode.INVALID_ARGUMENT, 'apply must be a function');
    checkOptionKinds(options);
    if (typeof options.path !== 'string' || options.path === '') {
      throw new NoatunError(ErrorCode.INVALID_ARGUMENT, 'path must be a directory name');
    }
    if (options.path.includes('\0')) {
      throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `path must not hold a NUL character: ${quote(options.path)}`);
    }
    const interval = options.cutoffIntervalMs ?? DEFAULT_CUTOFF_INTERVAL_MS;
    if (!(Number.isSafeInteger(interval) && interval >= 120_000)) {
      throw new NoatunError(ErrorCode.INVALID_ARGUMENT, 'cutoffIntervalMs must be a whole number of ms, at least 120000 (2 minutes)');
    }
    const share = options.lateWorkShare;
    if (share !== undefined && !(typeof share === 'number' && share > 0 && share <= 1)) {
      throw new NoatunError(ErrorCode.INVALID_ARGUMENT, 'lateWorkShare must be a number greater than 0 and at most 1');
    }
    const commitMode = options.commitMode ?? 'async';
    if (commitMode !== 'sync' && commitMode !== 'async') {
      throw new NoatunError(ErrorCode.INVALID_ARGUMENT, "commitMode must be 'sync' or 'async'");
    }
    const history = options.maxUndoHistoryBytes;
    if (history !== undefined && !(Number.isSafeInteger(history) && history >= 4096)) {
      throw new NoatunError(ErrorCode.INVALID_ARGUMENT, 'maxUndoHistoryBytes must be a whole number of bytes, at least 4096');
    }
    checkCodec(options.codec);
    if (options.now !== undefined) checkClock(options.now);
    // Refused before anything is made on disk (a refused open changes nothing).
    checkViewOptions(options);
    resolveInboxLimits(options.inbox);
    makeDirectory(options.path);
    const releaseLock = lockDirectory(options.path);
    // What a refused open of a log it makes puts back (see forgetMadeLog).
    const logBefore = logFileState(options.path);
    let log: EventLog | undefined;
    let view: MaterializedView<R> | undefined;
    try {
      const onProgress = options.onProgress;
      log = await EventLog.open(
        options.path,
        onProgress === undefined ? undefined : ({ done, total }) => onProgress({ phase: 'convert-log', done, total }),
      );
      log.commitMode = commitMode;
      // Read before this open stores anything (which gives the log a new one): see viewMatches.
      const writeToken = log.writeToken;
      const appName = (options as { name?: string }).name;
      const inspecting = (options as { [INSPECTING]?: boolean })[INSPECTING] === true;
      refuseDamagedMeta(log);
      refuseOtherApp(log, options.path, appName, !inspecting);
      // The cutoff hashes move by the log's per-stride hashes: kept from here on (with pruning;
      // before anything, a rebuild's discards included, writes to the log), or marked stale.
      Finality.trackStrides(log, options.cutoffIntervalMs ?? DEFAULT_CUTOFF_INTERVAL_MS, options.autoPrune ?? true);
      let logId = log.getMeta(META_LOG_ID, MetaShape.id);
      if (logId === undefined) {
        logId = randomBytes(16);
        log.setMeta(META_LOG_ID, logId);
        await log.written();
      }
      const viewDir = path.join(options.path, 'view');
      const openView = () =>
        MaterializedView.open({
          directory: viewDir,
          root: options.root,
          ...(options.applyVersion === undefined ? {} : { applyVersion: options.applyVersion }),
          maxViewBytes: options.maxViewBytes ?? DEFAULT_MAX_VIEW_BYTES,
          ...(options.maxUndoBytes === undefined ? {} : { maxJournalBytes: options.maxUndoBytes }),
        });
      const freshView = () => {
        fs.rmSync(viewDir, { recursive: true, force: true });
        const view = openView();
        view.arena.u8.set(logId, EngineWord.LOG_ID * 4);
        return view;
      };
      let openedBy: DatabaseStats['openedBy'] = 'clean-load';
      let schemaChanged = false;
      try {
        view = openView();
      } catch (error) {
        const code = (error as NoatunError).code;
        if (code !== ErrorCode.CORRUPT_FILE && code !== ErrorCode.SCHEMA_MISMATCH) throw error;
        schemaChanged = code === ErrorCode.SCHEMA_MISMATCH;
      }
      const storedNext = log.getMeta(META_NEXT_ORDINAL, MetaShape.count) ?? 1;
      if (view !== undefined && !view.arena.created && storedNext === 1) refuseOrphanView(view, logId, log.path, viewDir);
      if (view !== undefined && !view.arena.created && !viewMatches(view, logId, storedNext, writeToken)) {
        view.close();
        view = undefined;
      }
      if (view === undefined || view.arena.created) {
        openedBy = log.count() === 0 ? 'new' : 'rebuild';
        if (inspecting && openedBy === 'rebuild' && (appName === undefined || log.getMeta(META_APP_NAME, MetaShape.text) !== appName)) {
          throw new NoatunError(
            ErrorCode.APP_INVALID,
            `${options.path} records no app name, so its app cannot be told from another, and its view would have to be made again with this one (${schemaChanged ? 'its schema differs from the one the view was made with' : 'the view is missing or was not closed cleanly'}); inspecting changes nothing: open the database with its own program first, then inspect it`,
          );
        }
        view?.close();
        view = freshView();
      }
      const projector = new Projector<E, R>(view, log, options.apply, options.codec ?? messagePackCodec<E>());
      projector.onNonDeterministic = options.onNonDeterministicApply;
      projector.historyTrusted = openedBy !== 'clean-load';
      projector.resetView = () => {
        projector.view.close();
        return freshView();
      };
      let discarded: MessageId[] = [];
      let withdrawn: MessageId[] = [];
      // The last commit may hold a batch not yet applied when the process stopped (see #commit).
      // A view that was sealed after it has it applied (the mark only goes now: it must not name
      // that batch once later commits come); a replay applies it as it was to be applied then,
      // and takes it out if that fails: it was never acknowledged (a local append), or its
      // senders offer it again (a peer's).
      const unconfirmed = log.getMeta(META_UNCONFIRMED, MetaShape.countsOrNull) ?? undefined;
      if (unconfirmed !== undefined) log.setMeta(META_UNCONFIRMED, null);
      if (openedBy === 'rebuild') {
        try {
          discarded = projector.replayAll(options.onProgress, unconfirmed);
        } catch (error) {
          if (!(error instanceof UnconfirmedBatchError)) throw error;
          withdrawn = withdrawBatch(log, error.range);
          discarded = projector.rebuild(options.onProgress);
        }
        view = projector.view;
        view.lastApplied = storedNext - 1;
        if (schemaChanged && options.acceptSchemaChange !== true) {
          try {
            refuseFailingSchema(projector, log.count());
          } catch (error) {
            projector.view.close();
            throw error;
          }
        }
      }
      const db = new Database<E, R>(options, log, projector, releaseLock, openedBy);
      if (discarded.length > 0 || withdrawn.length > 0) await db.#afterDiscard(discarded, withdrawn);
      if (openedBy === 'rebuild') {
        // The cutoff hashes are taken afresh from the log too (see Finality.retake).
        if (db.#finality.retake()) await log.written();
        // A rebuilt view has fresh records: events that were kept only by the old bookkeeping go now.
        db.#prune();
      }
      db.#advanceCutoff();
      return db;
    } catch (error) {
      // The error that stopped the open is the one reported (closing may meet it again: a full
      // disk), and the directory is unlocked whatever happens.
      try {
        view?.close();
        await log?.close();
      } catch {
        // (reported above)
      } finally {
        forgetMadeLog(options.path, logBefore);
        releaseLock();
      }
      throw diskFullFrom(error, options.path) ?? logDamageFrom(error, path.join(options.path, 'log.mdb')) ?? outOfResources(error) ?? error;
    }
  }

  /**
   * After damaged records were dropped (`discarded`), or an unconfirmed batch that fails to apply
   * was taken out (`withdrawn`): heads are recomputed from what is stored (a dropped event
   * may have been a head or a parent), and the drop is made durable.
   */
  async #afterDiscard(discarded: MessageId[], withdrawn: MessageId[] = []): Promise<void> {
    this.#discarded.push(...discarded);
    const removed = [...discarded, ...withdrawn];
    for (const id of removed) this.#finality.gone(id.bytes);
    this.#finality.save();
    this.#notifyRemoved(removed.map((id) => id.bytes));
    const parents = new Set<string>();
    const candidates: MessageId[] = [];
    for (const stored of this.#log.range()) {
      const envelope = readEnvelopeUnchecked(stored.envelope);
      for (const parent of envelope.parents) parents.add(keyOf(parent));
      if (envelope.id.timestamp >= this.#finality.time) candidates.push(envelope.id);
    }
    this.#heads.clear();
    for (const id of candidates) if (!parents.has(keyOf(id))) this.#heads.set(keyOf(id), id);
    this.#saveHeads();
    await this.#log.written();
  }

  /** Ids of damaged records dropped from the log when it was last rebuilt (since open). */
  discarded(): MessageId[] {
    this.#assertOpen();
    return [...this.#discarded];
  }

  #assertOpen(): void {
    if (this.#closed || this.#broken !== undefined) this.#refuse();
  }

  /**
   * As {@link #assertOpen}, and refuses a change made from inside a view session (an `apply`, a
   * `read` or `preview` callback): it would apply events in the middle of another one's apply.
   * (`compact` from an `apply` re-applied that apply, which compacted again, until the stack ran
   * out; an `append` failed later, as the event's own failure.)
   */
  #assertWritable(method: string): void {
    this.#assertOpen();
    const arena = this.#projector.view.arena;
    if (arena.active && !arena.unstuck()) {
      throw new NoatunError(
        ErrorCode.SESSION_NESTED,
        `${method} cannot be called inside apply, read or preview: an apply folds its event into the view and nothing else, and a read only reads (call it after the callback returns)`,
      );
    }
  }

  /**
   * The parents named by the stored events from the cutoff on (but `id`'s own), after refusing
   * to remove `id` if it is one of them: a peer copying the log would wait for it forever, and
   * hold fewer events and another view. (Parents behind the cutoff count as present everywhere;
   * only events from the cutoff on carry parents that matter, so only those are read.)
   */
  #namedParents(id: MessageId): Set<string> {
    const named = new Set<string>();
    const cutoff = this.#finality.time;
    if (id.timestamp < cutoff) return named;
    for (const event of this.#log.range(idFloor(cutoff))) {
      if (compareIdBytes(event.key, id.bytes) === 0) continue;
      for (const parent of readEnvelopeUnchecked(event.envelope).parents) {
        if (sameId(parent, id)) {
          throw new NoatunError(
            ErrorCode.INVALID_ARGUMENT,
            `event ${id} is the parent of stored event ${MessageId.fromBytes(Uint8Array.from(event.key))}: remove its children first (a peer copying this log would wait for it forever)`,
          );
        }
        named.add(keyOf(parent));
      }
    }
    return named;
  }

  /**
   * Refuses an append while the clock reads past the last time an id can hold (2^48 - 1 ms, in
   * the year 10889): before anything moves, the cutoff included (see {@link #mint}).
   */
  #assertClockInRange(): void {
    const now = this.#now();
    if (now > MAX_TIMESTAMP) throw timeOutOfRange('the clock reads', now);
  }

  /** Throws why the database refuses work: closed, or broken by a failure it cannot undo. */
  #refuse(): never {
    if (this.#closed) throw new NoatunError(ErrorCode.CLOSED, `database ${this.path} is closed`);
    throw this.#broken;
  }

  // ------------------------------------------------------------------ writing

  /**
   * Appends one event; resolves with its id once it is durably stored (and applied).
   * `options` can place it at another time, or just before or after another event. Like every
   * change, it is refused with `SESSION_NESTED` inside an `apply`, `read` or `preview` callback.
   */
  async append(event: E, options?: AppendOptions): Promise<MessageId> {
    this.#assertWritable('append');
    this.#assertClockInRange();
    this.#advanceCutoff();
    const copies: Copied<E>[] = [];
    const envelope = this.#mint(event, undefined, options, copies);
    try {
      this.#commit([envelope], true, copies);
    } catch (error) {
      throw await this.#failedLocal(error);
    }
    await this.#durable();
    return envelope.id;
  }

  /**
   * Appends every event `fn` adds, as one durable commit. If `fn` throws, nothing is stored; `tx`
   * refuses events once `fn` has returned.
   * Events in one transaction form a chain (each one's parent is the previous one), in the order
   * they were added: an event placed (by `time`, `before` or `after`) before the previous one is
   * placed just after it instead, with its time (`ctx.time` shows the time it got).
   * To place events apart in time, append them apart.
   */
  async transaction(fn: (tx: Transaction<E>) => void): Promise<MessageId[]> {
    this.#assertWritable('transaction');
    if (typeof fn !== 'function') throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `transaction takes a function, got ${describeValue(fn)}`);
    this.#assertClockInRange();
    this.#advanceCutoff();
    const envelopes: Envelope[] = [];
    const copies: Copied<E>[] = [];
    let open = true;
    const tx: Transaction<E> = {
      append: (event: E, options?: AppendOptions) => {
        // An event added once the callback has returned would get an id and never be stored.
        if (!open) throw new NoatunError(ErrorCode.INVALID_ARGUMENT, 'tx.append was called after the transaction callback returned: the transaction is over');
        const envelope = this.#mint(event, envelopes[envelopes.length - 1]?.id, options, copies);
        envelopes.push(envelope);
        return envelope.id;
      },
    };
    let result: unknown;
    try {
      result = fn(tx);
    } finally {
      open = false;
    }
    if (isAsyncResult(result)) {
      throw new NoatunError(ErrorCode.INVALID_ARGUMENT, 'the transaction callback must be synchronous');
    }
    if (envelopes.length === 0) return [];
    const ids = envelopes.map((e) => e.id);
    try {
      this.#commit(envelopes, true, copies);
    } catch (error) {
      throw await this.#failedLocal(error);
    }
    // Nothing of the batch but its ids waits for the commit to be durable (see #commit).
    envelopes.length = 0;
    copies.length = 0;
    await this.#durable();
    return ids;
  }

  /**
   * Moves the cutoff to where the clock says it should be, pruning what became final. Appends and
   * ingests do this themselves; call it when a database sits idle (e.g. from a timer).
   *
   * `to` moves it to a given stride boundary instead, at most one stride past where the clock says
   * (never backwards): a peer whose clock is a little behind another's, across a stride boundary,
   * joins it in the same era instead of holding, for up to a stride, events the other has already
   * pruned (the replicator does this when a peer's status is one stride ahead).
   */
  advanceCutoff(to?: number): void {
    this.#assertWritable('advanceCutoff');
    if (to !== undefined && !Number.isSafeInteger(to)) {
      throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `advanceCutoff takes a stride boundary in ms, got ${describeValue(to)}`);
    }
    this.#advanceCutoff();
    if (to !== undefined && this.#autoPrune && to > this.#finality.time) {
      const nominal = this.#finality.nominal();
      const stride = this.#finality.strideMs;
      if (!Number.isSafeInteger(to) || to % stride !== 0 || to > nominal + stride || to > this.#finality.lastCutoff) {
        throw new NoatunError(
          ErrorCode.INVALID_ARGUMENT,
          `cannot move the cutoff to ${to}: it must be a stride boundary at most one stride (${stride} ms) past ${nominal}`,
        );
      }
      this.#moveCutoff(to);
    }
    if (this.#inbox.count !== 0) this.#storeReleased();
  }

  /**
   * Stores parked events that no longer wait: their parent fell behind the cutoff (where parents
   * count as present), as `ingest` would (see {@link #admit}). Durable with the next commit; a batch
   * the view refuses is dropped (its senders offer it again).
   */
  #storeReleased(): void {
    const released = this.#inbox.sort([]).accepted;
    if (released.length === 0) return;
    try {
      if (this.#admit(released).stored !== 0) void this.#durable().catch(() => {});
    } catch (error) {
      if (this.#broken !== undefined) throw error;
    }
  }

  /**
   * Moves the cutoff forward to the nominal cutoff of now (never backwards; not without
   * autoPrune), and the log's packing horizon with it (with or without autoPrune).
   */
  #advanceCutoff(): void {
    const nominal = this.#finality.nominal();
    this.#log.packBefore(nominal - PACK_LAG_MS);
    if (this.#autoPrune && nominal > this.#finality.time) this.#moveCutoff(nominal);
    // After the pruning (whose removals a pack made before it would have to drop).
    this.#log.packNow();
  }

  /**
   * Moves the cutoff to `to`: events in [old cutoff, `to`) become final (their ids join the cutoff
   * hash, they stop being heads), final events that changed nothing are pruned, and undo history
   * before the cutoff is dropped. The previous-era hash is computed for `to - stride` directly, so
   * it is right however many strides the cutoff jumps.
   */
  #moveCutoff(to: number): void {
    this.#finality.moveTo(to);
    let changed = false;
    for (const [key, head] of this.#heads) {
      if (head.timestamp < to) {
        this.#heads.delete(key);
        changed = true;
      }
    }
    if (changed) this.#saveHeads();
    this.#prune();
    this.#projector.forgetHistoryBefore(to);
    if (this.#compactionDue()) this.#compact();
  }

  /**
   * Prunes what the cutoff made final (see {@link Projector.prune}) and accounts for it; nothing
   * while pruning is held (see `Finality.hold`).
   */
  #prune(): void {
    if (!this.#autoPrune || this.#finality.held) return;
    this.#markDirty();
    const ids = this.#projector.prune(this.#finality.time);
    if (ids.length === 0) return;
    this.#finality.pruned(ids);
    this.#log.setMeta(META_PRUNED, (this.#log.getMeta(META_PRUNED, MetaShape.count) ?? 0) + ids.length);
    this.#notifyRemoved(ids);
  }

  /**
   * Whether a compaction would pay: the view has doubled since the last one, and more events were
   * pruned since then than are stored now (so much of the growth is data of events gone).
   */
  #compactionDue(): boolean {
    if (this.#projector.view.stats().viewBytes <= 2 * Math.max(this.#compactedBytes, MIN_COMPACT_BYTES)) return false;
    const pruned = this.#log.getMeta(META_PRUNED, MetaShape.count) ?? 0;
    const since = pruned - (this.#log.getMeta(META_PRUNED_AT_COMPACTION, MetaShape.count) ?? 0);
    return since > this.#log.count();
  }

  /** Rebuilds the view from the log into a fresh file: the space of overwritten data is reclaimed. */
  #compact(): void {
    this.#markDirty();
    let discarded: MessageId[];
    try {
      discarded = this.#projector.rebuild(this.#options.onProgress);
    } catch (error) {
      // A fresh view half made (the disk filled up, say): the next open rebuilds it.
      this.#broken ??= asEngineError(error, this.#log.path);
      throw error;
    }
    this.#projector.view.lastApplied = this.#nextOrdinal - 1;
    this.#markDirty();
    if (discarded.length !== 0) void this.#afterDiscard(discarded);
    this.#prune();
    this.#projector.forgetHistoryBefore(this.#finality.time);
    this.#compactedBytes = this.#projector.view.stats().viewBytes;
    this.#log.setMeta(META_COMPACTED_BYTES, this.#compactedBytes);
    this.#log.setMeta(META_PRUNED_AT_COMPACTION, this.#log.getMeta(META_PRUNED, MetaShape.count) ?? 0);
  }

  /**
   * Rebuilds the view from the log into a fresh file, reclaiming the space of overwritten and
   * pruned data (this also happens automatically when the view doubles in size). Resolves once
   * the result is durable.
   */
  async compact(): Promise<void> {
    this.#assertWritable('compact');
    this.#compact();
    await this.#durable();
  }

  /** The cutoff and the hashes of the finalized past, for comparing with another peer. */
  cutoffState(): CutoffState {
    this.#assertOpen();
    return this.#finality.state();
  }

  /** The cutoff stride in ms (a tenth of the interval, whole minutes). */
  get cutoffStrideMs(): number {
    return this.#finality.strideMs;
  }

  #saveHeads(): void {
    this.#log.setMeta(
      META_HEADS,
      [...this.#heads.values()].map((id) => id.bytes),
    );
  }

  /** The current cutoff time in ms (0 before any cutoff). */
  get cutoffTime(): number {
    return this.#finality.time;
  }

  /**
   * The payload of a local event: `copied` (the codec's copy of `event`, see {@link #mint}) or
   * `event` validated and encoded, refused as every peer would refuse it.
   */
  #encode(event: E, copied: Copied<E>): Uint8Array {
    if (copied === undefined) this.#codec.validate?.(event);
    let payload: Uint8Array;
    try {
      payload = copied?.bytes ?? this.#codec.encode(copied === undefined ? event : copied.value);
    } catch (cause) {
      throw new NoatunError(ErrorCode.PAYLOAD_INVALID, `event: the codec cannot encode it (${describeFailure(cause)})`, { cause });
    }
    if (!(payload instanceof Uint8Array)) {
      throw new NoatunError(ErrorCode.PAYLOAD_INVALID, `event: the codec's encode returned ${describeValue(payload)}, not bytes (a Uint8Array)`);
    }
    const limit = DEFAULT_ENVELOPE_LIMITS.maxPayloadBytes;
    if (payload.length > limit) {
      // Refused here, or every peer (and this one's next rebuild) would refuse it as malformed.
      throw new NoatunError(
        ErrorCode.EVENT_TOO_LARGE,
        `the event encodes to ${payload.length} bytes; the limit is ${limit} bytes (${limit / 2 ** 20} MiB) per event`,
      );
    }
    return payload;
  }

  /**
   * Makes the envelope of a local event. Its parents are the heads older than it, or just
   * `previous` (the transaction's previous event, which the new one must follow). Pushes onto
   * `copies` what the codec's `copy` gave for the event (see {@link Codec.copy}): what is
   * encoded, and what the author's apply gets instead of decoding the payload.
   */
  #mint(event: E, previous: MessageId | undefined, options: AppendOptions | undefined, copies: Copied<E>[]): Envelope {
    const copied = this.#codec.copy?.(event);
    const payload = this.#encode(event, copied);
    // A time ahead of the clock is the app's choice (peers accept the event once it is due).
    // (The usual case, no options, without the object `placement` returns: see IdMinter.plan.)
    const minter = this.#minter;
    let timestamp: number;
    let sequence: number;
    if (options === undefined) {
      const now = this.#now();
      if (now > MAX_TIMESTAMP) throw timeOutOfRange('the clock reads', now);
      minter.plan(now);
      timestamp = minter.plannedTimestamp;
      sequence = minter.plannedSequence;
    } else {
      const at = placement(minter, this.#now(), options, this.#inbox.maxClockSkewMs);
      timestamp = at.timestamp;
      sequence = at.sequence;
    }
    let parents: MessageId[];
    if (previous !== undefined) {
      if (timestamp < previous.timestamp || (timestamp === previous.timestamp && sequence <= previous.sequence)) {
        // The events of a transaction form a chain, each after the one before: one asked for
        // before the previous one is placed just after it, and takes its time (see transaction).
        if (previous.sequence < 0xffff) {
          timestamp = previous.timestamp;
          sequence = previous.sequence + 1;
        } else {
          timestamp = previous.timestamp + 1;
          sequence = FRESH_SEQUENCE_MIN;
        }
      }
      // Before the cutoff even a transaction's chain has no links (peers refuse such parents).
      parents = timestamp < this.#finality.time ? [] : [previous];
    } else if (timestamp < this.#finality.time) {
      // An event before the cutoff has no parents: the finalized past gains no links.
      parents = [];
    } else {
      // Heads newer than a backdated event cannot be its parents (a parent precedes its child).
      const probe = MessageId.fromParts(timestamp, sequence, new Uint8Array(8));
      parents = [];
      for (const head of this.#heads.values()) if (MessageId.compare(head, probe) < 0) parents.push(head);
      // Peers refuse envelopes with more parents than the limit; the newest heads matter most
      // (parents only make a receiver wait for what came before).
      const max = DEFAULT_ENVELOPE_LIMITS.maxParents;
      if (parents.length > max) parents = parents.sort(MessageId.compare).slice(-max);
    }
    const envelope = mintEnvelope(minter, timestamp, sequence, payload, parents);
    copies.push(copied);
    return envelope;
  }

  /**
   * Stores envelopes (validated, new, parents present), updates heads, projects them. All or
   * nothing: when the batch cannot be applied — a local event's own apply throws (`APPLY_FAILED`),
   * or this machine fails (a full view, the call stack or memory ran out) — the view, the log, the
   * heads and the cutoff hashes are put back as they were and the error is thrown.
   */
  #commit(envelopes: readonly Envelope[], local: boolean, copies?: readonly Copied<E>[]): void {
    const stored: StoredEvent[] = [];
    const headsBefore = [...this.#heads.values()];
    let finalized = false;
    // Envelopes decoded from bytes (received ones) are stored as those bytes; the others (local
    // ones) are encoded into one buffer for the batch: one allocation, not one per event.
    let total = 0;
    // (Indexed loops on this path: a for-of runs the iterator protocol, one object a step, until
    // the function is optimized, and a peer's batches are few and long.)
    for (let i = 0; i < envelopes.length; i++) if (envelopes[i]!.bytes === undefined) total += envelopeSize(envelopes[i]!);
    const values = total === 0 ? undefined : Buffer.allocUnsafeSlow(total);
    let at = 0;
    for (let i = 0; i < envelopes.length; i++) {
      const envelope = envelopes[i]!;
      let bytes = envelope.bytes;
      if (bytes === undefined) {
        const start = at;
        at = encodeEnvelopeInto(envelope, values!, start);
        bytes = values!.subarray(start, at);
      }
      // The id's bytes are the log key: a received id is a view of its envelope's bytes already,
      // and a local one has bytes of its own (no other view of them is made).
      const key = envelope.id.bytes;
      const event: StoredEvent = { key, ordinal: this.#nextOrdinal++, envelope: bytes, decoded: envelope, copy: copies?.[i] };
      this.#log.put(event);
      stored.push(event);
      // Behind the cutoff an event is final at once (its id joins the cutoff hashes) and no head.
      if (this.#finality.stored(envelope.id)) finalized = true;
      else {
        const parents = envelope.parents;
        // In a chain (a transaction, or a peer's run of them), each event's only parent is the one
        // before it, which was never made a head below: only the chain's ends change heads.
        if (!(i !== 0 && parents.length === 1 && sameId(parents[0]!, envelopes[i - 1]!.id))) {
          for (let p = 0; p < parents.length; p++) this.#heads.delete(keyOf(parents[p]!));
        }
        const next = envelopes[i + 1];
        if (!(next !== undefined && next.parents.length === 1 && sameId(next.parents[0]!, envelope.id))) {
          // A copy: the id is a view into the whole batch's buffer (see decodeEnvelopes).
          this.#heads.set(keyOf(envelope.id), MessageId.fromBytes(envelope.id.bytes));
        }
      }
    }
    this.#log.setMeta(META_NEXT_ORDINAL, this.#nextOrdinal);
    this.#saveHeads();
    // The cutoff hashes go with the batch whose ids they took in: saved with the next commit, a
    // kill between the two left the batch stored without them, for good (no open recomputes them),
    // and a peer holding the same events never agreed with this one.
    if (finalized) this.#finality.save();
    this.#markDirty();
    // The batch goes to the log's writer thread now, and is written while it is applied here
    // (BENCHMARKS.md, run V). Should it fail to apply (a local event's apply throws, this machine
    // fails), it is taken out again by the next commit (the projector's undo, below), which an
    // append waits for. Until that next commit the log marks the batch: a crash in between leaves
    // it there, and the open after re-applies it as it would have been applied here, taking it
    // out if it fails so (see open).
    // (The writer thread starts with the first batch, not at the open: a process that only reads
    // never starts it, and an open is not slowed by its start, some tens of milliseconds.)
    if (this.#log.commitMode === 'async') void this.#log.startWriter();
    this.#log.startCommit({ name: META_UNCONFIRMED, value: [stored[0]!.ordinal, stored[stored.length - 1]!.ordinal, local ? 1 : 0] });
    try {
      this.#projector.project(stored, this.#options.onProgress, {
        strict: local,
        check: this.#options.checkDeterminism === true,
        undo: () => {
          for (const event of stored) this.#log.remove(event.key);
        },
      });
    } catch (error) {
      if (error instanceof ViewRestoreError) {
        // The view could not be put back: it is behind the log until a reopen rebuilds it.
        this.#broken = error;
        throw error;
      }
      this.#uncommit(envelopes, headsBefore);
      // (The call stack that ran out is this machine's failure, not the event's: RESOURCE_EXHAUSTED,
      // as for a batch from a peer.)
      throw local && !(error instanceof NoatunError) && !isEnvironmentFailure(error)
        ? new ApplyFailedError(envelopes[0]!.id, error)
        : asEngineError(error, this.#log.path);
    }
    // The log keeps the batch's records until the commit is durable; their parsed envelopes are
    // not needed any more. While the commit is awaited the thread is idle, V8 collects garbage,
    // and whatever is still reachable then is copied and soon promoted: a batch's parsed
    // envelopes kept alive that long cost more in garbage collection than the rest of the write
    // (BENCHMARKS.md, run N).
    for (let i = 0; i < stored.length; i++) {
      stored[i]!.decoded = undefined;
      stored[i]!.copy = undefined;
    }
    this.#markDirty(); // the projector may have rebuilt into a fresh view
    this.#projector.view.lastApplied = this.#nextOrdinal - 1;
    this.#projector.trimHistory(this.#maxUndoHistoryBytes);
    if (this.#listeners.size !== 0) {
      const notices = stored.map((event, i) => ({ id: envelopes[i]!.id, bytes: event.envelope, local }));
      this.#notify((listener) => listener.stored?.(notices));
    }
    // Events stored behind the cutoff are final at once: prune what they made redundant (after
    // the listeners heard of the batch, which the pruned ids may be part of).
    if (finalized) this.#prune();
  }

  /**
   * Calls `hear` for each listener registered when the notice starts (one added meanwhile hears
   * the next; one removed meanwhile is not called). A listener that throws stops neither the
   * others nor the change: its error is reported as an uncaught exception, as a listener's of an
   * `EventTarget` is. (It came out of the call that made the change, which then rejected although
   * its events were stored: an app that retried stored them twice; and a `removed` listener's,
   * thrown while an append moved the cutoff, lost that append's event.)
   */
  #notify(hear: (listener: DatabaseListener) => void): void {
    const listeners = [...this.#listeners];
    for (const listener of listeners) {
      if (!this.#listeners.has(listener)) continue;
      try {
        hear(listener);
      } catch (error) {
        process.nextTick(() => {
          throw error;
        });
      }
    }
  }

  /**
   * A local batch failed to commit (see {@link #commit}). Its events may have been written to the
   * log already (see the writer thread there): `error` comes out once their removal is written
   * too, so a rejected append has stored nothing.
   */
  async #failedLocal(error: unknown): Promise<unknown> {
    if (this.#broken === undefined) {
      await this.#log.written().catch((failure: unknown) => {
        // The log refuses writes (a commit of the cutoff's pruning failed first, say): so does the
        // database, as after a failed commit of its own (see #durable); a close does not throw it again.
        this.#broken ??= asEngineError(failure, this.#log.path);
      });
    }
    return error;
  }

  /** Puts heads and cutoff hashes back after a batch that was taken out of the log again. */
  #uncommit(envelopes: readonly Envelope[], headsBefore: readonly MessageId[]): void {
    for (const envelope of envelopes) this.#finality.gone(envelope.id.bytes);
    this.#finality.save();
    this.#heads.clear();
    for (const id of headsBefore) this.#heads.set(keyOf(id), id);
    this.#saveHeads();
    this.#projector.view.lastApplied = this.#nextOrdinal - 1;
  }

  /**
   * Registers a listener for stored and removed events (the replicator keeps its id index and
   * gossip with it). Listeners run synchronously inside the call that changed the log; they must
   * not call back into the database. A listener added or removed while others are being called
   * takes effect from the next change. A listener that throws stops neither the others nor the
   * change, nor fails the call that made it: its error is reported as an uncaught exception (as
   * an `EventTarget`'s listener's is). Returns the function that unregisters it.
   */
  subscribe(listener: DatabaseListener): () => void {
    // A listener added to a closed database would never hear of anything.
    this.#assertOpen();
    // Checked here: a listener that is not one would throw at every later commit, after it.
    const members = listener as unknown as Record<string, unknown> | null;
    if (members === null || typeof members !== 'object') {
      throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `a listener must be an object with stored() and/or removed(), got ${describeValue(listener)}`);
    }
    for (const name of ['stored', 'removed']) {
      if (members[name] !== undefined && typeof members[name] !== 'function') {
        throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `a listener's ${name} must be a function`);
      }
    }
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  #notifyRemoved(ids: readonly Uint8Array[]): void {
    if (ids.length === 0 || this.#listeners.size === 0) return;
    this.#notify((listener) => listener.removed?.(ids));
  }

  /** Ids of the stored events in id order (16 bytes each), without reading the envelopes. */
  *ids(): Generator<Uint8Array> {
    this.#assertOpen();
    yield* this.#log.keys();
  }

  async #durable(): Promise<void> {
    this.#pendingWrites++;
    try {
      await this.#log.written();
    } catch (error) {
      // The log refuses writes from now on; so does the database, reads included: the view shows
      // batches that were never stored (see #broken).
      this.#broken ??= asEngineError(error, this.#log.path);
      throw error;
    } finally {
      this.#pendingWrites--;
      this.#scheduleCheckpoint();
    }
  }

  /** Marks the view dirty on its first change after a checkpoint, durably (one page msync). */
  #markDirty(): void {
    const view = this.#projector.view;
    if (!view.dirty) {
      view.dirty = true;
      view.arena.file.sync(0, 4096);
    }
  }

  /**
   * Once writes are durable and quiet, flushes the view and marks it clean, so a crash after
   * this point reopens without a rebuild.
   */
  #scheduleCheckpoint(): void {
    if (this.#checkpointTimer !== undefined || this.#closed) return;
    this.#checkpointTimer = setTimeout(() => {
      this.#checkpointTimer = undefined;
      if (this.#closed) return;
      if (this.#pendingWrites !== 0) {
        this.#scheduleCheckpoint();
        return;
      }
      void this.#log.written().then(
        () => {
          if (!this.#closed && this.#pendingWrites === 0) this.#checkpoint();
        },
        (error: unknown) => {
          this.#broken ??= asEngineError(error, this.#log.path);
        },
      );
    }, CHECKPOINT_DELAY_MS);
    this.#checkpointTimer.unref();
  }

  #checkpoint(): void {
    if (this.#broken === undefined && this.#projector.view.dirty) this.#seal();
  }

  /** Marks the view clean with checksums, and flushes it. */
  #seal(): void {
    const view = this.#projector.view;
    // The log's token goes with the view (see viewMatches): committed by now, or, queued by a commit
    // still on its way, one a crash would leave the view without (a rebuild then, as it would be).
    const token = this.#log.writeToken;
    if (token !== undefined) view.arena.u8.set(token, EngineWord.WRITE_TOKEN * 4);
    view.dirty = false;
    view.seal();
    view.sync();
  }

  /**
   * Stores events from another peer. Each envelope is validated (format, limits, id hash); an
   * invalid one rejects the whole batch and nothing is stored. Then the inbox sorts them (see
   * `src/core/inbox.ts`): known events are skipped, events dated more than
   * `inbox.maxClockSkewMs` ahead of this clock are refused (their sender offers them again once
   * due), events whose parents are missing wait in memory (bounded per sender and in total) until
   * the parents arrive or fall behind the cutoff, for `inbox.parkedTtlMs` at most (10 minutes by
   * default; then they are dropped, and their sender offers them again, as a replicator does at
   * its next session). Events older than the cutoff are stored without their parents.
   *
   * An event behind the cutoff that lands before applied events is costly: the view is rewound
   * through the whole window of undo history and re-applied, or rebuilt from the log when the
   * history does not reach back that far. Such work is budgeted: it takes at most
   * `lateWorkShare` of the time (a tenth by default), so these events wait (in memory, bounded) for the next turn the budget allows and are
   * stored together then (`deferred` counts them), or when the database closes; a flood of old
   * events cannot keep the peer re-applying its history. An event whose parent waits so (and is
   * not behind the cutoff) waits with it: the log never holds an event after the cutoff without
   * its parents.
   */
  ingest(batch: Iterable<Uint8Array>, options: IngestOptions = {}): Promise<IngestResult> {
    // Not an async function: the wait for the commit must hold nothing of the batch. An async
    // function keeps its locals until it returns, and an ingest waiting for its commit kept its
    // batch's parsed envelopes (ids, parents, payloads: about 1 KB an event) alive through the
    // young generation's collections, which copied them (BENCHMARKS.md, run Z).
    let result: IngestResult;
    try {
      result = this.#ingestNow(batch, options);
    } catch (error) {
      return Promise.reject(error);
    }
    return result.stored === 0 ? Promise.resolve(result) : this.#durable().then(() => result);
  }

  /** The synchronous part of {@link ingest}: validates, sorts and stores the batch. */
  #ingestNow(batch: Iterable<Uint8Array>, options: IngestOptions): IngestResult {
    this.#assertWritable('ingest');
    if (batch === null || typeof (batch as { [Symbol.iterator]?: unknown })?.[Symbol.iterator] !== 'function') {
      throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `ingest takes an iterable of envelopes (Uint8Array), got ${describeValue(batch)}`);
    }
    if (options === null || typeof options !== 'object' || (options.peer !== undefined && typeof options.peer !== 'string')) {
      throw new NoatunError(ErrorCode.INVALID_ARGUMENT, 'ingest options must be an object, and its peer a string');
    }
    this.#advanceCutoff();
    const decoded = decodeEnvelopes(batch);
    const sorting = this.#inbox.sort(decoded, options.peer ?? LOCAL_SOURCE);
    const admitted = this.#admit(sorting.accepted);
    return {
      stored: admitted.stored,
      duplicates: sorting.duplicates + admitted.duplicates,
      parked: sorting.parked,
      unparked: sorting.unparked,
      future: sorting.tooNew,
      refused: sorting.refused + admitted.refused,
      deferred: admitted.deferred,
    };
  }

  /**
   * Stores events the inbox accepted (new, parents present), now or — costly late ones — when the
   * budget allows; durable with the next flush. Used by `ingest` and for events released from
   * parking when the cutoff passes their parent, so both hold pruning and keep the budget alike.
   */
  #admit(sorted: readonly Envelope[]): { stored: number; duplicates: number; refused: number; deferred: number } {
    let duplicates = 0;
    let refused = 0;
    // New events behind the cutoff hold pruning (see Finality.hold). An event pruned here recently
    // is offered again by a peer that still holds it (its own hold is longer): storing it again
    // is only worth it while pruning is held — some late event may have made it needed again, and
    // a peer that has that event offers it again later — and otherwise it would be pruned at once;
    // either way it must not start a new hold, or two peers would hand it back and forth forever.
    const accepted: Envelope[] = [];
    const prunedBefore: Envelope[] = [];
    for (let i = 0; i < sorted.length; i++) {
      const envelope = sorted[i]!;
      if (envelope.id.timestamp < this.#finality.time && this.#finality.prunedLately(envelope.id.key)) prunedBefore.push(envelope);
      else accepted.push(envelope);
    }
    // A late event holds pruning once here (see Finality.heldFor); each is noted once it is stored
    // or waits to be (a refused one, offered again, still holds).
    const holders: Envelope[] = [];
    for (const envelope of accepted) if (envelope.id.timestamp < this.#finality.time && !this.#finality.heldFor(envelope.id.key)) holders.push(envelope);
    if (holders.length !== 0) this.#finality.hold();
    if (prunedBefore.length !== 0) {
      if (this.#finality.held) accepted.push(...prunedBefore);
      else duplicates += prunedBefore.length;
    }
    // Costly late events wait for the budget, unless it allows a turn now; so do the events that
    // need one of them as a parent (see LateQueue.split).
    const late = this.#late;
    const turnAllowed = late.turnAllowed();
    const { now, later } = turnAllowed ? { now: accepted, later: [] } : late.split(accepted);
    let deferred = 0;
    if (later.length !== 0) {
      if (late.deferAll(later)) deferred = later.length;
      else refused += later.length;
    }
    const notHeld = refused === 0 ? undefined : new Set(later);
    const taken = turnAllowed && late.size !== 0 ? late.take() : [];
    now.push(...taken);
    try {
      if (now.length !== 0) {
        now.sort((a, b) => MessageId.compare(a.id, b.id));
        late.commitBudgeted(now);
      }
      for (const envelope of holders) if (notHeld?.has(envelope) !== true) this.#finality.noteHeld(envelope.id.key);
    } catch (error) {
      // Refused as a batch: the queued late events taken for this turn wait for the next one.
      for (const envelope of taken) late.defer(envelope);
      throw error;
    } finally {
      if (late.size !== 0) late.schedule();
    }
    return { stored: now.length, duplicates, refused, deferred };
  }

  /**
   * Lets go of the events `peer` had waiting for their parents (it left; if it comes back it
   * offers them again). The replicator calls it when a peer disconnects.
   */
  peerLeft(peer: string): void {
    // (A replicator may hear of a disconnect after the database closed: nothing is held then.)
    if (this.#closed) return;
    this.#inbox.forgetSource(peer);
  }

  /** Whether {@link close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** The largest envelope (wire form) this database accepts: the payload limit plus the most parents. */
  get maxEnvelopeBytes(): number {
    return envelopeSize({ parents: { length: DEFAULT_ENVELOPE_LIMITS.maxParents }, payload: { length: DEFAULT_ENVELOPE_LIMITS.maxPayloadBytes } } as Envelope);
  }

  /**
   * Deletes one event (low level: meant for events never sent to anyone) and re-projects the
   * view without it. Returns false when no such event is stored. An event that a stored event
   * names as its parent is refused (`INVALID_ARGUMENT`): remove the children first. (To know, it
   * reads every event stored from the cutoff on: the whole log when pruning is off.)
   */
  async remove(id: MessageId): Promise<boolean> {
    this.#assertWritable('remove');
    const stored = this.#log.get(idBytes(id, 'id'));
    if (stored === undefined) return false;
    const named = this.#namedParents(id);
    this.#markDirty();
    this.#log.remove(id.bytes);
    if (id.timestamp < this.#finality.time) {
      this.#finality.gone(id.bytes);
      this.#finality.save();
    }
    let headsChanged = this.#heads.delete(keyOf(id));
    // Its parents that no other event names become heads again, as a rebuild would find them.
    if (id.timestamp >= this.#finality.time) {
      for (const parent of readEnvelopeUnchecked(stored.envelope).parents) {
        const key = keyOf(parent);
        if (parent.timestamp >= this.#finality.time && !named.has(key) && this.#log.has(parent.bytes)) {
          this.#heads.set(key, parent);
          headsChanged = true;
        }
      }
    }
    if (headsChanged) this.#saveHeads();
    this.#projector.unapply(stored, this.#options.onProgress);
    this.#markDirty();
    this.#notifyRemoved([id.bytes]);
    // What the event kept (a value it read, behind the cutoff) goes now, as a compaction or a
    // rebuild would prune it: the stored set stays a fixed point (before, a compact() right after
    // changed it, and the cutoff hash with it).
    this.#prune();
    await this.#durable();
    return true;
  }

  // ------------------------------------------------------------------ reading

  /**
   * Runs a query against the view. Accessors are valid only inside `fn`; return plain values
   * (numbers, strings, `export()`).
   */
  read<T>(fn: (root: View<R>) => T): T {
    // #assertOpen() written out, and the throws a call of their own (#refuse): V8 inlines a query
    // into its caller only while the bytecode of all it goes through fits its budget.
    // (Nor is `fn` checked here: a `typeof` test cost the key-value lookups 12%, four pairs of runs
    // on 7 Dec. A read of something else than a function throws the language's TypeError.)
    if (this.#closed || this.#broken !== undefined) this.#refuse();
    return this.#projector.view.read(fn);
  }

  /**
   * Shows what the view would be with `event` applied now, without storing anything: applies it
   * on top of the view, runs `fn` read-only, then rewinds.
   *
   * `apply` gets the value `append` would give it (the codec's copy, or the payload decoded), and
   * an event `append` would refuse is refused the same way (`PAYLOAD_INVALID`, `EVENT_TOO_LARGE`;
   * an apply that throws: `APPLY_FAILED`), so a preview never shows what an append cannot do.
   */
  preview<T>(event: E, fn: (root: View<R>) => T): T {
    this.#assertOpen();
    if (typeof fn !== 'function') throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `preview takes a function, got ${describeValue(fn)}`);
    const copied = this.#codec.copy?.(event);
    const payload = this.#encode(event, copied);
    const codec = this.#codec;
    const view = this.#projector.view;
    const time = this.#now();
    // (An append would refuse it: see #mint.)
    if (time > MAX_TIMESTAMP) throw timeOutOfRange('the clock reads', time);
    const id = this.#minter.peek(time);
    const apply = this.#options.apply;
    const mark = view.mark(0);
    try {
      view.write(untracked, (root) => {
        let failed = false;
        let failure: unknown;
        try {
          // Decoded in here, as the projector decodes: a codec that fails on its own bytes fails
          // the event.
          const value =
            copied !== undefined
              ? copied.value
              : codec.decode(Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength));
          const result = apply(value, root, { id, time: id.timestamp }) as unknown;
          if (isAsyncResult(result)) {
            failed = true;
            failure = new NoatunError(ErrorCode.INVALID_ARGUMENT, 'apply must be synchronous (it returned a promise)');
          }
        } catch (error) {
          // As at an append (see Projector.applyOne): a failure of this machine is not the event's.
          if (isEnvironmentFailure(error)) throw asEngineError(error, this.#log.path);
          failed = true;
          failure = error;
        }
        if (failed) throw new ApplyFailedError(id, failure);
      });
      return view.read(fn);
    } finally {
      view.rewindTo(mark);
    }
  }

  /**
   * Stored events in id order, in the form {@link ingest} accepts; from `after` (exclusive) when
   * given.
   */
  *messages(options: { readonly after?: MessageId } = {}): Generator<StoredMessage> {
    this.#assertOpen();
    if (options === null || typeof options !== 'object') {
      throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `messages() takes { after }, got ${describeValue(options)}`);
    }
    const after = options.after === undefined ? undefined : idBytes(options.after, 'after');
    for (const stored of this.#log.range(after)) {
      if (after !== undefined && Buffer.compare(stored.key, after) === 0) continue;
      yield this.#toMessage(stored.envelope);
    }
  }

  /** One stored event by id, in the form {@link ingest} accepts, or undefined. */
  message(id: MessageId): StoredMessage | undefined {
    this.#assertOpen();
    const stored = this.#log.get(idBytes(id, 'id'));
    return stored === undefined ? undefined : this.#toMessage(stored.envelope);
  }

  #toMessage(bytes: Uint8Array): StoredMessage {
    // (The log hands out its own copy of the bytes; the parts are views into it.)
    // Verified when it was stored (minted here, or checked by ingest); every receiver checks it
    // again. Re-hashing here cost a sender a fifth of its time in an initial copy.
    const envelope = readEnvelopeUnchecked(bytes);
    if (envelope.parents.length !== 0 && envelope.id.timestamp < this.#finality.time) {
      // Final events have no parents (peers refuse a pre-cutoff event with parents).
      const bare = withParents(envelope, []);
      return { id: bare.id, parents: [], payload: bare.payload, bytes: encodeEnvelope(bare) };
    }
    return { id: envelope.id, parents: envelope.parents, payload: envelope.payload, bytes };
  }

  /** The update heads: stored events that are no stored event's parent, in id order. */
  heads(): MessageId[] {
    this.#assertOpen();
    return [...this.#heads.values()].sort(MessageId.compare);
  }

  /**
   * The stored events whose apply failed (their writes were rolled back), in id order, with the
   * error each threw: the same on every peer that holds them, and after a reopen.
   */
  failures(): ApplyFailure[] {
    this.#assertOpen();
    return this.#projector.failures();
  }

  /** Counts and sizes. */
  /** How many received events wait to be stored (for the replicator: see `WAITING_COUNT`). */
  [WAITING_COUNT](): number {
    return this.#late.size;
  }

  /** The ids of the received events that began to wait since the last call (see `WAITING_COUNT`). */
  [WAITING_NEW](): Uint8Array[] {
    return this.#late.takeNew();
  }

  stats(): DatabaseStats {
    this.#assertOpen();
    const view = this.#projector.view.stats();
    return {
      stored: this.#log.count(),
      pruned: this.#log.getMeta(META_PRUNED, MetaShape.count) ?? 0,
      failedApplies: this.#projector.book.failedCount,
      heads: this.#heads.size,
      parked: this.#inbox.count,
      deferred: this.#late.size,
      reapplied: this.#projector.reapplied,
      rebuilds: this.#projector.rebuilds,
      logBytes: this.#log.byteLength,
      viewBytes: view.viewBytes,
      undoBytes: view.journalBytes,
      openedBy: this.#openedBy,
      cutoffTime: this.#finality.time,
      tombstones: this.#projector.book.tombstoneCount,
      records: this.#projector.book.count,
      pruningPausedUntil: this.#finality.held ? this.#finality.holdUntil : 0,
      writerThread: this.#log.writerThread,
    };
  }

  /**
   * The whole view as a JSON-able tree, with the event that wrote each value: objects with their
   * fields, maps with their entries, lists with their items, and leaves with their value and
   * `writer` (the id of the event that wrote it last, as 32 hex chars; null for a value no event
   * wrote). Opaque data is shown and marked `opaque`. Read-only and untracked; it walks the whole
   * view, so it is for people (the inspector) and tests, not for hot paths. Maps and lists show at
   * most `maxEntries` entries each (default 1000) and count the rest in `truncated`.
   *
   * @example
   * const tree = db.inspectView();
   * const total = tree.fields.find((f) => f.name === 'totalSalary')?.node; // { kind: 'leaf', value: 25, writer: '0196…' }
   */
  inspectView(options?: InspectOptions): ObjectNode {
    this.#assertOpen();
    const projector = this.#projector;
    return inspectView(this.#projector.view, (ordinal) => {
      const id = projector.idOfOrdinal(ordinal);
      return id === undefined ? null : MessageId.fromBytes(id).toString();
    }, options);
  }

  /**
   * Why an event is still stored (or that it is not): the data it owns, the events that read it,
   * whether it is a tombstone, and when the cutoff will let it go. For people, the inspector and
   * tests; it scans every record, so it is not meant for hot paths.
   */
  explain(id: MessageId): Explanation {
    this.#assertOpen();
    const book = this.#projector.book;
    const stored = this.#log.get(idBytes(id, 'id'));
    const cutoff = this.#finality.time;
    const base = { id, cutoffTime: cutoff };
    const r = stored === undefined ? -1 : book.find(stored.ordinal);
    if (stored === undefined || r === -1) {
      return { ...base, stored: stored !== undefined, owns: 0, readBy: [], read: [], tombstone: false, deletedDataOf: [], failed: false, overwrittenAt: null, keptBecause: [] };
    }
    const u32 = this.#projector.view.arena.u32;
    const ordinal = stored.ordinal;
    const idOfOrdinal = (o: number): MessageId | undefined => {
      const id = this.#projector.idOfOrdinal(o);
      return id === undefined ? undefined : MessageId.fromBytes(id);
    };
    const readBy: MessageId[] = [];
    book.forEach((w) => {
      if (book.reads(w).includes(ordinal)) readBy.push(idOfOrdinal(u32[w]!)!);
    });
    const read = Array.from(book.reads(r), idOfOrdinal).filter((x): x is MessageId => x !== undefined);
    const deletedDataOf = Array.from(book.victims(r), idOfOrdinal).filter((x): x is MessageId => x !== undefined);
    const flags = book.flagsOf(r);
    const owns = book.usesOf(r);
    const overwrittenAt = owns === 0 ? book.effectTime(r) : null;
    const keptBecause: string[] = [];
    if ((flags & RecFlag.FAILED) !== 0 && overwrittenAt !== null && overwrittenAt >= cutoff) {
      keptBecause.push('its apply failed: the failure is kept until the cutoff passes it');
    }
    if (owns !== 0) keptBecause.push(`it wrote ${owns} current value${owns === 1 ? '' : 's'} of the view`);
    if (readBy.length !== 0) keptBecause.push(`${readBy.length} stored event${readBy.length === 1 ? '' : 's'} read data it wrote`);
    if (deletedDataOf.length !== 0) keptBecause.push(`it deleted data of ${deletedDataOf.length} stored event${deletedDataOf.length === 1 ? '' : 's'} (a tombstone)`);
    // Inspecting turns pruning off so that looking changes nothing: that is no reason the owner of
    // the database keeps an event (its own program's autoPrune decides), so it is not given.
    if (!this.#autoPrune && !this.#inspecting) keptBecause.push('autoPrune is off');
    else if (overwrittenAt !== null && overwrittenAt >= cutoff) {
      keptBecause.push(`waiting for the cutoff (now ${new Date(cutoff).toISOString()}) to pass ${new Date(overwrittenAt).toISOString()}`);
    } else if (this.#finality.held) {
      keptBecause.push(`pruning is paused until the cutoff passes ${new Date(this.#finality.holdUntil).toISOString()} (events arrived behind the cutoff)`);
    }
    return {
      ...base,
      stored: true,
      owns,
      readBy,
      read,
      tombstone: book.isTombstone(r),
      deletedDataOf,
      failed: (flags & RecFlag.FAILED) !== 0,
      overwrittenAt,
      keptBecause,
    };
  }

  /**
   * Stores the events still waiting for the re-application budget (see {@link ingest}), waits for
   * pending writes, flushes the view, marks it clean and closes. Idempotent: every call settles
   * with the first, once the database is closed and its directory unlocked.
   */
  close(): Promise<void> {
    // (A second call that returned at once let its caller reopen the directory, which was still
    // locked, or exit the process while the first call's commit was in flight.)
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#late.stop();
    // Events still waiting for the re-application budget are stored rather than dropped (their
    // ingest was answered, and a local source may not offer them again); before the database
    // counts as closed, since listeners hear of them and may read it.
    if (this.#late.size !== 0 && this.#broken === undefined) this.#late.storeNow();
    this.#closed = true;
    if (this.#checkpointTimer !== undefined) clearTimeout(this.#checkpointTimer);
    // A failure reported before (the database is broken) is not thrown again.
    const reported = this.#broken;
    let failure: unknown;
    try {
      await this.#log.written();
      // A view that is not what the log holds stays dirty: the next open puts it right.
      if (this.#broken === undefined) this.#seal();
    } catch (error) {
      this.#broken ??= asEngineError(error, this.#log.path);
      failure = error;
    }
    try {
      this.#projector.view.close();
      await this.#log.close();
    } catch (error) {
      failure ??= error;
    } finally {
      this.#releaseLock();
    }
    if (failure !== undefined && reported === undefined) throw failure;
  }
}

/**
 * An error out of projection as the engine reports it: a `NoatunError` as is; anything else (the
 * call stack or memory ran out while applying) as {@link ErrorCode.RESOURCE_EXHAUSTED}.
 */
function asEngineError(error: unknown, logFile: string): NoatunError {
  if (error instanceof NoatunError) return error;
  const damage = logDamageFrom(error, logFile);
  if (damage !== undefined) return damage;
  return new NoatunError(
    ErrorCode.RESOURCE_EXHAUSTED,
    `applying the batch ran out of resources on this machine (${String(error)}); nothing of it was stored`,
    { cause: error },
  );
}

/**
 * `RESOURCE_EXHAUSTED` for an open that ran out of stack or memory while it applied the stored
 * events (a rebuild); undefined for any other error. (An apply that recurses deeply, or a codec's
 * decode, can need more stack than this process has: a plain `RangeError` named no cause.)
 */
function outOfResources(error: unknown): NoatunError | undefined {
  if (!(error instanceof RangeError) || !isEnvironmentFailure(error)) return undefined;
  return new NoatunError(
    ErrorCode.RESOURCE_EXHAUSTED,
    `opening ran out of resources on this machine while applying the stored events (${error.message}); the view is made again at the next open: open it in a process with more (node --stack-size, --max-old-space-size)`,
    { cause: error },
  );
}

/**
 * After a rebuild for a changed schema: throws `SCHEMA_MISMATCH` when every one of the `stored`
 * events failed to apply with the new schema (see {@link DatabaseOptions.acceptSchemaChange}).
 */
function refuseFailingSchema(projector: { readonly book: { readonly failedCount: number }; failures(): ApplyFailure[] }, stored: number): void {
  // Counted first: listing the failures looks each one's id up in the log.
  if (stored === 0 || projector.book.failedCount < stored) return;
  const failures = projector.failures();
  if (failures.length < stored) return;
  throw new NoatunError(
    ErrorCode.SCHEMA_MISMATCH,
    `the schema differs from the one this database's view was made with, and none of its ${stored} events applies with it (the first fails with ${failures[0]!.error}); open it with the schema its events were written for, migrate them, or pass acceptSchemaChange: true`,
  );
}

/**
 * Takes the events of ordinals `range` (a batch that fails to apply as it was to be applied: see
 * `Database.open`) out of the log, with the log's mark of it; returns their ids.
 */
function withdrawBatch(log: EventLog, range: readonly [number, number]): MessageId[] {
  const ids: MessageId[] = [];
  for (const stored of log.range()) {
    if (stored.ordinal >= range[0] && stored.ordinal <= range[1]) ids.push(MessageId.fromBytes(Uint8Array.from(stored.key)));
  }
  for (const id of ids) log.remove(id.bytes);
  log.setMeta(META_UNCONFIRMED, null);
  return ids;
}

/**
 * Refuses to open a database with another app than the one whose events it holds: that app's
 * apply would find nothing to do with them (or fail), they would own nothing, and pruning would
 * remove them for good once the cutoff passed them. The first open that names its app records
 * the name (with its first commit) unless `record` is false (`inspect`); an open that names none
 * is not checked.
 */
function refuseOtherApp(log: EventLog, directory: string, name: string | undefined, record: boolean): void {
  if (name === undefined) return;
  const recorded = log.getMeta(META_APP_NAME, MetaShape.text);
  if (recorded === undefined) {
    if (record) log.setMeta(META_APP_NAME, name);
  } else if (recorded !== name) {
    throw new NoatunError(
      ErrorCode.SCHEMA_MISMATCH,
      `database ${directory} holds the events of the app '${recorded}', not of '${name}': open it with its own app (another app's apply would leave its events without effect, and pruning would remove them)`,
    );
  }
}

/**
 * Refuses (`CORRUPT_FILE`) a log that holds events but lacks what every commit that stored them
 * wrote beside them: the next ordinal and the heads (and the log's id, written before any): the
 * metadata page was damaged. Trusted, the missing values started afresh (a new log id made the
 * view be made again, the ordinals counted from 1 again beside the stored ones).
 */
function refuseDamagedMeta(log: EventLog): void {
  if (log.count() === 0) return;
  const missing = log.getMeta(META_LOG_ID, MetaShape.id) === undefined
    ? 'id'
    : log.getMeta(META_NEXT_ORDINAL, MetaShape.count) === undefined
      ? 'next ordinal'
      : log.getMeta(META_HEADS, MetaShape.idList) === undefined
        ? 'heads'
        : undefined;
  if (missing === undefined) return;
  throw new NoatunError(
    ErrorCode.CORRUPT_FILE,
    `the event log ${log.path} holds ${log.count()} events, but its metadata is damaged (no ${missing} recorded): restore log.mdb from a backup, or take a copy of the events from a peer into a new database`,
  );
}

/** Whether the log's file and its lock file were there before an open, and the log's size. */
interface LogFileState {
  readonly logBytes: number | undefined;
  readonly lockFile: boolean;
}

function logFileState(directory: string): LogFileState {
  const file = path.join(directory, 'log.mdb');
  let logBytes: number | undefined;
  try {
    logBytes = fs.statSync(file).size;
  } catch {
    logBytes = undefined;
  }
  return { logBytes, lockFile: fs.existsSync(`${file}-lock`) };
}

/**
 * After a refused open: a log file the open made (there was none, or an empty one) goes back to
 * what it was, so that the refusal changes nothing (a log deleted beside a view of its events is
 * refused, and left a new log behind). Nothing an app stored can be in such a file: a refused
 * open stores no event.
 */
function forgetMadeLog(directory: string, before: LogFileState): void {
  if (before.logBytes !== undefined && before.logBytes !== 0) return;
  const file = path.join(directory, 'log.mdb');
  try {
    if (before.logBytes === undefined) fs.rmSync(file, { force: true });
    else fs.truncateSync(file, 0);
    if (!before.lockFile) fs.rmSync(`${file}-lock`, { force: true });
  } catch {
    // (Best effort: the refusal is what is reported.)
  }
}

/** Makes the database's directory, or says clearly why it cannot be one. */
function makeDirectory(directory: string): void {
  makeDirectoriesOrRefuse(
    directory,
    (error) =>
      new NoatunError(ErrorCode.INVALID_ARGUMENT, `path ${directory} cannot be a directory: it, or a folder above it, is a file`, {
        cause: error,
      }),
  );
}

/**
 * Refuses to open a log that has never stored an event beside a view that applied events of
 * another log: the log was deleted, emptied or replaced, and making a fresh view would throw away
 * the only thing left of those events (`CORRUPT_FILE`). A view of this log (a crash before its
 * first commit was durable) or of none is rebuilt as usual.
 */
function refuseOrphanView(view: MaterializedView<ObjectSchema<unknown>>, logId: Uint8Array, logPath: string, viewDir: string): void {
  const applied = view.lastApplied;
  if (applied <= 0) return;
  const stored = view.arena.u8.subarray(EngineWord.LOG_ID * 4, EngineWord.LOG_ID * 4 + 16);
  if (stored.every((byte) => byte === 0) || Buffer.compare(stored, Buffer.from(logId)) === 0) return;
  throw new NoatunError(
    ErrorCode.CORRUPT_FILE,
    `the event log ${logPath} holds no event, but the view beside it has applied ${applied} events of another log: the log was deleted, emptied or replaced. Restore the log from a backup; or, to start afresh and let the peers send the events again, remove the view directory ${viewDir} (the view is only derived from the log)`,
  );
}

/**
 * Whether a view loaded from disk can be trusted: closed cleanly, made from this log as it is now
 * (its id and write token), at its last ordinal, and undamaged (its checksum matches).
 */
function viewMatches(view: MaterializedView<ObjectSchema<unknown>>, logId: Uint8Array, nextOrdinal: number, writeToken: Uint8Array | undefined): boolean {
  if (view.dirty) return false;
  if (view.lastApplied !== nextOrdinal - 1) return false;
  const u8 = view.arena.u8;
  const stored = u8.subarray(EngineWord.LOG_ID * 4, EngineWord.LOG_ID * 4 + 16);
  if (Buffer.compare(stored, Buffer.from(logId)) !== 0) return false;
  // The same write token: the log as it was when the view was sealed, not another copy of it that
  // went on apart (of the same id, and perhaps as many events). A log no session wrote a token to
  // yet goes with a view of zeros there (both from before tokens).
  const token = u8.subarray(EngineWord.WRITE_TOKEN * 4, EngineWord.WRITE_TOKEN * 4 + 16);
  if (writeToken === undefined ? token.some((byte) => byte !== 0) : Buffer.compare(token, Buffer.from(writeToken)) !== 0) return false;
  return view.verify();
}
