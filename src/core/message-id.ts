/**
 * MessageId: the 16-byte identity and sort key of an event.
 *
 * Layout (big-endian, compared as unsigned bytes, so byte order = apply order):
 *
 * | bytes  | content                                                        |
 * |--------|----------------------------------------------------------------|
 * | 0..6   | timestamp, ms since the Unix epoch (48 bits)                   |
 * | 6..8   | sequence field (16 bits)                                       |
 * | 8..16  | content hash: first 8 bytes of SHA-256 over (timestamp,        |
 * |        | sequence, salt, payload); parents are left out (pruning edits  |
 * |        | parent lists)                                                  |
 *
 * Fresh ids take a sequence field whose top two bits are `01` or `10` (values 0x4000–0xBFFF), so
 * an id can always be made just before or just after any other id with the same timestamp
 * ({@link MessageId.predecessor}, {@link MessageId.successor}), e.g. for events that undo or
 * pre-empt another.
 */
import { hash } from 'node:crypto';
import { ErrorCode, NoatunError } from '../errors.js';
import { nativeIdHash } from '../view/mapped-file.js';

/** Largest timestamp an id can carry (2^48 - 1 ms, in the year 10889). */
export const MAX_TIMESTAMP = 2 ** 48 - 1;
/** Lowest sequence value of freshly minted ids (top bits 01). */
export const FRESH_SEQUENCE_MIN = 0x4000;
/** Highest sequence value of freshly minted ids (top bits 10). */
export const FRESH_SEQUENCE_MAX = 0xbfff;

const HEX = /^[0-9a-f]{32}$/;

/** Ids per slab of {@link idBytes} (1 KiB: the slab's own cost is spread over enough ids, and a kept id keeps little). */
const SLAB_IDS = 64;
let slab = new Uint8Array(16 * SLAB_IDS);
let slabAt = slab.length;

/**
 * 16 fresh bytes for an id: a view into a shared slab of 1 KiB, as Node's Buffer pools small
 * buffers. A view takes 104 bytes of heap where a Uint8Array of its own takes 232 (its buffer
 * too); ids are made for every event written, and the garbage they leave is collected on the
 * writing thread. A kept id keeps its slab (1 KiB) alive.
 */
function idBytes(): Uint8Array {
  if (slabAt === slab.length) {
    slab = new Uint8Array(16 * SLAB_IDS);
    slabAt = 0;
  }
  const bytes = slab.subarray(slabAt, slabAt + 16);
  slabAt += 16;
  return bytes;
}

/** An event id. Immutable; compare with {@link MessageId.compare}. */
export class MessageId {
  /** The 16 bytes (do not modify). */
  readonly bytes: Uint8Array;
  #key: string | undefined;
  #timestamp: number;

  private constructor(bytes: Uint8Array, timestamp = -1) {
    this.bytes = bytes;
    this.#key = undefined;
    // -1: computed from the bytes when first asked (see the getter).
    this.#timestamp = timestamp;
  }

  /**
   * The 16 bytes as a 16-character latin1 string, for use as a JS `Map` key (computed once per
   * id object; cheaper to hash and compare than the hex form).
   */
  get key(): string {
    if (this.#key === undefined) {
      this.#key = idKey(this.bytes);
    }
    return this.#key;
  }

  /** An id from its 16 bytes (copied). Throws `INVALID_ARGUMENT` for another length. */
  static fromBytes(bytes: Uint8Array): MessageId {
    if (!(bytes instanceof Uint8Array) || bytes.length !== 16) {
      throw new NoatunError(ErrorCode.INVALID_ARGUMENT, 'a MessageId is exactly 16 bytes');
    }
    const own = idBytes();
    own.set(bytes);
    return new MessageId(own);
  }

  /** Wraps 16 bytes the caller will never modify (no copy). */
  static adopt(bytes: Uint8Array): MessageId {
    return new MessageId(bytes);
  }

