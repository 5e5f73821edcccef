/**
 * The durable event log, in LMDB (lmdb-js): every stored envelope keyed by its 16-byte id (so
 * iteration is apply order), with the event's ordinal, plus the engine's metadata.
 *
 * Writes queued in one event-loop turn (events, removals, metadata) are committed together as one
 * LMDB transaction; {@link EventLog.written} resolves once it is committed and flushed to disk. Until then the entries are kept in an
 * in-memory overlay that every read consults, so the engine can re-apply events it has just
 * queued (a late event's rewind) before they are committed.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Database as LmdbDatabase, open, type RootDatabase } from 'lmdb';
import { ErrorCode, NoatunError } from '../errors.js';
import type { Envelope } from './envelope.js';
import { compareIdBytes, idKey } from './message-id.js';

/** Bytes before the envelope in a stored value (the ordinal, little-endian). */
export const ORDINAL_BYTES = 4;

/** One stored event as the log holds it. */
export interface StoredEvent {
  /** The id's 16 bytes (the LMDB key). */
  readonly key: Uint8Array;
  /** The event's ordinal: its stable identity in view trackers. */
  readonly ordinal: number;
  /** The envelope in its canonical binary form. */
  readonly envelope: Uint8Array;
  /** The decoded envelope, when the writer already has it (saves a parse on apply). */
  readonly decoded?: Envelope;
}

/** Bytes before the envelope in a stored value (the ordinal, little-endian). */
export interface OverlayEntry {
  readonly key: Buffer;
  /** The stored event, or null for a queued removal. */
  readonly event: StoredEvent | null;
  /** The LMDB value to write (undefined for a removal). */
  readonly value: Buffer | undefined;
}

/** Every event key is a 16-byte id: its latin1 string (see {@link idKey}). */
const keyString = idKey;

const compareKeys = compareIdBytes;

/** The LMDB-backed log of one database directory. */
export class EventLog {
  readonly path: string;
  readonly #env: RootDatabase;
  readonly #events: LmdbDatabase<Buffer, Buffer>;
  readonly #meta: LmdbDatabase<unknown, string>;
  readonly #overlay = new Map<string, OverlayEntry>();
  /** Entries and metadata queued in this turn, committed together by {@link #commit}. */
  #pending: OverlayEntry[] = [];
  #pendingMeta = new Map<string, unknown>();
  /** Metadata of the transaction being committed, readable until it is. */
  #committingMeta = new Map<string, unknown>();
  #scheduled = false;
  /** Commits handed to LMDB and not yet done (their entries are still in the overlay). */
  #committing = 0;
  #lastWrite: Promise<unknown> = Promise.resolve();
  #failure: unknown;
  #closed = false;

  private constructor(file: string, env: RootDatabase) {
    this.path = file;
    this.#env = env;
    this.#events = env.openDB<Buffer, Buffer>({ name: 'events', encoding: 'binary', keyEncoding: 'binary' });
    this.#meta = env.openDB<unknown, string>({ name: 'meta', encoding: 'msgpack' });
  }

  /** Opens (creating if missing) the log in `directory`. */
  static open(directory: string): EventLog {
    const file = path.join(directory, 'log.mdb');
    fs.mkdirSync(directory, { recursive: true });
    let env: RootDatabase;
    try {
      env = open({ path: file, compression: false, maxDbs: 8 });
    } catch (cause) {
      throw new NoatunError(ErrorCode.CORRUPT_FILE, `cannot open the event log ${file}: ${(cause as Error).message}`, {
        cause,
      });
    }
    return new EventLog(file, env);
  }

  /** The stored event with this id, or undefined. */
  get(key: Uint8Array): StoredEvent | undefined {
    // No writes pending (a peer serving its log): skip building the overlay's string key.
    const pending = this.#overlay.size === 0 ? undefined : this.#overlay.get(keyString(key));
    if (pending !== undefined) return pending.event === null ? undefined : owned(pending.event);
    const value = this.#events.getBinary(Buffer.from(key.buffer, key.byteOffset, key.byteLength));
    return value === undefined ? undefined : decodeStored(key, value);
  }

  /** Whether an event with this id is stored. */
  has(key: Uint8Array): boolean {
    const pending = this.#overlay.size === 0 ? undefined : this.#overlay.get(keyString(key));
    if (pending !== undefined) return pending.event !== null;
    return this.#events.doesExist(Buffer.from(key.buffer, key.byteOffset, key.byteLength));
  }

