/**
 * The projector: applies stored events to the view in id order, and keeps that true when events
 * arrive late by rewinding the view with its undo journal and re-applying.
 *
 * Every event is applied between two journal marks. A throwing `apply` is rolled back to its mark
 * (its writes vanish), the failure is counted in the view (so a rewind undoes the count too) and
 * projection carries on: every peer that applies the same events ends in the same state.
 */
import { ErrorCode, NoatunError } from '../errors.js';
import { Header } from '../view/arena.js';
import type { JournalMark } from '../view/journal.js';
import type { ObjectSchema, View } from '../view/schema.js';
import type { MaterializedView } from '../view/view.js';
import { isAsyncResult } from './async-result.js';
import { EventBook, RECORD_ID_BYTES, RecFlag } from './bookkeeping.js';
import type { Codec } from './codec.js';
import { type BatchImprint, firstDifference, inAnotherWorld } from './determinism.js';
import { decodeEnvelope, type Envelope, readEnvelopeUnchecked } from './envelope.js';
import type { EventLog, StoredEvent } from './log.js';
import type { MetaShape } from './meta-shape.js';
import { compareIdBytes, idFloor, MessageId } from './message-id.js';
import { Pruner } from './pruner.js';

/** What `apply` receives besides the event and the root. */
export interface ApplyContext {
  /** The event's id. */
  readonly id: MessageId;
  /** The event's timestamp in ms since the epoch (`id.timestamp`). */
  readonly time: number;
}

/** The application's deterministic fold of one event into the view. */
export type ApplyFunction<E, R> = (event: E, root: View<R>, ctx: ApplyContext) => void;

/** A recorded failure of `apply` (or of decoding the payload). */
export interface ApplyFailure {
  readonly id: MessageId;
  readonly ordinal: number;
  readonly error: string;
}

/** Engine words in the view header (see {@link Header.ENGINE}). */
export const EngineWord = {
  /** Retired (the count of failed applies; failures are read from the pruning records now). */
  RETIRED_FAILED_APPLIES: Header.ENGINE,
  /** 4 words: the log's identity, so a view is never matched with another directory's log. */
  LOG_ID: Header.ENGINE + 1,
  /**
   * 4 words: the log's write token when the view was sealed (zeros before it had one), so a view
   * is never matched with another copy of its log that went on apart (see `EventLog.writeToken`).
   */
  WRITE_TOKEN: Header.ENGINE + 11,
  // (Engine words 5 to 8 are the pruning records' `BookWord`s; 9 and 10 held the records' chunk
  // in view format 4 and are left alone; 15 is free.)
} as const;

/**
 * How {@link Projector.project} treats a batch that must be all or nothing: on a failure the view
 * is restored to what it was before, `undo` takes the batch out of the log (the projector then
 * re-applies what follows it, if anything), and the error is rethrown.
 */
export interface BatchOptions {
  /** The batch's own applies must not fail (local events): a failure throws {@link ApplyFailedError}. */
  readonly strict: boolean;
  /** Removes the batch's events from the log. */
  readonly undo: () => void;
  /**
   * Apply the batch a second time in another world (see `determinism.ts`) and compare. A
   * difference throws `NON_DETERMINISTIC_APPLY` for a strict batch, and is reported to
   * {@link Projector.onNonDeterministic} for another.
   */
  readonly check?: boolean;
}

/** The author's own apply threw: the event is not stored (see `Database.append`). */
export class ApplyFailedError extends NoatunError {
  /** The id the event would have had. */
  readonly id: MessageId;

  constructor(id: MessageId, cause: unknown) {
    super(ErrorCode.APPLY_FAILED, `apply failed for event ${id.toString()}: ${describeFailure(cause)} (nothing was stored)`, { cause });
    this.id = id;
  }
}

/**
 * A replay met a failure in the batch it was told had not been confirmed (see
 * {@link Projector.replayAll}): the batch must be taken out of the log, as it would have been.
 */
export class UnconfirmedBatchError extends NoatunError {
  /** The batch's ordinals (first, last). */
  readonly range: readonly [number, number];