  /** Parses the 32 lowercase hex characters {@link toString} gives. */
  static parse(hex: string): MessageId {
    if (typeof hex !== 'string' || !HEX.test(hex)) {
      throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `not a MessageId (32 lowercase hex characters): ${String(hex).slice(0, 40)}`);
    }
    return new MessageId(Uint8Array.from(Buffer.from(hex, 'hex')));
  }

  /** Builds an id from its parts (the hash part as 8 bytes). */
  static fromParts(timestamp: number, sequence: number, hash: Uint8Array): MessageId {
    if (!Number.isSafeInteger(timestamp) || timestamp < 0 || timestamp > MAX_TIMESTAMP) {
      throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `timestamp ${timestamp} is outside [0, 2^48)`);
    }
    if (sequence >>> 0 !== sequence || sequence > 0xffff) {
      throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `sequence ${sequence} is outside [0, 0xffff]`);
    }
    const bytes = idBytes();
    writeTimestamp(bytes, timestamp);
    bytes[6] = sequence >>> 8;
    bytes[7] = sequence & 0xff;
    for (let i = 0; i < 8; i++) bytes[8 + i] = hash[i]!;
    // The timestamp is known (every new local id is asked for it, several times); as the bytes
    // give it, so −0 as 0.
    return new MessageId(bytes, timestamp || 0);
  }

  /** Orders ids by their bytes: -1, 0 or 1. */
  static compare(a: MessageId, b: MessageId): number {
    return Math.sign(compareIdBytes(a.bytes, b.bytes));
  }

  /** Milliseconds since the Unix epoch. */
  get timestamp(): number {
    // Computed once per id object: the engine asks several times per event, and each fresh
    // result (beyond 31 bits) is a heap number.
    if (this.#timestamp < 0) {
      const b = this.bytes;
      this.#timestamp = (b[0]! * 2 ** 40) + (b[1]! * 2 ** 32) + ((b[2]! << 24) >>> 0) + (b[3]! << 16) + (b[4]! << 8) + b[5]!;
    }
    return this.#timestamp;
  }

  /** The 16-bit sequence field. */
  get sequence(): number {
    return (this.bytes[6]! << 8) | this.bytes[7]!;
  }

  /** True when both ids have the same bytes. */
  equals(other: MessageId): boolean {
    return MessageId.compare(this, other) === 0;
  }

  /**
   * The (timestamp, sequence) of an id sorting just before every id of this one's
   * (timestamp, sequence): what `db.append(event, { before: id })` uses to make an event that
   * precedes this one. Throws `INVALID_ARGUMENT` when the sequence field is exhausted (0).
   */
  predecessor(): { readonly timestamp: number; readonly sequence: number } {
    const sequence = this.sequence;
    if (sequence === 0) throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `no predecessor of ${this}: sequence exhausted`);
    return { timestamp: this.timestamp, sequence: sequence - 1 };
  }

  /** Like {@link predecessor}, just after this id. Throws at sequence 0xffff. */
  successor(): { readonly timestamp: number; readonly sequence: number } {
    const sequence = this.sequence;
    if (sequence === 0xffff) throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `no successor of ${this}: sequence exhausted`);
    return { timestamp: this.timestamp, sequence: sequence + 1 };
  }

  /** 32 lowercase hex characters. */
  toString(): string {
    return Buffer.from(this.bytes.buffer, this.bytes.byteOffset, 16).toString('hex');
  }

  toJSON(): string {
    return this.toString();
  }

  /** A readable form: ISO time, sequence and hash. */
  describe(): string {
    return `${new Date(this.timestamp).toISOString()}#${this.sequence.toString(16)}:${this.toString().slice(16)}`;
  }
}

function writeTimestamp(bytes: Uint8Array, timestamp: number): void {
  const high = Math.floor(timestamp / 2 ** 32);
  const low = timestamp >>> 0;
  bytes[0] = high >>> 8;
  bytes[1] = high & 0xff;
  bytes[2] = low >>> 24;
  bytes[3] = (low >>> 16) & 0xff;
  bytes[4] = (low >>> 8) & 0xff;
  bytes[5] = low & 0xff;
}

/** The smallest id dated `time` (ms; 0 below 0): where a range of ids from that time starts. */
export function idFloor(time: number): Uint8Array {
  return MessageId.fromParts(Math.max(0, time), 0, new Uint8Array(8)).bytes;
}