  /**
   * Queues an event for storage (visible to reads at once, durable after {@link written}).
   * `event.envelope` must be preceded, in its buffer, by {@link ORDINAL_BYTES} bytes holding the
   * ordinal (see `encodeEnvelope`'s `prefix`), so the stored value is written without a copy.
   */
  put(event: StoredEvent): void {
    this.#assertWritable();
    const envelope = event.envelope;
    if (envelope.byteOffset < ORDINAL_BYTES) throw new NoatunError(ErrorCode.INTERNAL, 'envelope stored without room for the ordinal');
    const value = Buffer.from(envelope.buffer, envelope.byteOffset - ORDINAL_BYTES, envelope.byteLength + ORDINAL_BYTES);
    const ordinal = event.ordinal;
    value[0] = ordinal & 0xff;
    value[1] = (ordinal >>> 8) & 0xff;
    value[2] = (ordinal >>> 16) & 0xff;
    value[3] = ordinal >>> 24;
    const key = Buffer.isBuffer(event.key) ? event.key : Buffer.from(event.key.buffer, event.key.byteOffset, event.key.byteLength);
    this.#queue({ key, event, value });
  }

  /** Queues the removal of an event. */
  remove(key: Uint8Array): void {
    this.#assertWritable();
    this.#queue({ key: Buffer.from(key), event: null, value: undefined });
  }

  /** Queues a metadata value; it commits in the same transaction as the events queued with it. */
  setMeta(name: string, value: unknown): void {
    this.#assertWritable();
    this.#pendingMeta.set(name, value);
    this.#schedule();
  }