  constructor(range: readonly [number, number], cause: unknown) {
    super(ErrorCode.APPLY_FAILED, `the last batch (ordinals ${range[0]}–${range[1]}) fails to apply: ${String(cause)}`, { cause });
    this.range = range;
  }
}

/** A late batch's rewind: to the mark of `successor` (-1: a rebuild), undoing these prunes. */
interface LateRewind {
  readonly mark: JournalMark | -1;
  readonly successor: Uint8Array;
  readonly undone: PruneStep[];
}

/**
 * A batch failed and the view could not be put back as it was (putting it back failed too): the
 * view is behind the log, and the database refuses further work until a reopen rebuilds it.
 */
export class ViewRestoreError extends NoatunError {
  constructor(failure: unknown, restoreFailure: unknown) {
    const code = restoreFailure instanceof NoatunError ? restoreFailure.code : ErrorCode.INTERNAL;
    super(code, `projecting a batch failed (${String(failure)}) and so did undoing it (${String(restoreFailure)}); reopen the database to rebuild its view`, {
      cause: restoreFailure,
    });
  }
}

/** Prunes made at journal `position` (see {@link Projector.prune}). */
interface PruneStep {
  readonly position: number;
  readonly ordinals: number[];
}

const META_PRUNE_HISTORY = 'pruneHistory';
/** The shape of {@link META_PRUNE_HISTORY} (see `meta-shape.ts`). */
const PRUNE_HISTORY: MetaShape<PruneStep[]> = {
  is: (value: unknown): value is PruneStep[] =>
    Array.isArray(value) &&
    value.every((step: unknown) => {
      if (step === null || typeof step !== 'object') return false;
      const { position, ordinals } = step as Record<string, unknown>;
      return typeof position === 'number' && Array.isArray(ordinals) && ordinals.every((o) => typeof o === 'number');
    }),
  what: 'a list of pruning steps',
};

/**
 * Reports progress of long work at open: `rebuild` (replaying the log into a fresh view), or
 * `convert-log` (moving a log written before 5 Dec 2026 to the current format, once).
 */
export type ProgressCallback = (progress: {
  readonly phase: 'rebuild' | 'convert-log';
  readonly done: number;
  readonly total: number;
}) => void;

/**
 * Errors that come from this machine, not from the event: they must never be recorded as apply
 * failures, because another peer (or this one, another time) would not see them. A full view or
 * disk, a failed system call, and running out of call stack or memory: how deep the stack is when `apply`
 * runs differs between an append, an ingest, a rewind and a rebuild, and between peers.
 */
export function isEnvironmentFailure(error: unknown): boolean {
  // An apply may throw anything, a revoked proxy included, whose `instanceof` throws: that is the
  // event's failure, not this machine's.
  try {
    if (error instanceof RangeError) {
      return /Maximum call stack size exceeded|Array buffer allocation failed/i.test(error.message);
    }
    if (!(error instanceof NoatunError)) return false;
    return (
      error.code === ErrorCode.VIEW_FULL ||
      error.code === ErrorCode.DISK_FULL ||
      error.code === ErrorCode.SYSTEM_CALL_FAILED ||
      error.code === ErrorCode.CLOSED ||
      error.code === ErrorCode.INTERNAL
    );
  } catch {
    return false;
  }
}

/**
 * The message recorded for a failed apply. Whatever was thrown gives one, the same on every peer:
 * a value whose name, message or conversion to a string throws gets a fixed one.
 */
export function describeFailure(failure: unknown): string {
  try {
    return failure instanceof Error ? `${failure.name}: ${failure.message}` : String(failure);
  } catch {
    return `a thrown ${typeof failure} that cannot be shown`;
  }
}

/** The decoded envelope of a stored record, or undefined when it is damaged or forged. */
function verifyStored(stored: StoredEvent): Envelope | undefined {
  try {
    const envelope = decodeEnvelope(stored.envelope);
    return Buffer.compare(envelope.id.bytes, stored.key) === 0 ? envelope : undefined;
  } catch {
    return undefined;
  }
}

const compareKeys = compareIdBytes;

