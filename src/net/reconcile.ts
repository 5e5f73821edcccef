/**
 * Range-based set reconciliation of event ids (the method of the Negentropy protocol, written
 * afresh for this project): two peers learn which ids each lacks with traffic that grows with the
 * difference and the logarithm of the set size, not with the set size.
 *
 * The functions here are pure message transformers over a {@link FingerprintIndex}; the transport
 * carries the bytes. One peer calls {@link Reconciler.initiate}, then each side feeds every message
 * it receives to {@link Reconciler.respond} and sends back the reply, until a reply is `null`.
 *
 * A message covers the reconciled span `[lower, upper)` as consecutive ranges, each given by its
 * upper bound and a mode:
 * - `SKIP`: nothing to say about this range (resolved, or still waiting on the receiver);
 * - `FINGERPRINT`: a question — "this is my fingerprint of the range": the receiver answers nothing
 *   if its own is equal, else its own description of the range: an `ID_LIST` when it holds at most
 *   `idListThreshold` ids there, otherwise fingerprints of parts of equal count (`branching` parts,
 *   or about √n for a range of n ids when that is fewer);
 * - `ID_LIST`: a question — "these are all my ids in the range": the receiver now knows both
 *   differences there and answers with an `ID_DIFF`;
 * - `ID_DIFF`: the answer to an `ID_LIST`: a bitmap over the listed ids marking those the sender
 *   lacks, then the sender's ids in the range that the list lacks. It needs no reply;
 * - `DEFER` (last range only): "I ran out of message budget: I still owe answers to your
 *   questions from here to the end, and will give them in my next messages". The receiver must
 *   reply (so the deferring side gets its turn) and must not ask anything inside that range.
 *
 * Both sides therefore end with the full differences: `have` (ids I hold that the peer lacks) and
 * `need` (ids the peer holds that I lack). A side that receives a message without questions or
 * `DEFER`, and owes nothing, replies `null`: the exchange is over.
 *
 * Wire form: `[version][lower: length 0..16, bytes]` then per range `[bound][mode][payload]`. A bound
 * is `0xff` for plus infinity, else one byte `shared << 4 | (suffix length - 1)` followed by the
 * suffix: the bound is the first `shared` bytes of the previous bound (the span's lower bound for the
 * first range) then the suffix, read as an id followed by zero bytes. Split points are the shortest
 * prefix of an id that separates it from its predecessor, so neighbouring bounds share most bytes.
 * Fingerprints are {@link FINGERPRINT_BYTES} bytes. An id list is a varint count then each id as
 * `[shared][16 - shared bytes]`, sharing its first bytes with the previous id (the range's lower
 * bound for the first): ids close in time share their timestamp prefix, which saves about a quarter.
 * An id diff is the bitmap (one bit per listed id below the range's upper bound) then an id list.
 */
import { ErrorCode, NoatunError } from '../errors.js';
import { FINGERPRINT_BYTES, type FingerprintIndex, ID_BYTES, type IdBound } from './fingerprint-index.js';

/** Version byte every message starts with. */
const VERSION = 1;

/** Range modes on the wire. Retired numbers are never reused. */
const Mode = { SKIP: 0, FINGERPRINT: 1, ID_LIST: 2, ID_DIFF: 3, DEFER: 4 } as const;

/** Bound byte for plus infinity (not a valid `shared << 4 | length - 1`: 15 + 16 > 16 bytes). */
const INFINITY_BOUND = 0xff;

/** Largest message accepted; larger ones are refused unread (a frame of the replication link is 4 MiB). */
export const MAX_RECONCILE_MESSAGE_BYTES = 1024 * 1024;

/** Most ranges in one message, accepted or sent. */
export const MAX_RECONCILE_RANGES = 16_384;

/** Worst-case bytes of one id in a list. */
const LISTED_ID_BYTES = 1 + ID_BYTES;
/** Worst-case bytes of one range's bound and mode. */
const RANGE_HEAD_BYTES = 1 + ID_BYTES + 1;
/** Budget kept free for the closing `SKIP` and `DEFER` ranges of a message. */
const CLOSING_BYTES = 2 * RANGE_HEAD_BYTES + 4;