  /** A metadata value (the latest queued or committed one). */
  getMeta<T>(name: string): T | undefined {
    if (this.#pendingMeta.has(name)) return this.#pendingMeta.get(name) as T;
    if (this.#committingMeta.has(name)) return this.#committingMeta.get(name) as T;
    return this.#meta.get(name) as T | undefined;
  }

  #queue(entry: OverlayEntry): void {
    this.#overlay.set(keyString(entry.key), entry);
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
    this.#scheduled = false;
    const entries = this.#pending;
    const meta = this.#pendingMeta;
    this.#pending = [];
    this.#pendingMeta = new Map();
    this.#committingMeta = meta;
    const events = this.#events;
    const metaDb = this.#meta;
    this.#committing++;
    const done = this.#env.transaction(() => {
      for (const entry of entries) {
        if (entry.value === undefined) events.remove(entry.key);
        else events.put(entry.key, entry.value);
      }
      for (const [name, value] of meta) metaDb.put(name, value);
    });
    this.#lastWrite = done;
    done.then(
      () => {
        // Committed: reads see the entries in LMDB now, the overlay can let go of them (all at
        // once when nothing was queued since: the usual case, one commit per batch).
        this.#committing--;
        // (Not after a failed commit: its entries were never written, and reads keep seeing them.)
        if (this.#committing === 0 && this.#pending.length === 0 && this.#failure === undefined) {
          this.#overlay.clear();
          entries.length = 0;
        }
        for (const entry of entries) {
          const key = keyString(entry.key);
          if (this.#overlay.get(key) === entry) this.#overlay.delete(key);
        }
        if (this.#committingMeta === meta) this.#committingMeta = new Map();
      },
      (error: unknown) => {
        this.#committing--;
        this.#failure ??= error;
      },
    );
  }

  /**
   * Resolves once everything queued so far is committed and flushed to disk. Rejects (and the log
   * refuses further writes) if a commit failed.
   */
  async written(): Promise<void> {
    this.#commit();
    await this.#lastWrite;
    await this.#env.flushed;
    if (this.#failure !== undefined) throw this.#writeFailure();
  }

  #writeFailure(): NoatunError {
    return new NoatunError(ErrorCode.SYSTEM_CALL_FAILED, `writing the event log failed: ${String(this.#failure)}`, {
      cause: this.#failure,
    });
  }

  #assertWritable(): void {
    if (this.#closed) throw new NoatunError(ErrorCode.CLOSED, 'the database is closed');
    if (this.#failure !== undefined) throw this.#writeFailure();
  }

  /**
   * Stored events in id order from `start` (inclusive; the beginning when omitted), including
   * queued ones. Entries are decoded lazily; do not write to the log while iterating.
   */
  *range(start?: Uint8Array): Generator<StoredEvent> {
    const pending: OverlayEntry[] = [];
    for (const entry of this.#overlay.values()) {
      if (start === undefined || compareKeys(entry.key, start) >= 0) pending.push(entry);
    }
    pending.sort((a, b) => compareKeys(a.key, b.key));
    let p = 0;
    const options = start === undefined ? {} : { start: Buffer.from(start) };
    for (const { key, value } of this.#events.getRange(options)) {
      while (p < pending.length && compareKeys(pending[p]!.key, key) < 0) {
        const event = pending[p++]!.event;
        if (event !== null) yield owned(event);
      }
      if (p < pending.length && compareKeys(pending[p]!.key, key) === 0) {
        const event = pending[p++]!.event;
        if (event !== null) yield owned(event);
        continue;
      }
      yield decodeStored(key, value);
    }
    while (p < pending.length) {
      const event = pending[p++]!.event;
      if (event !== null) yield owned(event);
    }
  }

  /**
   * Ids of stored events in order (committed plus queued) from `start` (inclusive; the beginning
   * when omitted), without reading or copying their envelopes.
   */
  *keys(start?: Uint8Array): Generator<Uint8Array> {
    const pending = [...this.#overlay.values()]
      .filter((entry) => start === undefined || compareKeys(entry.key, start) >= 0)
      .sort((a, b) => compareKeys(a.key, b.key));
    let p = 0;
    const options = start === undefined ? {} : { start: Buffer.from(start) };
    // A pending key is a view into the batch's buffer (the value being written): hand out copies.
    const copy = (key: Uint8Array): Uint8Array => Uint8Array.prototype.slice.call(key) as Uint8Array;
    for (const key of this.#events.getKeys(options) as Iterable<Buffer>) {
      while (p < pending.length && compareKeys(pending[p]!.key, key) < 0) {
        if (pending[p]!.event !== null) yield copy(pending[p]!.key);
        p++;
      }
      if (p < pending.length && compareKeys(pending[p]!.key, key) === 0) {
        if (pending[p]!.event !== null) yield copy(pending[p]!.key);
        p++;
        continue;
      }
      yield key;
    }
    for (; p < pending.length; p++) if (pending[p]!.event !== null) yield copy(pending[p]!.key);
  }

  /** The id bytes of the last stored event (highest id), or undefined when empty. */
  lastKey(): Uint8Array | undefined {
    let last: Uint8Array | undefined;
    // A copy: lmdb-js may reuse the buffer of a key it yields.
    for (const key of this.#events.getKeys({ reverse: true, limit: 1 })) last = Uint8Array.prototype.slice.call(key);
    for (const entry of this.#overlay.values()) {
      if (entry.event !== null && (last === undefined || compareKeys(entry.key, last) > 0)) last = entry.key;
    }
    return last;
  }

  /** Number of stored events (committed plus queued). */
  count(): number {
    // LMDB keeps the entry count in the database's stat (O(1)); lmdb-js's getCount() would walk
    // every entry instead, and the engine asks after every cutoff step.
    let count = (this.#events.getStats() as { entryCount: number }).entryCount;
    for (const entry of this.#overlay.values()) {
      const committed = this.#events.doesExist(entry.key);
      if (entry.event !== null && !committed) count++;
      else if (entry.event === null && committed) count--;
    }
    return count;
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
    this.#commit();
    this.#closed = true;
    try {
      await this.#lastWrite;
      await this.#env.flushed;
    } finally {
      await this.#env.close();
    }
  }
}

/**
 * A queued event as readers get it: its key and envelope are views into the batch's buffer, which
 * is the value being written, so readers get copies (as they do of committed events), which they
 * may keep and change. The decoded form is the writer's own and is shared.
 */
function owned(event: StoredEvent): StoredEvent {
  const copy = (bytes: Uint8Array): Uint8Array => Uint8Array.prototype.slice.call(bytes) as Uint8Array;
  return event.decoded === undefined
    ? { key: copy(event.key), ordinal: event.ordinal, envelope: copy(event.envelope) }
    : { key: copy(event.key), ordinal: event.ordinal, envelope: copy(event.envelope), decoded: event.decoded };
}

function decodeStored(key: Uint8Array, value: Uint8Array): StoredEvent {
  if (value.length < ORDINAL_BYTES) {
    throw new NoatunError(ErrorCode.CORRUPT_FILE, `event log entry ${Buffer.from(key).toString('hex')} is truncated`);
  }
  const ordinal = value[0]! | (value[1]! << 8) | (value[2]! << 16) | (value[3]! * 2 ** 24);
  // Copy: lmdb-js may reuse the buffer a range yields, and callers keep envelopes. (Through
  // Uint8Array's slice: a Buffer's `slice` is a view, not a copy.)
  return { key: Uint8Array.from(key), ordinal, envelope: Uint8Array.prototype.slice.call(value, ORDINAL_BYTES) };
}