/** Applies events from the log to the view. */
export class Projector<E, R extends ObjectSchema<unknown>> {
  view: MaterializedView<R>;
  readonly #log: EventLog;
  readonly #apply: ApplyFunction<E, R>;
  readonly #codec: Codec<E>;
  /** Pruning records and the tracking context of applies (lives in the view arena). */
  readonly book: EventBook;
  readonly #pruner: Pruner;
  /**
   * Prunes whose record changes sit in the journal after an event mark: a rewind to before them
   * undoes them, so they are redone after the re-apply. Oldest first; trimmed with the journal.
   */
  #pruneHistory: PruneStep[];
  /**
   * Ordinals of the batch being projected whose apply must not fail (local events: the author's
   * own apply throwing rejects the append instead of storing a failure nobody else has seen).
   */
  #strict: readonly StoredEvent[] | undefined;

  /**
   * The ordinals (first, last) of a local batch a replay applies strictly, as it was first
   * applied (see {@link replayAll}).
   */
  #strictRange: readonly [number, number] | undefined;
  /** The ordinal of the event a replay is applying. */
  #replaying = 0;

  /** Whether `ordinal` is one of the strict batch's events (asked only when an apply fails). */
  #isStrict(ordinal: number): boolean {
    const range = this.#strictRange;
    if (range !== undefined && ordinal >= range[0] && ordinal <= range[1]) return true;
    return this.#strict?.some((stored) => stored.ordinal === ordinal) === true;
  }

  /** Id bytes of the highest applied event. */
  appliedMax: Uint8Array | undefined;
  /** Events re-applied because of late arrivals (for stats and benchmarks). */
  reapplied = 0;
  /** Full rebuilds forced by events older than the undo history. */
  rebuilds = 0;
  /**
   * Whether the undo history has been checked against its checksum. A view loaded from disk is
   * checked lazily, the first time a rewind needs history from before the open.
   */
  historyTrusted = true;

  constructor(view: MaterializedView<R>, log: EventLog, apply: ApplyFunction<E, R>, codec: Codec<E>) {
    this.view = view;
    this.#log = log;
    this.#apply = apply;
    this.#codec = codec;
    this.appliedMax = log.lastKey();
    this.book = new EventBook(view.arena);
    this.#pruner = new Pruner(this.book);
    this.book.onZero = (ordinal, time, reader) => this.#pruner.noteZero(ordinal, time, reader);
    this.#pruner.reset();
    this.#pruneHistory = log.getMeta(META_PRUNE_HISTORY, PRUNE_HISTORY) ?? [];
  }

  /**
   * Applies one stored event at the end of the view. A failing apply is rolled back and recorded
   * (identically on every peer), unless the event is one of a strict batch: then it is rolled
   * back and an {@link ApplyFailedError} is thrown. Environment failures are rolled back and
   * rethrown: they are never the event's failure.
   */
  applyOne(stored: StoredEvent): void {
    const view = this.view;
    const mark = view.mark(stored.ordinal);
    const envelope = stored.decoded ?? readEnvelopeUnchecked(stored.envelope);
    const id = envelope.id;
    // (Whether apply threw, apart from what: `throw undefined` is a failure too.)
    let failed = false;
    let failure: unknown;
    this.book.begin(stored.ordinal, id.timestamp);
    try {
      // Always a Buffer: MessagePack's byte fields take the payload's type, and an apply that calls
      // a Buffer method on them must see the same on every peer. Parsed payloads are Buffers
      // already (see `parse` in envelope.ts); a local event's may be a plain Uint8Array.
      // A local event's first apply gets the codec's copy: the same value the payload decodes to
      // (see Codec.copy), without decoding it. Taken once: an apply may change its event.
      const copy = stored.copy;
      let event: E;
      if (copy !== undefined) {
        stored.copy = undefined;
        event = copy.value as E;
      } else {
        const payload = envelope.payload;
        event = this.#codec.decode(Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength));
      }
      const result = view.writeWith(this.book, this.#apply, event, { id, time: id.timestamp }) as unknown;
      if (isAsyncResult(result)) {
        failed = true;
        failure = new NoatunError(ErrorCode.INVALID_ARGUMENT, 'apply must be synchronous (it returned a promise)');
      }
    } catch (error) {
      if (isEnvironmentFailure(error)) {
        // Not the event's fault (the view is full, the stack ran out): recording it as the
        // event's failure would differ between peers. Undo the partial apply and stop.
        view.rewindTo(mark);
        throw error;
      }
      failed = true;
      failure = error;
    }
    if (!failed) {
      this.book.finish(id.bytes);
    } else {
      view.rewindTo(mark);
      if (this.#isStrict(stored.ordinal)) throw new ApplyFailedError(id, failure);
      view.mark(stored.ordinal);
      // The book keeps what the event read before it threw: its failure may depend on it.
      this.book.finish(id.bytes, describeFailure(failure));
    }
    view.lastApplied = stored.ordinal;
  }

  /** The stored events whose apply failed, in id order (from the records in the view). */
  failures(): ApplyFailure[] {
    const book = this.book;
    const failed: number[] = [];
    book.forEach((r) => {
      if ((book.flagsOf(r) & RecFlag.FAILED) !== 0) failed.push(r);
    });
    const ids = this.#idsOf(failed);
    const u32 = this.view.arena.u32;
    const out = failed.map((r, i): ApplyFailure => ({ id: MessageId.fromBytes(ids[i]!), ordinal: u32[r]!, error: book.failureOf(r) }));
    return out.sort((a, b) => MessageId.compare(a.id, b.id));
  }

  /**
   * The ids of the events of records `records` (their words), from the log (a record keeps only
   * the first bytes of its id). A record whose event the log does not hold is an internal error:
   * records are written for stored events and removed with them.
   */
  #idsOf(records: readonly number[]): Uint8Array[] {
    const book = this.book;
    const u32 = this.view.arena.u32;
    const prefixes = new Uint8Array(records.length * RECORD_ID_BYTES);
    const ordinals = new Uint32Array(records.length);
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      book.idPrefixInto(r, prefixes, i * RECORD_ID_BYTES);
      ordinals[i] = u32[r]!;
    }
    const keys = this.#log.keysOf(prefixes, ordinals);
    return keys.map((key, i) => {
      if (key === undefined) {
        throw new NoatunError(ErrorCode.INTERNAL, `the event log holds no event ${u32[records[i]!]} of the view's pruning records`);
      }
      return key;
    });
  }

  /** The id of the stored event `ordinal` when it has a pruning record, else undefined. */
  idOfOrdinal(ordinal: number): Uint8Array | undefined {
    const r = this.book.find(ordinal);
    return r === -1 ? undefined : this.#idsOf([r])[0];
  }

  /**
   * Projects events just stored in the log (`added`, in any order). Events after everything
   * applied go at the end; an earlier one rewinds the view to just before the first applied
   * event it precedes and re-applies from there. Returns the number of events (re-)applied.
   */
  project(added: readonly StoredEvent[], onProgress?: ProgressCallback, batch?: BatchOptions): number {
    if (added.length === 0) return 0;
    // Before the first journal write since the open: the seal covers the history as it was.
    this.#ensureHistory();
    if (batch === undefined) return this.#project(added, onProgress);
    // All or nothing: on any failure the view is restored to what it was before the batch.
    const before = this.view.arena.position;
    const topBefore = this.view.arena.top;
    const beforeMax = this.appliedMax;
    this.#late = undefined;
    if (batch.strict) this.#strict = added;
    try {
      const applied = this.#project(added, onProgress);
      // (Only batches applied after everything else: a late one re-applied others too.)
      if (batch.check === true && (this.#late as LateRewind | undefined) === undefined) {
        this.#verify(added, before, topBefore, beforeMax, batch.strict);
      }
      return applied;
    } catch (error) {
      this.#strict = undefined;
      // (Read through a cast: TypeScript cannot see that #project sets it.)
      const late = this.#late as LateRewind | undefined;
      try {
        if (late === undefined) {
          this.view.rewindTo(before);
          this.appliedMax = beforeMax;
          batch.undo();
        } else if (late.mark === -1) {
          batch.undo();
          this.rebuild(onProgress);
        } else {
          // A late batch rewound to an earlier event and was re-applying from there: rewind
          // again, and re-apply what was there before, without the batch.
          this.view.rewindTo(late.mark);
          batch.undo();
          this.#applyFrom(late.successor);
          this.#redoPrunes(late.undone);
        }
      } catch (restoreError) {
        throw new ViewRestoreError(error, restoreError);
      }
      throw error;
    } finally {
      this.#strict = undefined;
    }
  }

  /** Hears about events whose apply gave another result the second time (see {@link BatchOptions.check}). */
  onNonDeterministic: ((id: MessageId) => void) | undefined;

  /**
   * Applies a batch that was just applied at the end of the view a second time, from the same
   * view, in another world, and compares what each event wrote (see `determinism.ts`).
   */
  #verify(added: readonly StoredEvent[], before: JournalMark, topBefore: number, beforeMax: Uint8Array | undefined, strict: boolean): void {
    const first = this.#imprint(before, topBefore);
    this.view.rewindTo(before);
    this.appliedMax = beforeMax;
    inAnotherWorld(() => this.#project(added));
    const at = firstDifference(first, this.#imprint(before, topBefore));
    if (at === -1) return;
    const ordered = [...added].sort((a, b) => compareKeys(a.key, b.key));
    const id = MessageId.fromBytes(ordered[Math.min(at, ordered.length - 1)]!.key);
    if (strict) {
      throw new NoatunError(
        ErrorCode.NON_DETERMINISTIC_APPLY,
        `apply gave another result for event ${id.toString()} when applied again with another clock and other random numbers: it must depend only on the event, the view and ctx (use ctx.time and ctx.id, not Date.now() or Math.random()); nothing was stored`,
      );
    }
    this.onNonDeterministic?.(id);
  }

  /** What the events since journal position `before` wrote (see {@link BatchImprint}). */
  #imprint(before: JournalMark, topBefore: number): BatchImprint {
    const arena = this.view.arena;
    // The first segment holds what was written before the first event's mark: nothing.
    const events = arena.changesSince(before).slice(1);
    return { events, top: arena.top, fresh: arena.u32.slice(topBefore, arena.top) };
  }

  /** Where a late batch rewound to (so a failing batch can be undone); see {@link project}. */
  #late: LateRewind | undefined;

  #project(added: readonly StoredEvent[], onProgress?: ProgressCallback): number {
    let first = added[0]!;
    let inOrder = true;
    for (let i = 1; i < added.length; i++) {
      const c = compareKeys(added[i]!.key, added[i - 1]!.key);
      if (c < 0) inOrder = false;
      if (compareKeys(added[i]!.key, first.key) < 0) first = added[i]!;
    }
    const max = this.appliedMax;
    if (inOrder && (max === undefined || compareKeys(first.key, max) > 0)) {
      for (const stored of added) this.applyOne(stored);
      this.appliedMax = added[added.length - 1]!.key;
      return added.length;
    }
    if (max === undefined || compareKeys(first.key, max) > 0) {
      // All after the applied ones, just not given in order.
      return this.#applyFrom(first.key);
    }
    // Late: find the first already-applied event after `first`, rewind to just before it.
    const fresh = new Set<string>();
    for (const stored of added) fresh.add(Buffer.from(stored.key).toString('latin1'));
    let successor: StoredEvent | undefined;
    for (const stored of this.#log.range(first.key)) {
      if (!fresh.has(Buffer.from(stored.key).toString('latin1'))) {
        successor = stored;
        break;
      }
    }
    if (successor === undefined) return this.#applyFrom(first.key);
    this.#ensureHistory();
    const mark = this.view.arena.findMark(successor.ordinal);
    if (mark === -1) {
      this.#late = { mark, successor: successor.key, undone: [] };
      this.rebuild(onProgress);
      return this.#log.count();
    }
    const undone = this.#rewind(mark);
    this.#late = { mark, successor: successor.key, undone };
    this.#forgetFinalBefore(first.key);
    const applied = this.#applyFrom(first.key);
    this.#redoPrunes(undone);
    this.reapplied += applied - added.length;
    return applied;
  }

  /**
   * Whether an event with id `key` may land before the undo history kept (the byte budget or a
   * rebuild dropped older history): applying it may need a rebuild. Conservative: an event just
   * before the oldest kept event might still rewind.
   */
  landsBeforeHistory(key: Uint8Array): boolean {
    const journal = this.view.arena.journal;
    const first = journal.firstMarkFrom(journal.oldest);
    if (first === -1) return true;
    const r = this.book.find(journal.words[journal.physical(first)]!);
    if (r === -1) return true;
    // The record's first id bytes order the two unless they are the same.
    const byPrefix = compareKeys(key.subarray(0, RECORD_ID_BYTES), this.book.idPrefixOf(r));
    return byPrefix !== 0 ? byPrefix < 0 : compareKeys(key, this.#idsOf([r])[0]!) < 0;
  }

  /** Whether an event with id `key` would land before events already applied (a rewind or a rebuild). */
  landsBeforeApplied(key: Uint8Array): boolean {
    const max = this.appliedMax;
    return max !== undefined && compareKeys(key, max) < 0;
  }

  /**
   * Drops undo history older than the first applied event at or after `time` (the cutoff): events
   * before the cutoff are final, so the view never needs to be rewound past them. A late event
   * older than what is kept forces a rebuild instead.
   */
  forgetHistoryBefore(time: number): void {
    const arena = this.view.arena;
    this.#ensureHistory(); // (before the journal changes: see project)
    let first: StoredEvent | undefined;
    for (const stored of this.#log.range(idFloor(time))) {
      first = stored;
      break;
    }
    if (first === undefined) {
      arena.truncateBefore(arena.position);
      return;
    }
    // Usually nothing changed since the last cutoff step: skip the backward scan.
    if (arena.historyStartsAt(first.ordinal)) return;
    this.#ensureHistory();
    const mark = arena.findMark(first.ordinal);
    if (mark !== -1) arena.truncateBefore(mark);
    this.#trimPruneHistory();
  }

  /**
   * Drops the oldest undo history while it holds more than `maxBytes` (the budget on top of the
   * cutoff): what is dropped starts at an event's mark, and a late event older than what is kept
   * is applied by a rebuild instead of a rewind. Writers that outrun the cutoff (or run without
   * pruning, where the cutoff never trims) keep a bounded journal this way.
   */
  trimHistory(maxBytes: number): void {
    const journal = this.view.arena.journal;
    if (journal.byteLength <= maxBytes) return;
    this.#ensureHistory();
    const keepFrom = journal.position - Math.floor(maxBytes / 4);
    const mark = journal.firstMarkFrom(keepFrom);
    this.view.arena.truncateBefore(mark === -1 ? this.view.arena.position : mark);
    this.#trimPruneHistory();
  }

  /** Undoes the event `stored` (already removed from the log) and re-applies what followed it. */
  unapply(stored: StoredEvent, onProgress?: ProgressCallback): void {
    this.#ensureHistory();
    const mark = this.view.arena.findMark(stored.ordinal);
    if (mark === -1) {
      this.rebuild(onProgress);
      return;
    }
    const undone = this.#rewind(mark);
    this.#forgetFinalBefore(stored.key);
    this.appliedMax = undefined;
    // Re-apply everything after the removed event (its successors in id order).
    let last: Uint8Array | undefined;
    for (const next of this.#log.range(stored.key)) {
      this.applyOne(next);
      last = next.key;
    }
    this.appliedMax = last ?? this.#previousKey(stored.key);
    this.#redoPrunes(undone);
  }

  // ------------------------------------------------------------------ pruning

  /**
   * Prunes every event that is final history and whose removal from the log changes nothing (see
   * {@link Pruner}), and removes them from the log; returns their ids.
   */
  prune(cutoff: number): Uint8Array[] {
    const ordinals = this.#pruner.collect(cutoff);
    if (ordinals.length === 0) return [];
    this.#ensureHistory(); // (before the journal changes: see project)
    const book = this.book;
    const position = this.view.arena.position;
    const records = ordinals.map((ordinal) => book.find(ordinal));
    const ids = this.#idsOf(records);
    try {
      for (const r of records) this.#forget(r);
    } catch (error) {
      // The journal found no room (a full disk): the records are put back as they were, and the
      // pruner, which let go of these candidates, reads the records afresh at the next step.
      this.view.rewindTo(position);
      this.#pruner.reset();
      throw error;
    }
    for (const id of ids) this.#log.remove(id);
    this.#pruneHistory.push({ position, ordinals });
    this.#savePruneHistory();
    return ids;
  }

  /** Deletes a record and the read edges it held. */
  #forget(r: number): void {
    const book = this.book;
    const ordinal = this.view.arena.u32[r]!;
    const reads = Array.from(book.reads(r));
    book.remove(ordinal);
    for (const owner of reads) book.dropReader(owner);
  }

  /**
   * Events from `key` on are about to be applied again. The pruner treats what it knows of
   * candidates (events before the cutoff that own nothing) as final, which holds only while
   * nothing before the cutoff is re-applied: when `key` is before the cutoff of its last decision,
   * a re-applied reader may read other data now, so the pruner reads the records afresh next time.
   */
  #forgetFinalBefore(key: Uint8Array): void {
    if (MessageId.fromBytes(key).timestamp < this.#pruner.lastCutoff) this.#pruner.reset();
  }

  /** Rewinds the view to `mark`; returns the prune steps that the rewind undid. */
  #rewind(mark: JournalMark): PruneStep[] {
    this.view.rewindTo(mark);
    const history = this.#pruneHistory;
    let keep = history.length;
    while (keep > 0 && history[keep - 1]!.position >= mark) keep--;
    return history.splice(keep);
  }

  /**
   * Redoes prunes a rewind undid. Their events are final (before the cutoff, owning nothing), so
   * the re-applied events cannot have touched their records: the same changes apply again.
   */
  #redoPrunes(undone: readonly PruneStep[]): void {
    if (undone.length === 0) return;
    const position = this.view.arena.position;
    const ordinals: number[] = [];
    for (const step of undone) {
      for (const ordinal of step.ordinals) {
        const r = this.book.find(ordinal);
        if (r === -1) continue;
        this.#forget(r);
        ordinals.push(ordinal);
      }
    }
    if (ordinals.length !== 0) this.#pruneHistory.push({ position, ordinals });
    this.#savePruneHistory();
  }

  /** Drops prune steps older than the kept undo history (no rewind can reach them). */
  #trimPruneHistory(): void {
    const oldest = this.view.arena.journal.oldest;
    const history = this.#pruneHistory;
    let drop = 0;
    while (drop < history.length && history[drop]!.position < oldest) drop++;
    if (drop !== 0) {
      history.splice(0, drop);
      this.#savePruneHistory();
    }
  }

  #savePruneHistory(): void {
    this.#log.setMeta(META_PRUNE_HISTORY, this.#pruneHistory);
  }

  /** Checks a loaded undo history once; damaged history is dropped (late events then rebuild). */
  #ensureHistory(): void {
    if (this.historyTrusted) return;
    this.historyTrusted = true;
    if (!this.view.verifyHistory()) this.view.forgetHistory();
  }

  #previousKey(key: Uint8Array): Uint8Array | undefined {
    let previous: Uint8Array | undefined;
    for (const stored of this.#log.range()) {
      if (compareKeys(stored.key, key) >= 0) break;
      previous = stored.key;
    }
    return previous;
  }

  #applyFrom(start: Uint8Array): number {
    let count = 0;
    let last: Uint8Array | undefined;
    for (const stored of this.#log.range(start)) {
      this.applyOne(stored);
      last = stored.key;
      count++;
    }
    if (last !== undefined) this.appliedMax = last;
    return count;
  }

  /**
   * Re-applies every stored event from an empty view. The caller has reset the view (a fresh
   * file); `onProgress` hears about every 1% (and the end).
   *
   * `unconfirmed`: the ordinals (first, last) of a batch that was written to the log before it
   * was applied and was never known to apply (see `Database.open`), and whether it was local
   * (1). Its events are applied as they were to be then: if this machine fails applying one, or a
   * local one's apply throws, the replay stops with {@link UnconfirmedBatchError}.
   */
  replayAll(onProgress?: ProgressCallback, unconfirmed?: readonly [number, number, number?]): MessageId[] {
    this.#strictRange = unconfirmed !== undefined && unconfirmed[2] !== 0 ? [unconfirmed[0], unconfirmed[1]] : undefined;
    try {
      return this.#replayAll(onProgress);
    } catch (error) {
      const at = this.#replaying;
      const inBatch = unconfirmed !== undefined && at >= unconfirmed[0] && at <= unconfirmed[1];
      if (inBatch && (error instanceof ApplyFailedError || isEnvironmentFailure(error))) {
        throw new UnconfirmedBatchError([unconfirmed[0], unconfirmed[1]], error);
      }
      throw error;
    } finally {
      this.#strictRange = undefined;
    }
  }

  #replayAll(onProgress?: ProgressCallback): MessageId[] {
    const total = this.#log.count();
    const step = Math.max(1, Math.floor(total / 100));
    let done = 0;
    const discarded: MessageId[] = [];
    this.appliedMax = undefined;
    this.book.reserve(total);
    onProgress?.({ phase: 'rebuild', done, total });
    let previous: Uint8Array | undefined;
    // (Checked: a run whose table is damaged is refused whole, see RunReader.checkAll.)
    for (const stored of this.#log.range(undefined, true)) {
      done++;
      if (done % step === 0) onProgress?.({ phase: 'rebuild', done, total });
      if (previous !== undefined && compareKeys(stored.key, previous) <= 0) {
        throw new NoatunError(
          ErrorCode.CORRUPT_FILE,
          `the event log ${this.#log.path} is damaged: its runs are out of order at ${Buffer.from(stored.key).toString('hex')}. Restore it from a backup, or move the database directory away and let the peers send the events again`,
        );
      }
      previous = stored.key;
      if (this.book.find(stored.ordinal) !== -1) {
        throw new NoatunError(
          ErrorCode.CORRUPT_FILE,
          `the event log ${this.#log.path} is damaged: event ${Buffer.from(stored.key).toString('hex')} has the ordinal ${stored.ordinal} of another. Restore it from a backup, or move the database directory away and let the peers send the events again`,
        );
      }
      // A rebuild re-validates every stored envelope: a record damaged on disk is dropped (and
      // reported) rather than applied, so the view is a replay of what is provably intact.
      const intact = verifyStored(stored);
      if (intact === undefined) {
        discarded.push(MessageId.fromBytes(stored.key));
        this.#log.remove(stored.key);
        continue;
      }
      this.#replaying = stored.ordinal;
      this.applyOne({ key: stored.key, ordinal: stored.ordinal, envelope: stored.envelope, decoded: intact });
      this.appliedMax = stored.key;
    }
    if (done % step !== 0 || total === 0) onProgress?.({ phase: 'rebuild', done, total });
    // The log counts its events in the same transactions that store them. Fewer read back means
    // LMDB's own pages are damaged (it has no checksums: a garbage page can end a cursor early);
    // a view of what was read would silently lack the rest.
    if (done < total) {
      throw new NoatunError(
        ErrorCode.CORRUPT_FILE,
        `the event log ${this.#log.path} is damaged: it counts ${total} events, but only ${done} could be read. Restore it from a backup, or move the database directory away and let the peers send the events again`,
      );
    }
    return discarded;
  }

  /** Set by the Database: resets the view to empty (new files) for a rebuild. */
  resetView: (() => MaterializedView<R>) | undefined;

  /** Rebuilds the view from the whole log; returns the ids of damaged records it dropped. */
  rebuild(onProgress?: ProgressCallback): MessageId[] {
    if (this.resetView === undefined) throw new NoatunError(ErrorCode.INTERNAL, 'projector has no view factory');
    this.view = this.resetView();
    this.book.arena = this.view.arena;
    this.#pruner.reset();
    this.#pruneHistory = [];
    this.#savePruneHistory();
    this.historyTrusted = true;
    this.rebuilds++;
    return this.replayAll(onProgress);
  }
}