/** Tuning of an exchange. Both peers must use the same `range`; the rest may differ. */
export interface ReconcileOptions {
  /**
   * The part of the id space reconciled, `[lower, upper)` (e.g. `[timeBound(cutoff), null]` for the
   * ids at or after a cutoff). Both peers must pass the same; a message for another range is
   * refused.
   * @default [null, null] (all ids)
   */
  readonly range?: readonly [lower: IdBound, upper: IdBound];
  /**
   * Most parts a differing range is split into (a range of n ids gets about √n parts when that is
   * fewer). With 16, a million ids on each side differing by one id reconcile in 3 round trips and
   * about 1.3 kB; fewer parts save bytes but add round trips (8: 4 round trips, 0.9 kB).
   * @default 16
   */
  readonly branching?: number;
  /**
   * A differing range where we hold at most this many ids is answered with the ids themselves
   * rather than split further (a list of 16 ids costs about as much as 16 fingerprints).
   * @default 16
   */
  readonly idListThreshold?: number;
  /**
   * Budget of the messages we send; answers that do not fit are deferred to the next message.
   * At most {@link MAX_RECONCILE_MESSAGE_BYTES} minus 64 KiB, at least 4 KiB.
   * @default 262144 (256 KiB)
   */
  readonly maxMessageBytes?: number;
}

/** What one incoming message taught, and the reply to send. */
export interface ReconcileStep {
  /** The message to send to the peer, or `null`: the exchange is over and nothing is sent. */
  readonly reply: Uint8Array | null;
  /** Ids we hold that the peer lacks, learned from this message (to send). */
  readonly have: Uint8Array[];
  /** Ids the peer holds that we lack, learned from this message (to request). */
  readonly need: Uint8Array[];
  /** Whether the peer's message ended in `DEFER` (it still owes answers). */
  readonly peerDeferred: boolean;
}

/** Messages and bytes of an exchange so far, for cost accounting. */
export interface ReconcileStats {
  readonly messagesSent: number;
  readonly messagesReceived: number;
  readonly bytesSent: number;
  readonly bytesReceived: number;
}

/** A malformed, oversized or out-of-protocol reconciliation message (code `BAD_FRAME`). */
export class ReconcileError extends NoatunError {
  /** Byte offset in the message where the problem was seen, when it is about one place. */
  readonly offset: number | undefined;

  constructor(reason: string, offset?: number) {
    super(ErrorCode.BAD_FRAME, `reconciliation message: ${reason}${offset === undefined ? '' : ` (at byte ${offset})`}`);
    this.offset = offset;
  }
}

/** A question of the peer we have yet to answer (or, for `DESCRIBE`, our opening). */
type Question =
  | { readonly mode: typeof Mode.FINGERPRINT; readonly lower: Uint8Array; readonly upper: IdBound; readonly fingerprint: Uint8Array }
  | { readonly mode: typeof Mode.ID_LIST; readonly lower: Uint8Array; readonly upper: IdBound; readonly ids: Uint8Array[] }
  | { readonly mode: typeof DESCRIBE; readonly lower: Uint8Array; readonly upper: IdBound };

/** Not a wire mode: "describe our own range" (the opening message). */
const DESCRIBE = -1;

/** An id list we sent that the peer has not answered yet. */
interface SentList {
  readonly lower: Uint8Array;
  readonly upper: IdBound;
  /** Our ids in the range when we listed them, increasing. */
  readonly ids: Uint8Array[];
}

/** An `ID_DIFF` read from the peer. */
interface Answer {
  /** Index of the answered list in `#awaiting`. */
  readonly list: number;
  readonly upper: IdBound;
  /** Ids of our list that the peer lacks. */
  readonly lacked: Uint8Array[];
  /** The peer's ids in the range that we lack. */
  readonly ids: Uint8Array[];
}

/** A message read and checked in full, before anything acts on it. */
interface ParsedMessage {
  readonly questions: Question[];
  readonly answers: Answer[];
  /** Where the peer's `DEFER` range starts, if it has one. */
  readonly deferFrom: Uint8Array | undefined;
}