/** The ms timestamp of id bytes: their first 6 bytes, big-endian. */
export function idTimestamp(b: Uint8Array): number {
  return b[0]! * 2 ** 40 + b[1]! * 2 ** 32 + ((b[2]! << 24) >>> 0) + (b[3]! << 16) + (b[4]! << 8) + b[5]!;
}

/**
 * 16 id bytes as a 16-character latin1 string, for use as a JS `Map` key. Char codes 0–255 are
 * exactly the latin1 decoding; built in JS it is 3–4× faster than a Buffer round trip into C++,
 * and ingest takes the key of every id and parent it sees. (Other lengths: the latin1 decoding.)
 */
export function idKey(b: Uint8Array): string {
  if (b.length !== 16) return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');
  return String.fromCharCode(b[0]!, b[1]!, b[2]!, b[3]!, b[4]!, b[5]!, b[6]!, b[7]!, b[8]!, b[9]!, b[10]!, b[11]!, b[12]!, b[13]!, b[14]!, b[15]!);
}

/**
 * Orders id bytes (or any byte strings) as unsigned bytes: negative, 0 or positive. Ids (16 bytes)
 * are compared in JS, several times faster than `Buffer.compare`'s call into C++.
 */
export function compareIdBytes(a: Uint8Array, b: Uint8Array): number {
  if (a.length === 16 && b.length === 16) {
    for (let i = 0; i < 16; i++) {
      const d = a[i]! - b[i]!;
      if (d !== 0) return d;
    }
    return 0;
  }
  return Buffer.compare(a, b);
}

// The hash input is assembled in one reusable buffer and hashed with the addon's `idHash` (SHA-256
// through Node's OpenSSL, the digest written back into the buffer): 130 ns for a 100-byte event,
// where `crypto.hash` takes 270 ns, most of it around the hashing (BENCHMARKS.md, run AB). Where
// the addon has no `idHash` (a build of an older source, or a Node whose crypto library is not
// OpenSSL 3) or it fails, the one-shot `crypto.hash`, whose latin1 string result costs less than a
// Buffer.
let hashInput = new Uint8Array(4096);
/** Views of {@link hashInput}'s first n bytes, by n, for n below {@link HASH_VIEWS} (for `crypto.hash`). */
const hashViews: Uint8Array[] = [];
const HASH_VIEWS = 1024;
const EMPTY_HASH = new Uint8Array(8);
/** The addon's `idHash`; null where there is none (resolved at the first hash). */
let native: ((input: Uint8Array, length: number) => void) | null | undefined;

/**
 * Writes an event's 8-byte content hash to `out[at, at + 8)`: the first 8 bytes of SHA-256 over
 * its timestamp, sequence, salt and payload.
 */
function idHashInto(timestamp: number, sequence: number, salt: Uint8Array, payload: Uint8Array, out: Uint8Array, at: number): void {
  const size = 8 + salt.length + payload.length;
  if (size > hashInput.length) {
    hashInput = new Uint8Array(Math.max(size, hashInput.length * 2));
    hashViews.length = 0;
  }
  const input = hashInput;
  writeTimestamp(input, timestamp);
  input[6] = sequence >>> 8;
  input[7] = sequence & 0xff;
  input.set(salt, 8);
  input.set(payload, 8 + salt.length);
  if (native === undefined) native = nativeIdHash() ?? null;
  if (native !== null) {
    try {
      native(input, size);
      for (let i = 0; i < 8; i++) out[at + i] = input[i]!;
      return;
    } catch {
      // OpenSSL refused (it cannot allocate, or has no SHA-256 to fetch): node:crypto from now on.
      native = null;
    }
  }
  // The view of the input's first `size` bytes, made once per size: one per event was 4% of what
  // the receiver of an initial copy allocated.
  let view = size < HASH_VIEWS ? hashViews[size] : undefined;
  if (view === undefined) {
    view = input.subarray(0, size);
    if (size < HASH_VIEWS) hashViews[size] = view;
  }
  const digest = hash('sha256', view, 'binary');
  for (let i = 0; i < 8; i++) out[at + i] = digest.charCodeAt(i);
}

/**
 * Chooses how ids are hashed: `'native'` (the addon's `idHash`, the default where the addon has it)
 * or `'crypto'` (`node:crypto`). For tests, which compare the two; returns whether the addon has one.
 */
