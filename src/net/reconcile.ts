/**
 * Range-based set reconciliation of event ids (the method of the Negentropy protocol, written
 * for this project): two peers find which ids each lacks with traffic proportional to the
 * difference, not to the size of their sets.
 *
 * A message covers the id space from a lower bound to infinity as consecutive ranges, each
 * described by its upper bound and one of:
 * - `SKIP`: nothing to do (the sender found this range equal);
 * - `FINGERPRINT`: the sender's fingerprint of its ids in the range;
 * - `ID_LIST`: all of the sender's ids in the range.
 *
 * A peer answers a fingerprint that differs from its own by splitting the range into
 * {@link ReconcileOptions.branching} parts of equal count (fingerprints again), or with its id
 * list when the range is small; it answers an id list by computing the difference both ways: ids
 * it has that the peer lacks (`have`: to send) and ids the peer has that it lacks (`need`: to
 * request). A reply with nothing but skips ends the exchange, and is not sent.
 *
 * Wire form: `[version][lower bound]` then per range `[bound][mode][payload]`. A bound is
 * `[length 0..16][bytes]` (the id space value of those bytes followed by zeros; the shortest
 * prefix that separates the two ids around it), or `[0xff]` for infinity, which ends a message.
 * Fingerprints are {@link FINGERPRINT_BYTES} bytes; an id list is a varint count and 16 bytes per id.
 */
import { ErrorCode, NoatunError } from '../errors.js';
import { FINGERPRINT_BYTES, ID_BYTES, type IdIndex } from './id-index.js';

const VERSION = 1;
const INFINITY = 0xff;
const Mode = { SKIP: 0, FINGERPRINT: 1, ID_LIST: 2 } as const;

/** Limits every incoming message is checked against before anything else happens. */
export const RECONCILE_LIMITS = {
  /** Largest message accepted. */
  maxMessageBytes: 1024 * 1024,
  /** Most ranges in one message. */
  maxRanges: 10_000,
} as const;

/** Tuning of the exchange. */
export interface ReconcileOptions {
  /**
   * Parts a differing range is split into.
   * @default 16
   */
  readonly branching?: number;
  /**
   * A differing range with at most this many of our ids is answered with the ids themselves.
   * @default 32
   */
  readonly idListThreshold?: number;
}

/** A malformed reconciliation message (code `BAD_FRAME`). */
export class ReconcileError extends NoatunError {
  constructor(message: string) {
    super(ErrorCode.BAD_FRAME, `reconciliation message: ${message}`);
    this.name = 'ReconcileError';
  }
}

/** A bound: up to 16 bytes (followed by zeros), or null for infinity. */
type Bound = Uint8Array | null;