/** Compares two bounds as ids (bytes followed by zeros); `null` is plus infinity. */
function compareBounds(a: IdBound, b: IdBound): number {
  if (a === null) return b === null ? 0 : 1;
  if (b === null) return -1;
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** The bound without its trailing zero bytes (the same position in the id order). */
function trimBound(bound: IdBound): IdBound {
  if (bound === null) return null;
  if (bound.length > ID_BYTES) throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `a bound has at most ${ID_BYTES} bytes`);
  let n = bound.length;
  while (n > 0 && bound[n - 1] === 0) n--;
  return bound.slice(0, n);
}

/** The shortest prefix of `upper` that is above `lower` (two ids, `lower < upper`). */
function separator(lower: Uint8Array, upper: Uint8Array): Uint8Array {
  let i = 0;
  while (i < ID_BYTES - 1 && lower[i] === upper[i]) i++;
  return upper.slice(0, i + 1);
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Appends a message, growing its buffer; counts ranges for the budget. */
class Writer {
  #buffer = new Uint8Array(1024);
  length = 0;
  ranges = 0;
  /** The bytes of the last bound written (bounds are encoded against it). */
  #previous: Uint8Array = new Uint8Array(0);

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

  /**
   * An id of a list: `[shared][the other 16 - shared bytes]`, sharing its first bytes with
   * `previous` (the previous id of the list, or the range's lower bound for the first).
   */
  id(id: Uint8Array, previous: Uint8Array): void {
    let shared = 0;
    while (shared < 15 && id[shared] === (previous[shared] ?? 0)) shared++;
    this.byte(shared);
    this.bytes(id.subarray(shared));
  }

  /** An id list: varint count, then the ids against each other (the first against `lower`). */
  ids(ids: readonly Uint8Array[], lower: Uint8Array): void {
    this.varint(ids.length);
    let previous = lower;
    for (const id of ids) {
      this.id(id, previous);
      previous = id;
    }
  }

  /** The span's lower bound, in the message header: `[length][bytes]`. */
  lower(bound: Uint8Array): void {
    this.byte(bound.length);
    this.bytes(bound);
    this.#previous = bound;
  }

  /** Starts a range: its upper bound (trimmed, above the previous one) and mode. */
  range(upper: IdBound, mode: number): void {
    if (upper === null) this.byte(INFINITY_BOUND);
    else {
      const previous = this.#previous;
      let shared = 0;
      const most = Math.min(15, upper.length - 1, previous.length);
      while (shared < most && previous[shared] === upper[shared]) shared++;
      this.byte((shared << 4) | (upper.length - shared - 1));
      this.bytes(upper.subarray(shared));
      this.#previous = upper;
    }
    this.byte(mode);
    this.ranges++;
  }

  finish(): Uint8Array {
    return this.#buffer.slice(0, this.length);
  }
}

/** Reads a message; every read is bounds-checked and throws {@link ReconcileError}. */
class Reader {
  readonly #bytes: Uint8Array;
  at = 0;
  #previous: Uint8Array = new Uint8Array(0);

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
  }

  get remaining(): number {
    return this.#bytes.length - this.at;
  }

  byte(): number {
    if (this.at >= this.#bytes.length) throw new ReconcileError('truncated', this.at);
    return this.#bytes[this.at++]!;
  }

  bytes(n: number): Uint8Array {
    if (n > this.remaining) throw new ReconcileError('truncated', this.at);
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
    throw new ReconcileError('varint longer than 5 bytes', this.at);
  }

  /** A count of ids (each at least 2 bytes) that must fit in the rest of the message. */
  idCount(): number {
    const at = this.at;
    const n = this.varint();
    if (n * 2 > this.remaining) throw new ReconcileError(`${n} ids cannot fit in the message`, at);
    return n;
  }

  /** An id written by `Writer.id` against `previous`. */
  id(previous: Uint8Array): Uint8Array {
    const at = this.at;
    const shared = this.byte();
    if (shared > 15) throw new ReconcileError('malformed id', at);
    const id = new Uint8Array(ID_BYTES);
    for (let i = 0; i < shared; i++) id[i] = previous[i] ?? 0;
    id.set(this.bytes(ID_BYTES - shared), shared);
    return id;
  }

  lower(): Uint8Array {
    const at = this.at;
    const length = this.byte();
    if (length > ID_BYTES) throw new ReconcileError(`a bound of ${length} bytes`, at);
    this.#previous = this.bytes(length).slice();
    return this.#previous;
  }

  bound(): IdBound {
    const at = this.at;
    const head = this.byte();
    if (head === INFINITY_BOUND) return null;
    const shared = head >> 4;
    const length = (head & 15) + 1;
    if (shared + length > ID_BYTES || shared > this.#previous.length) throw new ReconcileError('malformed bound', at);
    const bound = new Uint8Array(shared + length);
    bound.set(this.#previous.subarray(0, shared));
    bound.set(this.bytes(length), shared);
    this.#previous = bound;
    return bound;
  }
}

/**
 * One side of a reconciliation; see the module comment. Not reusable: one instance per exchange.
 * The index may change between messages (ids arriving by gossip); the exchange still ends, and the
 * differences it reports are those of the index at the time each range was compared.
 *
 * A hostile peer can keep an exchange going (every step is bounded, but their number is not);
 * callers bound the exchange in time or messages.
 *
 * @example
 * const client = new Reconciler(clientIndex, { range: [timeBound(cutoff), null] });
 * const server = new Reconciler(serverIndex, { range: [timeBound(cutoff), null] });
 * let message: Uint8Array | null = client.initiate();
 * let side = server;
 * while (message !== null) {
 *   const step = side.respond(message); // step.have: send them; step.need: request them
 *   message = step.reply;
 *   side = side === server ? client : server;
 * }
 */
export class Reconciler {
  readonly #index: FingerprintIndex;
  readonly #lower: Uint8Array;
  readonly #upper: IdBound;
  readonly #branching: number;
  readonly #threshold: number;
  readonly #budget: number;
  #started = false;
  #done = false;
  /** Our id lists the peer has not answered (in id order, disjoint). */
  #awaiting: SentList[] = [];
  /** The peer's questions we deferred, in id order, all at or after {@link #deferredFrom}. */
  #owed: Question[] = [];
  /** Start of the `DEFER` range of our last message: the peer may not ask at or past it. */
  #deferredFrom: Uint8Array | undefined;
  /**
   * Whether our last message asked a question, and whether the peer's last message deferred: a
   * peer may only `DEFER` while a question of ours is open, so one of the two must hold.
   */
  #askedLast = false;
  #peerDeferredLast = false;
  #messagesSent = 0;
  #messagesReceived = 0;
  #bytesSent = 0;
  #bytesReceived = 0;

  constructor(index: FingerprintIndex, options: ReconcileOptions = {}) {
    this.#index = index;
    const [lower, upper] = options.range ?? [null, null];
    this.#lower = trimBound(lower) ?? new Uint8Array(0);
    this.#upper = trimBound(upper);
    if (compareBounds(this.#upper, this.#lower) <= 0) throw new NoatunError(ErrorCode.INVALID_ARGUMENT, 'the reconciled range is empty');
    this.#branching = integerOption('branching', options.branching ?? 16, 2, 64);
    this.#threshold = integerOption('idListThreshold', options.idListThreshold ?? 16, 1, 1024);
    this.#budget = integerOption('maxMessageBytes', options.maxMessageBytes ?? 256 * 1024, 4096, MAX_RECONCILE_MESSAGE_BYTES - 65536);
  }

  /** Whether the exchange is over on our side: send nothing more, expect nothing more. */
  get done(): boolean {
    return this.#done;
  }

  /** Whether our last message ended in `DEFER` (we still owe the peer answers). */
  get deferring(): boolean {
    return this.#deferredFrom !== undefined;
  }

  /**
   * What the exchange holds in memory between messages: the peer's questions we deferred and the
   * ids of our lists awaiting answers. Every step is bounded, but a peer that keeps questions
   * open grows it; callers end the exchange above a bound of their own.
   */
  get pending(): number {
    let ids = 0;
    for (const list of this.#awaiting) ids += list.ids.length;
    return this.#owed.length + ids;
  }

  /** Messages and bytes so far. */
  get stats(): ReconcileStats {
    return {
      messagesSent: this.#messagesSent,
      messagesReceived: this.#messagesReceived,
      bytesSent: this.#bytesSent,
      bytesReceived: this.#bytesReceived,
    };
  }

  /** The opening message, from the side that starts the exchange; called once, before anything else. */
  initiate(): Uint8Array {
    if (this.#started) throw new NoatunError(ErrorCode.INVALID_ARGUMENT, 'initiate() opens an exchange and comes first');
    this.#started = true;
    const composed = this.#compose([{ mode: DESCRIBE, lower: this.#lower, upper: this.#upper }], undefined, [], []);
    this.#commit(composed, this.#awaiting);
    return this.#sent(composed.message);
  }

  /**
   * Takes a message from the peer and returns the reply and the ids learned from it. Throws
   * {@link ReconcileError} (code `BAD_FRAME`) on a malformed or out-of-protocol message, and then
   * nothing has changed.
   */
  respond(message: Uint8Array): ReconcileStep {
    if (this.#done) throw new ReconcileError('a message after the exchange ended');
    if (message.length > MAX_RECONCILE_MESSAGE_BYTES) {
      throw new ReconcileError(`${message.length} bytes is over the limit of ${MAX_RECONCILE_MESSAGE_BYTES}`);
    }
    const parsed = this.#parse(message);
    this.#started = true;
    this.#peerDeferredLast = parsed.deferFrom !== undefined;
    this.#messagesReceived++;
    this.#bytesReceived += message.length;

    const have: Uint8Array[] = [];
    const need: Uint8Array[] = [];
    const kept: SentList[] = [];
    const answered = new Map(parsed.answers.map((answer) => [answer.list, answer]));
    this.#awaiting.forEach((list, i) => {
      const answer = answered.get(i);
      if (answer === undefined) kept.push(list);
      else {
        have.push(...answer.lacked);
        need.push(...answer.ids);
        // A partial answer (the rest deferred): the rest of the list still awaits its answer.
        if (compareBounds(answer.upper, list.upper) < 0) {
          const upper = answer.upper!;
          kept.push({ lower: upper, upper: list.upper, ids: list.ids.filter((id) => compareBounds(id, upper) >= 0) });
        }
      }
    });

    const composed = this.#compose([...parsed.questions, ...this.#owed], parsed.deferFrom, have, need);
    // A question or a DEFER from either side keeps the exchange going (the peer waits for our turn).
    const mustReply = parsed.questions.length > 0 || parsed.deferFrom !== undefined || this.#deferredFrom !== undefined || composed.content;
    if (!mustReply) {
      this.#done = true;
      this.#awaiting = kept;
      this.#owed = [];
      return { reply: null, have, need, peerDeferred: parsed.deferFrom !== undefined };
    }
    this.#commit(composed, kept);
    // Nothing asked or deferred by either side: the peer will have nothing to say.
    this.#done = !composed.asked && composed.deferFrom === undefined && parsed.deferFrom === undefined;
    return { reply: this.#sent(composed.message), have, need, peerDeferred: parsed.deferFrom !== undefined };
  }

  #commit(composed: Composed, kept: SentList[]): void {
    this.#askedLast = composed.asked;
    this.#owed = composed.owed;
    this.#deferredFrom = composed.deferFrom;
    this.#awaiting = [...kept, ...composed.lists].sort((a, b) => compareBounds(a.lower, b.lower));
  }

  #sent(message: Uint8Array): Uint8Array {
    this.#messagesSent++;
    this.#bytesSent += message.length;
    return message;
  }

  /** Reads and checks a whole message against our state; changes nothing. */
  #parse(message: Uint8Array): ParsedMessage {
    const input = new Reader(message);
    const version = input.byte();
    if (version !== VERSION) throw new ReconcileError(`unknown version ${version}`, 0);
    const lower = input.lower();
    if (compareBounds(lower, this.#lower) !== 0) throw new ReconcileError('the message is for another range of ids', 1);
    const questions: Question[] = [];
    const answers: Answer[] = [];
    let deferFrom: Uint8Array | undefined;
    let from: Uint8Array = lower;
    let nextList = 0;
    for (let ranges = 0; ; ranges++) {
      if (ranges === MAX_RECONCILE_RANGES) throw new ReconcileError(`more than ${MAX_RECONCILE_RANGES} ranges`, input.at);
      const at = input.at;
      const upper = input.bound();
      if (compareBounds(upper, from) <= 0) throw new ReconcileError('bounds out of order', at);
      const end = compareBounds(upper, this.#upper);
      if (end > 0) throw new ReconcileError('a bound past the end of the range', at);
      const mode = input.byte();
      if ((mode === Mode.FINGERPRINT || mode === Mode.ID_LIST) && this.#deferredFrom !== undefined && compareBounds(upper, this.#deferredFrom) > 0) {
        throw new ReconcileError('a question inside the range we deferred', at);
      }
      switch (mode) {
        case Mode.SKIP:
          break;
        case Mode.FINGERPRINT:
          questions.push({ mode, lower: from, upper, fingerprint: input.bytes(FINGERPRINT_BYTES).slice() });
          break;
        case Mode.ID_LIST:
          questions.push({ mode, lower: from, upper, ids: readIds(input, from, upper, undefined) });
          break;
        case Mode.ID_DIFF: {
          while (nextList < this.#awaiting.length && compareBounds(this.#awaiting[nextList]!.lower, from) < 0) nextList++;
          const list = this.#awaiting[nextList];
          if (list === undefined || compareBounds(list.lower, from) !== 0 || compareBounds(upper, list.upper) > 0) {
            throw new ReconcileError('an answer to no list of ours', at);
          }
          let listed = 0;
          while (listed < list.ids.length && compareBounds(list.ids[listed]!, upper) < 0) listed++;
          const bitmapAt = input.at;
          const bitmap = input.bytes(Math.ceil(listed / 8));
          if (listed % 8 !== 0 && bitmap[bitmap.length - 1]! >> listed % 8 !== 0) throw new ReconcileError('bits set past the list', bitmapAt);
          const lacked = list.ids.slice(0, listed).filter((_, i) => (bitmap[i >> 3]! & (1 << (i & 7))) !== 0);
          answers.push({ list: nextList, upper, lacked, ids: readIds(input, from, upper, list.ids) });
          nextList++;
          break;
        }
        case Mode.DEFER:
          if (end !== 0) throw new ReconcileError('DEFER before the last range', at);
          deferFrom = from;
          break;
        default:
          throw new ReconcileError(`unknown range mode ${mode}`, at + 1);
      }
      if (end === 0) break;
      from = upper!;
    }
    if (input.remaining !== 0) throw new ReconcileError('bytes after the last range', input.at);
    // An honest side defers only answers it owes us: it may not stall an exchange we asked nothing in.
    if (deferFrom !== undefined && !this.#askedLast && !this.#peerDeferredLast) throw new ReconcileError('DEFER with no question of ours open');
    // Every list of ours is answered, or lies in the deferred range (a partial answer: its rest).
    const answered = new Map(answers.map((answer) => [answer.list, answer]));
    this.#awaiting.forEach((list, i) => {
      const answer = answered.get(i);
      const restFrom = answer === undefined ? list.lower : compareBounds(answer.upper, list.upper) < 0 ? answer.upper : undefined;
      if (restFrom === undefined) return;
      const deferred = answer === undefined ? compareBounds(restFrom, deferFrom ?? null) >= 0 : compareBounds(restFrom, deferFrom ?? null) === 0;
      if (!deferred) throw new ReconcileError('a list of ours left unanswered');
    });
    return { questions, answers, deferFrom };
  }

  /**
   * Writes our next message: answers to `queue` (the peer's questions, then those we deferred)
   * while the budget lasts, stopping before any that reaches into the peer's deferred range;
   * the rest is deferred. Adds the differences found in answered id lists to `have` and `need`.
   */
  #compose(queue: readonly Question[], peerDeferFrom: Uint8Array | undefined, have: Uint8Array[], need: Uint8Array[]): Composed {
    const out = new Writer();
    out.byte(VERSION);
    out.lower(this.#lower);
    const state = { out, cursor: this.#lower as IdBound, content: false, asked: false, lists: [] as SentList[] };
    let owed: Question[] = [];
    for (let i = 0; i < queue.length; i++) {
      const question = queue[i]!;
      if (peerDeferFrom !== undefined && compareBounds(question.upper, peerDeferFrom) > 0) {
        owed = queue.slice(i);
        break;
      }
      // The first answer ignores the budget, so every message makes progress.
      const first = !state.content;
      if (question.mode === Mode.ID_LIST) {
        const rest = this.#answerList(state, question, first, have, need);
        if (rest !== undefined) {
          owed = [rest, ...queue.slice(i + 1)];
          break;
        }
      } else if (question.mode === Mode.FINGERPRINT && equalBytes(question.fingerprint, this.#index.fingerprint(question.lower, question.upper))) {
        // Equal: resolved, nothing to say.
      } else if (!this.#describe(state, question.lower, question.upper, first)) {
        owed = queue.slice(i);
        break;
      }
    }
    let deferFrom: Uint8Array | undefined;
    if (owed.length > 0) {
      deferFrom = owed[0]!.lower;
      this.#emit(state, deferFrom, this.#upper, Mode.DEFER);
      state.content = true;
    } else this.#skipTo(state, this.#upper);
    return { message: out.finish(), content: state.content, asked: state.asked, lists: state.lists, owed, deferFrom };
  }

  /** Writes the range `[lower, upper)` with `mode`, preceded by a `SKIP` over any gap before it. */
  #emit(state: ComposeState, lower: IdBound, upper: IdBound, mode: number): void {
    this.#skipTo(state, lower);
    state.out.range(upper, mode);
    state.cursor = upper;
  }

  /** Covers the gap from the end of the last range to `bound`, if any, with a `SKIP`. */
  #skipTo(state: ComposeState, bound: IdBound): void {
    if (compareBounds(bound, state.cursor) <= 0) return;
    state.out.range(bound, Mode.SKIP);
    state.cursor = bound;
  }

  /** Whether `bytes` more bytes and `ranges` more ranges fit in the message. */
  #fits(state: ComposeState, bytes: number, ranges: number): boolean {
    return state.out.length + bytes + CLOSING_BYTES <= this.#budget && state.out.ranges + ranges + 3 <= MAX_RECONCILE_RANGES;
  }

  /**
   * Describes our ids in `[lower, upper)`: an id list if few, else fingerprints of parts of equal
   * count. Returns false, writing nothing, when it does not fit and is not `first`.
   */
  #describe(state: ComposeState, lower: Uint8Array, upper: IdBound, first: boolean): boolean {
    const index = this.#index;
    const count = index.count(lower, upper);
    if (count <= this.#threshold) {
      if (!first && !this.#fits(state, RANGE_HEAD_BYTES + 5 + count * LISTED_ID_BYTES, 2)) return false;
      const ids = [...index.ids(lower, upper)];
      this.#emit(state, lower, upper, Mode.ID_LIST);
      state.out.ids(ids, lower);
      state.lists.push({ lower, upper, ids });
    } else {
      // A small differing range usually holds a single difference: about √n parts balance the
      // fingerprints sent now against the ids listed next (16 parts of 1.5 ids would waste most).
      const parts = Math.min(this.#branching, Math.max(2, Math.round(Math.sqrt(count))));
      if (!first && !this.#fits(state, parts * (RANGE_HEAD_BYTES + FINGERPRINT_BYTES), parts + 1)) return false;
      const start = index.rank(lower);
      let from = lower;
      for (let k = 1; k <= parts; k++) {
        const end = start + Math.floor((k * count) / parts);
        const bound = k === parts ? upper : separator(index.at(end - 1), index.at(end));
        this.#emit(state, from, bound, Mode.FINGERPRINT);
        state.out.bytes(index.fingerprint(from, bound));
        // Inner bounds are never null; the last part ends the loop.
        from = bound!;
      }
    }
    state.content = true;
    state.asked = true;
    return true;
  }

  /**
   * Answers the peer's id list with an `ID_DIFF`, adding the differences to `have` and `need`.
   * When our ids the peer lacks do not all fit, answers the part of the range that does and
   * returns the question for the rest (the caller defers it); returns the whole question when
   * nothing fits and this is not the `first` answer.
   */
  #answerList(
    state: ComposeState,
    question: Question & { readonly mode: typeof Mode.ID_LIST },
    first: boolean,
    have: Uint8Array[],
    need: Uint8Array[],
  ): Question | undefined {
    const theirs = question.ids;
    const bitmap = new Uint8Array(Math.ceil(theirs.length / 8));
    if (!first && !this.#fits(state, RANGE_HEAD_BYTES + bitmap.length + 5, 2)) return question;
    const room = Math.floor((this.#budget - state.out.length - CLOSING_BYTES - RANGE_HEAD_BYTES - bitmap.length - 5) / LISTED_ID_BYTES);
    const limit = first ? Math.max(1, room) : room;
    const ours: Uint8Array[] = [];
    const lacking: Uint8Array[] = [];
    let i = 0;
    let last: Uint8Array | undefined;
    let split: Uint8Array | undefined;
    for (const id of this.#index.ids(question.lower, question.upper)) {
      while (i < theirs.length && compareBounds(theirs[i]!, id) < 0) {
        bitmap[i >> 3]! |= 1 << (i & 7);
        lacking.push(theirs[i]!);
        last = theirs[i]!;
        i++;
      }
      if (i < theirs.length && equalBytes(theirs[i]!, id)) {
        i++;
        last = id;
        continue;
      }
      if (ours.length >= limit) {
        if (last === undefined) return question;
        split = separator(last, id);
        break;
      }
      ours.push(id);
      last = id;
    }
    if (split === undefined) {
      for (; i < theirs.length; i++) {
        bitmap[i >> 3]! |= 1 << (i & 7);
        lacking.push(theirs[i]!);
      }
    }
    const upper = split ?? question.upper;
    this.#emit(state, question.lower, upper, Mode.ID_DIFF);
    state.out.bytes(bitmap.subarray(0, Math.ceil(i / 8)));
    state.out.ids(ours, question.lower);
    state.content = true;
    have.push(...ours);
    need.push(...lacking);
    if (split === undefined) return undefined;
    return { mode: Mode.ID_LIST, lower: split, upper: question.upper, ids: theirs.slice(i) };
  }
}

/** The message being written. */
interface ComposeState {
  readonly out: Writer;
  /** Where the ranges written so far end. */
  cursor: IdBound;
  /** Whether anything but `SKIP` was written. */
  content: boolean;
  /** Whether a question (fingerprint or id list) was written. */
  asked: boolean;
  /** Id lists written, to check the peer's answers against. */
  readonly lists: SentList[];
}

/** A written message and the state it leaves. */
interface Composed {
  readonly message: Uint8Array;
  readonly content: boolean;
  readonly asked: boolean;
  readonly lists: SentList[];
  /** Questions deferred to later messages. */
  readonly owed: Question[];
  readonly deferFrom: Uint8Array | undefined;
}

/**
 * Reads an id count and the ids: strictly increasing, inside `[lower, upper)`, and, for an answer,
 * none of them in `ours` (the list it answers: the peer cannot lack what it says we lack).
 */
function readIds(input: Reader, lower: Uint8Array, upper: IdBound, ours: readonly Uint8Array[] | undefined): Uint8Array[] {
  const n = input.idCount();
  const ids: Uint8Array[] = [];
  let j = 0;
  for (let k = 0; k < n; k++) {
    const at = input.at;
    const previous = k === 0 ? lower : ids[k - 1]!;
    const id = input.id(previous);
    if (compareBounds(id, previous) < (k === 0 ? 0 : 1) || compareBounds(id, upper) >= 0) {
      throw new ReconcileError('ids not increasing or outside their range', at);
    }
    if (ours !== undefined) {
      while (j < ours.length && compareBounds(ours[j]!, id) < 0) j++;
      if (j < ours.length && equalBytes(ours[j]!, id)) throw new ReconcileError('an id we listed is offered back', at);
    }
    ids.push(id);
  }
  return ids;
}

function integerOption(name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `${name} must be an integer in ${min}..${max}, not ${value}`);
  }
  return value;
}