export function chooseIdHash(kind: 'native' | 'crypto'): boolean {
  const found = nativeIdHash();
  native = kind === 'native' ? (found ?? null) : null;
  return found !== undefined;
}

/** The 8-byte content hash of an event: the first 8 bytes of SHA-256 over timestamp, sequence, salt and payload. */
export function computeIdHash(timestamp: number, sequence: number, salt: Uint8Array, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(8);
  idHashInto(timestamp, sequence, salt, payload, out, 0);
  return out;
}

/** Where {@link verifyId} puts the hash it compares. */
const verifyScratch = new Uint8Array(8);

/** True when `id`'s hash part matches the content. */
export function verifyId(id: MessageId, salt: Uint8Array, payload: Uint8Array): boolean {
  idHashInto(id.timestamp, id.sequence, salt, payload, verifyScratch, 0);
  const bytes = id.bytes;
  for (let i = 0; i < 8; i++) if (bytes[8 + i] !== verifyScratch[i]) return false;
  return true;
}

/**
 * Mints the ids of one writer's local events: a random sequence start per millisecond in
 * [0x4000, 0x7fff], increasing within a millisecond so consecutive local events keep their order.
 * An earlier time than the last one minted (a backdated event, or a clock set back) gets an id at
 * that earlier time: ids carry the time the application gave.
 */
export class IdMinter {
  #lastTimestamp = -1;
  #lastSequence = 0;
  /** {@link next}'s timestamp, as the last {@link plan} left it. */
  plannedTimestamp = 0;
  /** {@link next}'s sequence, as the last {@link plan} left it. */
  plannedSequence = 0;

  /** The (timestamp, sequence) the next event at `time` would get, without taking it. */
  next(time: number): { readonly timestamp: number; readonly sequence: number } {
    this.plan(time);
    return { timestamp: this.plannedTimestamp, sequence: this.plannedSequence };
  }

  /**
   * {@link next} without the object (every local event asks): sets {@link plannedTimestamp} and
   * {@link plannedSequence}.
   */
  plan(time: number): void {
    const timestamp = Math.min(Math.max(0, Math.floor(time)), MAX_TIMESTAMP);
    this.plannedTimestamp = timestamp;
    if (timestamp > this.#lastTimestamp) {
      this.plannedSequence = FRESH_SEQUENCE_MIN + Math.floor(Math.random() * 0x4000);
    } else if (timestamp === this.#lastTimestamp && this.#lastSequence < FRESH_SEQUENCE_MAX) {
      this.plannedSequence = this.#lastSequence + 1;
    } else if (timestamp < this.#lastTimestamp) {
      // A backdated event: it is not a successor of the local chain; give it a fresh sequence.
      this.plannedSequence = FRESH_SEQUENCE_MIN + Math.floor(Math.random() * 0x4000);
    } else {
      this.plannedTimestamp = Math.min(timestamp + 1, MAX_TIMESTAMP);
      this.plannedSequence = FRESH_SEQUENCE_MIN;
    }
  }

  /** An id with the timestamp and sequence of {@link next}, minimal hash: for previews. */
  peek(time: number): MessageId {
    const { timestamp, sequence } = this.next(time);
    return MessageId.fromParts(timestamp, sequence, new Uint8Array(8));
  }

  /** Mints the id of an event at `time` with this salt and payload. */
  mint(time: number, salt: Uint8Array, payload: Uint8Array): MessageId {
    const { timestamp, sequence } = this.next(time);
    return this.mintAt(timestamp, sequence, salt, payload);
  }

  /** Mints an id at an exact (timestamp, sequence), e.g. from `predecessor()`/`successor()`. */
  mintAt(timestamp: number, sequence: number, salt: Uint8Array, payload: Uint8Array): MessageId {
    const id = MessageId.fromParts(timestamp, sequence, EMPTY_HASH);
    idHashInto(timestamp, sequence, salt, payload, id.bytes, 8);
    if (timestamp > this.#lastTimestamp || (timestamp === this.#lastTimestamp && sequence > this.#lastSequence)) {
      this.#lastTimestamp = timestamp;
      this.#lastSequence = sequence;
    }
    return id;
  }
}