function compareBounds(a: Bound, b: Bound): number {
  if (a === null) return b === null ? 0 : 1;
  if (b === null) return -1;
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** The shortest prefix of `upper` that is greater than `lower` (both ids, lower < upper). */
function separator(lower: Uint8Array, upper: Uint8Array): Uint8Array {
  let i = 0;
  while (i < ID_BYTES && lower[i] === upper[i]) i++;
  return upper.slice(0, i + 1);
}

/** Appends bytes to a growing buffer. */
class Writer {
  #buffer = new Uint8Array(256);
  length = 0;

  #room(n: number): void {
    if (this.length + n <= this.#buffer.length) return;
    const next = new Uint8Array(Math.max(this.#buffer.length * 2, this.length + n));
    next.set(this.#buffer.subarray(0, this.length));
    this.#buffer = next;
  }

  byte(value: number): void {
    this.#room(1);
    this.#buffer[this.length++] = value;
  }

  bytes(value: Uint8Array): void {
    this.#room(value.length);
    this.#buffer.set(value, this.length);
    this.length += value.length;
  }

  varint(value: number): void {
    let v = value;
    while (v >= 0x80) {
      this.byte((v & 0x7f) | 0x80);
      v = Math.floor(v / 128);
    }
    this.byte(v);
  }

  bound(value: Bound): void {
    if (value === null) this.byte(INFINITY);
    else {
      this.byte(value.length);
      this.bytes(value);
    }
  }

  finish(): Uint8Array {
    return this.#buffer.slice(0, this.length);
  }
}

/** Reads a message, throwing {@link ReconcileError} on anything malformed. */
class Reader {
  readonly #bytes: Uint8Array;
  at = 0;

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
  }

  get done(): boolean {
    return this.at >= this.#bytes.length;
  }

  byte(): number {
    if (this.at >= this.#bytes.length) throw new ReconcileError(`truncated at byte ${this.at}`);
    return this.#bytes[this.at++]!;
  }

  bytes(n: number): Uint8Array {
    if (this.at + n > this.#bytes.length) throw new ReconcileError(`truncated at byte ${this.at}`);
    const out = this.#bytes.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }

  varint(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 5; i++) {
      const b = this.byte();
      value += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) return value;
      scale *= 128;
    }
    throw new ReconcileError(`varint too long at byte ${this.at}`);
  }

  bound(): Bound {
    const length = this.byte();
    if (length === INFINITY) return null;
    if (length > ID_BYTES) throw new ReconcileError(`bound of ${length} bytes`);
    return this.bytes(length).slice();
  }
}

/** One side of a reconciliation; see the module comment. */
export class Reconciler {
  readonly #index: IdIndex;
  #lower: Uint8Array;
  readonly #branching: number;
  readonly #threshold: number;
  /** Ids we have that the peer lacks (to send), in the order found. */
  readonly have: Uint8Array[] = [];
  /** Ids the peer has that we lack (to request). */
  readonly need: Uint8Array[] = [];
  /** Bytes sent and received (for cost accounting). */
  bytesSent = 0;
  bytesReceived = 0;
  /** Messages sent and received. */
  messagesSent = 0;
  messagesReceived = 0;

  /**
   * `lower`: only ids ≥ this bound take part (e.g. the cutoff's timestamp prefix); the initiator
   * chooses it and the responder adopts it from the first message.
   */
  constructor(index: IdIndex, lower: Uint8Array = new Uint8Array(0), options: ReconcileOptions = {}) {
    this.#index = index;
    this.#lower = lower;
    this.#branching = Math.max(2, options.branching ?? 16);
    // At least one id per part: a split never makes empty parts with equal bounds.
    this.#threshold = Math.max(this.#branching, options.idListThreshold ?? 32);
  }

  /** The first message: our whole range, split at once (it saves a round trip). */
  initiate(): Uint8Array {
    const out = new Writer();
    out.byte(VERSION);
    out.bound(this.#lower);
    this.#describe(out, this.#lower, null);
    return this.#sent(out.finish());
  }

  /**
   * Processes a message from the peer, adding to {@link have} and {@link need}; returns the reply,
   * or null when nothing is left to resolve (the exchange is over). Every message carries the
   * lower bound, which the responder adopts.
   */
  reconcile(message: Uint8Array): Uint8Array | null {
    if (message.length > RECONCILE_LIMITS.maxMessageBytes) {
      throw new ReconcileError(`${message.length} bytes is over the limit of ${RECONCILE_LIMITS.maxMessageBytes}`);
    }
    this.bytesReceived += message.length;
    this.messagesReceived++;
    const input = new Reader(message);
    const version = input.byte();
    if (version !== VERSION) throw new ReconcileError(`unknown version ${version}`);
    const lower = input.bound();
    if (lower === null) throw new ReconcileError('the lower bound is infinity');
    // Parse everything before acting, so a malformed message changes nothing.
    const ranges: { upper: Bound; mode: number; payload: Uint8Array | Uint8Array[] | undefined }[] = [];
    let previous: Bound = lower;
    for (;;) {
      if (ranges.length === RECONCILE_LIMITS.maxRanges) throw new ReconcileError(`more than ${RECONCILE_LIMITS.maxRanges} ranges`);
      const upper = input.bound();
      if (compareBounds(upper, previous) <= 0) throw new ReconcileError('bounds are not increasing');
      const mode = input.byte();
      let payload: Uint8Array | Uint8Array[] | undefined;
      if (mode === Mode.FINGERPRINT) payload = input.bytes(FINGERPRINT_BYTES).slice();
      else if (mode === Mode.ID_LIST) {
        const n = input.varint();
        if (n * ID_BYTES > message.length) throw new ReconcileError(`an id list of ${n} ids cannot fit`);
        const ids: Uint8Array[] = [];
        for (let i = 0; i < n; i++) {
          const id = input.bytes(ID_BYTES).slice();
          // Sorted, inside the range: #difference relies on it.
          const low = i === 0 ? previous : ids[i - 1]!;
          if (compareBounds(id, low) < (i === 0 ? 0 : 1) || compareBounds(id, upper) >= 0) {
            throw new ReconcileError('an id list is not sorted or not inside its range');
          }
          ids.push(id);
        }
        payload = ids;
      } else if (mode !== Mode.SKIP) throw new ReconcileError(`unknown range mode ${mode}`);
      ranges.push({ upper, mode, payload });
      previous = upper;
      if (upper === null) break;
    }
    if (!input.done) throw new ReconcileError('bytes after the last range');
    this.#lower = lower;

    const out = new Writer();
    out.byte(VERSION);
    out.bound(lower);
    let from: Bound = lower;
    let pendingSkip = false;
    let anything = false;
    for (const { upper, mode, payload } of ranges) {
      const a = this.#index.rank(from);
      const b = this.#index.rank(upper);
      if (mode === Mode.FINGERPRINT && !equalBytes(payload as Uint8Array, this.#index.fingerprint(a, b))) {
        if (pendingSkip) {
          out.bound(from);
          out.byte(Mode.SKIP);
          pendingSkip = false;
        }
        this.#describe(out, from, upper);
        anything = true;
      } else {
        if (mode === Mode.ID_LIST) this.#difference(payload as Uint8Array[], a, b);
        pendingSkip = true;
      }
      from = upper;
    }
    if (!anything) return null;
    if (pendingSkip) {
      out.bound(null);
      out.byte(Mode.SKIP);
    }
    return this.#sent(out.finish());
  }

  /** Writes our description of [from, upper): an id list if small, else split fingerprints. */
  #describe(out: Writer, from: Bound, upper: Bound): void {
    const index = this.#index;
    const a = index.rank(from);
    const b = index.rank(upper);
    const count = b - a;
    if (count <= this.#threshold) {
      out.bound(upper);
      out.byte(Mode.ID_LIST);
      out.varint(count);
      for (let r = a; r < b; r++) out.bytes(index.at(r));
      return;
    }
    const parts = this.#branching;
    for (let k = 1; k <= parts; k++) {
      const end = k === parts ? b : a + Math.floor((k * count) / parts);
      const start = a + Math.floor(((k - 1) * count) / parts);
      const bound = k === parts ? upper : separator(index.at(end - 1), index.at(end));
      out.bound(bound);
      out.byte(Mode.FINGERPRINT);
      out.bytes(index.fingerprint(start, end));
    }
  }

  /** Compares the peer's ids in a range with ours (ranks [a, b)). */
  #difference(theirs: readonly Uint8Array[], a: number, b: number): void {
    const index = this.#index;
    let i = 0;
    let r = a;
    while (i < theirs.length || r < b) {
      if (r >= b) this.need.push(theirs[i++]!);
      else if (i >= theirs.length) this.have.push(index.at(r++).slice());
      else {
        const d = compareBounds(theirs[i]!, index.at(r));
        if (d === 0) {
          i++;
          r++;
        } else if (d < 0) this.need.push(theirs[i++]!);
        else this.have.push(index.at(r++).slice());
      }
    }
  }

  #sent(message: Uint8Array): Uint8Array {
    this.bytesSent += message.length;
    this.messagesSent++;
    return message;
  }
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
