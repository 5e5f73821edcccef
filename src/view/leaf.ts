/**
 * Leaf types: the values a view stores inline next to their tracker word and hands out as plain
 * JS values (numbers, booleans, bigints, strings, byte arrays). Each leaf type is its own class
 * with its own `get`/`set`, so that a generated accessor's call site stays monomorphic.
 *
 * A leaf's slot is its value words followed (or preceded, for 64-bit values) by one tracker word.
 * `get` reports a read of the tracker; `set` validates, takes ownership of the tracker and writes
 * the value with journaling.
 */
import { ErrorCode, NoatunError, ValueError } from '../errors.js';
import type { Arena, WordOffset } from './arena.js';
import { hashBytes, hashU32 } from './key-hash.js';

/** What every leaf type implements. */
export interface LeafType<T> {
  readonly kind: string;
  /** Words of the slot, tracker included. */
  readonly words: number;
  /** 2 when the value needs 8-byte alignment, else 1. */
  readonly align: 1 | 2;
  /** Word offset of the tracker inside the slot. */
  readonly tracker: number;
  /** Word offset of a word of the slot that only alignment pads, if any (a list keeps its element's existence there). */
  readonly spare?: number;
  readonly leaf: true;
  readonly opaque: boolean;
  /** True when the type can be a map key. */
  readonly keyable: boolean;
  /** Canonical description, hashed into the schema hash. */
  readonly description: string;
  /** Tracked read. */
  get(a: Arena, w: WordOffset): T;
  /** Validating tracked write. */
  set(a: Arena, w: WordOffset, value: T): void;
  /** Read without tracking (keys during iteration after a tracked structural read, export). */
  peek(a: Arena, w: WordOffset): T;
  /** Validates and writes, reporting the write as opaque or not. */
  write(a: Arena, w: WordOffset, value: T, opaque: boolean): void;
  /** Releases the tracker (a destroy) and zeroes the slot. */
  destroy(a: Arena, w: WordOffset): void;
}

/** A leaf type usable as a map key: stages a lookup key, compares and stores it. */
export interface KeyType<T> extends LeafType<T> {
  readonly keyable: true;
  /**
   * Validates `key`, keeps it staged for {@link matches}/{@link store}, returns its hash keyed by
   * `seed` (the view's `hashSeed`: see key-hash.ts).
   */
  prepare(key: T, seed: number): number;
  /** Does the key stored at `w` equal the staged key? */
  matches(a: Arena, w: WordOffset): boolean;
  /** Writes the staged key into the (zeroed) slot at `w`, owned by the running event. */
  store(a: Arena, w: WordOffset): void;
}

function invalid(kind: string, value: unknown): never {
  const shown =
    typeof value === 'bigint'
      ? `${value}n`
      : typeof value === 'string'
        ? value.length > 60
          ? `${JSON.stringify(value.slice(0, 40))}… (${value.length} characters)`
          : JSON.stringify(value)
        : String(value);
  throw new ValueError(`${shown} is not a valid ${kind}`);
}

// ------------------------------------------------------------------ 32-bit integers

/** `u8`, `u16`, `u32`: an unsigned integer in one word. */
export class UintLeaf implements KeyType<number> {
  readonly words = 2;
  readonly align = 1 as const;
  readonly tracker = 1;
  readonly leaf = true as const;
  readonly opaque = false;
  readonly keyable = true as const;
  readonly kind: string;
  readonly description: string;
  readonly max: number;
  #staged = 0;

  constructor(kind: 'u8' | 'u16' | 'u32', max: number) {
    this.kind = kind;
    this.description = kind;
    this.max = max;
  }

  get(a: Arena, w: WordOffset): number {
    a.read(w + 1);
    return a.u32[w]!;
  }

  set(a: Arena, w: WordOffset, value: number): void {
    this.write(a, w, value, false);
  }

  peek(a: Arena, w: WordOffset): number {
    return a.u32[w]!;
  }

  write(a: Arena, w: WordOffset, value: number, opaque: boolean): void {
    // (typeof first: `>>>` throws a TypeError of its own for a bigint or a symbol.)
    if (typeof value !== 'number' || value >>> 0 !== value || value > this.max) invalid(this.kind, value);
    a.ownValue(w, opaque);
    a.u32[w] = value;
  }

  destroy(a: Arena, w: WordOffset): void {
    a.release(w + 1);
    a.set32(w, 0);
  }

  prepare(key: number, seed: number): number {
    if (typeof key !== 'number' || key >>> 0 !== key || key > this.max) invalid(`${this.kind} key`, key);
    this.#staged = key;
    return hashU32(key ^ seed);
  }

  matches(a: Arena, w: WordOffset): boolean {
    return a.u32[w] === this.#staged;
  }

  store(a: Arena, w: WordOffset): void {
    a.own(w + 1, false);
    a.set32(w, this.#staged);
  }
}

/** `i32`: a signed integer in one word. */
export class I32Leaf implements KeyType<number> {
  readonly kind = 'i32';
  readonly description = 'i32';
  readonly words = 2;
  readonly align = 1 as const;
  readonly tracker = 1;
  readonly leaf = true as const;
  readonly opaque = false;
  readonly keyable = true as const;
  #staged = 0;

  get(a: Arena, w: WordOffset): number {
    a.read(w + 1);
    return a.i32[w]!;
  }

  set(a: Arena, w: WordOffset, value: number): void {
    this.write(a, w, value, false);
  }

  peek(a: Arena, w: WordOffset): number {
    return a.i32[w]!;
  }

  write(a: Arena, w: WordOffset, value: number, opaque: boolean): void {
    if (typeof value !== 'number' || (value | 0) !== value) invalid('i32', value);
    a.ownValue(w, opaque);
    a.i32[w] = value;
  }

  destroy(a: Arena, w: WordOffset): void {
    a.release(w + 1);
    a.set32(w, 0);
  }

  prepare(key: number, seed: number): number {
    if (typeof key !== 'number' || (key | 0) !== key) invalid('i32 key', key);
    this.#staged = key;
    return hashU32(key ^ seed);
  }

  matches(a: Arena, w: WordOffset): boolean {
    return a.i32[w] === this.#staged;
  }

  store(a: Arena, w: WordOffset): void {
    a.own(w + 1, false);
    a.j1(w);
    a.i32[w] = this.#staged;
  }
}

/** `bool`: 0 or 1 in one word. */
export class BoolLeaf implements LeafType<boolean> {
  readonly kind = 'bool';
  readonly description = 'bool';
  readonly words = 2;
  readonly align = 1 as const;
  readonly tracker = 1;
  readonly leaf = true as const;
  readonly opaque = false;
  readonly keyable = false;

  get(a: Arena, w: WordOffset): boolean {
    a.read(w + 1);
    return a.u32[w] !== 0;
  }

  set(a: Arena, w: WordOffset, value: boolean): void {
    this.write(a, w, value, false);
  }

  peek(a: Arena, w: WordOffset): boolean {
    return a.u32[w] !== 0;
  }

  write(a: Arena, w: WordOffset, value: boolean, opaque: boolean): void {
    if (typeof value !== 'boolean') invalid('bool', value);
    a.ownValue(w, opaque);
    a.u32[w] = value ? 1 : 0;
  }

  destroy(a: Arena, w: WordOffset): void {
    a.release(w + 1);
    a.set32(w, 0);
  }
}

// ------------------------------------------------------------------ 64-bit values

/** `f64` and `time` (ms since the epoch): a float64 in two words, then the tracker. */
export class F64Leaf implements LeafType<number> {
  readonly words = 4;
  readonly align = 2 as const;
  readonly tracker = 2;
  readonly spare = 3;
  readonly leaf = true as const;
  readonly opaque = false;
  readonly keyable = false;
  readonly kind: 'f64' | 'time';
  readonly description: string;

  constructor(kind: 'f64' | 'time') {
    this.kind = kind;
    this.description = kind;
  }

  get(a: Arena, w: WordOffset): number {
    a.read(w + 2);
    return a.f64[w >>> 1]!;
  }

  set(a: Arena, w: WordOffset, value: number): void {
    this.write(a, w, value, false);
  }

  peek(a: Arena, w: WordOffset): number {
    return a.f64[w >>> 1]!;
  }

  write(a: Arena, w: WordOffset, value: number, opaque: boolean): void {
    if (typeof value !== 'number') invalid(this.kind, value);
    if (this.kind === 'time' && !(Number.isSafeInteger(value) && value >= 0 && value < 2 ** 48)) invalid('time (ms)', value);
    a.own(w + 2, opaque);
    a.j2(w);
    a.f64[w >>> 1] = value;
  }

  destroy(a: Arena, w: WordOffset): void {
    a.release(w + 2);
    a.j2(w);
    a.f64[w >>> 1] = 0;
  }
}

/** `u64` and `i64`: a bigint in two words, then the tracker. */
export class BigLeaf implements KeyType<bigint> {
  readonly words = 4;
  readonly align = 2 as const;
  readonly tracker = 2;
  readonly spare = 3;
  readonly leaf = true as const;
  readonly opaque = false;
  readonly keyable = true as const;
  readonly kind: 'u64' | 'i64';
  readonly description: string;
  readonly signed: boolean;
  #staged = 0n;

  constructor(kind: 'u64' | 'i64') {
    this.kind = kind;
    this.description = kind;
    this.signed = kind === 'i64';
  }

  get(a: Arena, w: WordOffset): bigint {
    a.read(w + 2);
    return this.signed ? a.i64[w >>> 1]! : a.u64[w >>> 1]!;
  }

  set(a: Arena, w: WordOffset, value: bigint): void {
    this.write(a, w, value, false);
  }

  peek(a: Arena, w: WordOffset): bigint {
    return this.signed ? a.i64[w >>> 1]! : a.u64[w >>> 1]!;
  }

  #check(value: bigint, what: string): void {
    if (typeof value !== 'bigint' || (this.signed ? BigInt.asIntN(64, value) : BigInt.asUintN(64, value)) !== value) {
      invalid(what, value);
    }
  }

  write(a: Arena, w: WordOffset, value: bigint, opaque: boolean): void {
    this.#check(value, this.kind);
    a.own(w + 2, opaque);
    a.j2(w);
    if (this.signed) a.i64[w >>> 1] = value;
    else a.u64[w >>> 1] = value;
  }

  destroy(a: Arena, w: WordOffset): void {
    a.release(w + 2);
    a.j2(w);
    a.u64[w >>> 1] = 0n;
  }

  prepare(key: bigint, seed: number): number {
    this.#check(key, `${this.kind} key`);
    this.#staged = key;
    const bits = BigInt.asUintN(64, key);
    return hashU32(Number(bits & 0xffffffffn) ^ hashU32(Number(bits >> 32n) ^ seed));
  }

  matches(a: Arena, w: WordOffset): boolean {
    return (this.signed ? a.i64[w >>> 1] : a.u64[w >>> 1]) === this.#staged;
  }

  store(a: Arena, w: WordOffset): void {
    a.own(w + 2, false);
    a.j2(w);
    if (this.signed) a.i64[w >>> 1] = this.#staged;
    else a.u64[w >>> 1] = this.#staged;
  }
}

// ------------------------------------------------------------------ variable-length bytes

/** A reusable buffer for staging string and byte keys without allocating per lookup. */
let scratch = Buffer.allocUnsafe(1024);
let stagedLength = 0;

/** The largest staging buffer kept from one value to the next (see {@link scratchFor}). */
const KEPT_SCRATCH_BYTES = 1 << 20;

/**
 * The staging buffer, with room for `bytes`. One grown for a long value is dropped at the next
 * short one: a 40M-character string kept 120 MiB staged for the life of the process.
 */
function scratchFor(bytes: number): Buffer {
  if (bytes > scratch.length) scratch = Buffer.allocUnsafe(bytes);
  else if (scratch.length > KEPT_SCRATCH_BYTES && bytes <= 1024) scratch = Buffer.allocUnsafe(1024);
  return scratch;
}

function stageString(key: string): void {
  stagedLength = scratchFor(key.length * 3).write(key, 0, 'utf8');
}

/**
 * Stages a string key and returns its hash — the same as `hashBytes` over its UTF-8 bytes. ASCII
 * keys (the common case) are copied and hashed in one loop without Buffer's encoder.
 */
function stageAndHashString(key: string, seed: number): number {
  const length = key.length;
  const out = scratchFor(length * 3);
  let h = 0x811c9dc5 ^ seed;
  for (let i = 0; i < length; i++) {
    const c = key.charCodeAt(i);
    if (c >= 0x80) {
      stageString(key);
      return hashBytes(scratch, 0, stagedLength, seed);
    }
    out[i] = c;
    h = Math.imul(h ^ c, 0x01000193);
  }
  stagedLength = length;
  return hashU32(h ^ length);
}

function stageBytes(key: Uint8Array): void {
  scratchFor(key.length).set(key, 0);
  stagedLength = key.length;
}

function matchesStaged(a: Arena, byteOffset: number, length: number): boolean {
  if (length !== stagedLength) return false;
  const u8 = a.u8;
  for (let i = 0; i < length; i++) if (u8[byteOffset + i] !== scratch[i]) return false;
  return true;
}

/**
 * Values of at least this many words (64 bytes) get a block that records its capacity (see
 * {@link BytesLeaf}).
 */
const HEADED_WORDS = 16;

/**
 * `string` (UTF-8) and `bytes` (variable length): slot `[pointer, byte length, tracker]`, the
 * bytes in their own block. A new value that fits the old block is written in place (journaled);
 * a longer one gets a new block.
 *
 * A block of {@link HEADED_WORDS} or more keeps its capacity in the word before the bytes, and its
 * pointer is odd (blocks start at even words; the bytes one word in), so a short value written
 * over a long one (even an empty one) keeps the room for the next long one, and the block is
 * retired (its pages given back once no history reaches it) when a longer value or a destroy
 * leaves it. Without that, a field that went from 1 MiB to `'x'` and back took a new MiB each
 * time, for good: the view grew with the history of writes, not with the data, and `compact()`
 * replayed the same. Smaller blocks (and every block of a view written before) have even
 * pointers and no header: their capacity is their value's length.
 */
export class BytesLeaf<T extends string | Uint8Array> implements KeyType<T> {
  readonly words = 3;
  readonly align = 1 as const;
  readonly tracker = 2;
  readonly leaf = true as const;
  readonly opaque = false;
  readonly keyable = true as const;
  readonly kind: 'string' | 'bytes';
  readonly description: string;
  readonly isString: boolean;

  constructor(kind: 'string' | 'bytes') {
    this.kind = kind;
    this.description = kind;
    this.isString = kind === 'string';
  }

  get(a: Arena, w: WordOffset): T {
    a.read(w + 2);
    return this.peek(a, w);
  }

  set(a: Arena, w: WordOffset, value: T): void {
    this.write(a, w, value, false);
  }

  peek(a: Arena, w: WordOffset): T {
    const u32 = a.u32;
    const length = u32[w + 1]!;
    if (length === 0) return (this.isString ? '' : new Uint8Array(0)) as T;
    const start = u32[w]! * 4;
    if (this.isString) return a.buf.toString('utf8', start, start + length) as T;
    return a.u8.slice(start, start + length) as T;
  }

  write(a: Arena, w: WordOffset, value: T, opaque: boolean): void {
    if (this.isString) {
      if (typeof value !== 'string') invalid('string', value);
      stageString(value);
    } else {
      if (!(value instanceof Uint8Array)) invalid('bytes (Uint8Array)', value);
      stageBytes(value);
    }
    a.own(w + 2, opaque);
    this.#storeStaged(a, w);
  }

  #storeStaged(a: Arena, w: WordOffset): void {
    const length = stagedLength;
    const old = a.u32[w]!;
    const oldWords = (a.u32[w + 1]! + 3) >>> 2;
    const headed = (old & 1) === 1;
    const capacity = headed ? a.u32[old - 1]! : oldWords;
    const words = (length + 3) >>> 2;
    let block: number;
    // The words the value takes, and the old value's beyond them, zeroed so that the bytes of an
    // in-place rewrite never depend on history.
    let cleared = words;
    if (old !== 0 && words <= capacity && (length !== 0 || headed)) {
      block = old;
      cleared = Math.max(words, oldWords);
      a.jn(block, cleared);
    } else if (length === 0) {
      block = 0;
    } else {
      if (headed) a.retire(old - 1, capacity + 1);
      if (words >= HEADED_WORDS) {
        const at = a.alloc(words + 1);
        a.u32[at] = words; // fresh memory above the event's floor: a rewind takes it back whole
        block = at + 1;
      } else {
        block = a.alloc(words);
      }
    }
    if (cleared !== 0) {
      const u8 = a.u8;
      const start = block * 4;
      // A short value by hand; a long one in one native copy.
      if (length < 32) for (let i = 0; i < length; i++) u8[start + i] = scratch[i]!;
      else scratch.copy(u8, start, 0, length);
      u8.fill(0, start + length, start + cleared * 4);
    }
    a.set32(w, block);
    a.set32(w + 1, length);
  }

  destroy(a: Arena, w: WordOffset): void {
    a.release(w + 2);
    const old = a.u32[w]!;
    if ((old & 1) === 1) a.retire(old - 1, a.u32[old - 1]! + 1);
    a.set32(w, 0);
    a.set32(w + 1, 0);
  }

  prepare(key: T, seed: number): number {
    if (this.isString) {
      if (typeof key !== 'string') invalid('string key', key);
      return stageAndHashString(key, seed);
    } else {
      if (!(key instanceof Uint8Array)) invalid('bytes key', key);
      stageBytes(key);
    }
    return hashBytes(scratch, 0, stagedLength, seed);
  }

  matches(a: Arena, w: WordOffset): boolean {
    return matchesStaged(a, a.u32[w]! * 4, a.u32[w + 1]!);
  }

  store(a: Arena, w: WordOffset): void {
    a.own(w + 2, false);
    this.#storeStaged(a, w);
  }
}

/** Converts a fixed-size leaf between its bytes and the JS value users see (e.g. MessageId). */
export interface FixedCodec<T> {
  /** Name of the JS type, for the schema hash and error messages. */
  readonly name: string;
  /** Bytes of the stored form. */
  readonly size: number;
  /** The value stored as `bytes` (exactly {@link FixedCodec.size} of them). */
  decode(bytes: Uint8Array): T;
  /** The stored form of `value`; throws (or returns undefined) when `value` is not a T. */
  encode(value: T): Uint8Array | undefined;
}

const RAW_CODECS = new Map<number, FixedCodec<Uint8Array>>();

/** The codec of `bytes(n)`: values are Uint8Arrays of exactly `n` bytes. */
export function rawCodec(size: number): FixedCodec<Uint8Array> {
  let codec = RAW_CODECS.get(size);
  if (codec === undefined) {
    codec = {
      name: `bytes(${size})`,
      size,
      decode: (bytes) => bytes,
      encode: (value) => (value instanceof Uint8Array && value.length === size ? value : undefined),
    };
    RAW_CODECS.set(size, codec);
  }
  return codec;
}

/** Fixed-size bytes (`bytes(n)`, `messageId`): the bytes inline, then the tracker. */
export class FixedLeaf<T> implements KeyType<T> {
  readonly kind: string;
  readonly description: string;
  readonly words: number;
  readonly align = 1 as const;
  readonly tracker: number;
  readonly leaf = true as const;
  readonly opaque = false;
  readonly keyable = true as const;
  readonly codec: FixedCodec<T>;

  constructor(codec: FixedCodec<T>) {
    const shape = codec as Partial<FixedCodec<T>> | null;
    if (shape === null || typeof shape !== 'object' || typeof shape.name !== 'string' || typeof shape.encode !== 'function' || typeof shape.decode !== 'function') {
      throw new NoatunError(ErrorCode.SCHEMA_INVALID, 's.fixed() takes a codec { name, size, encode, decode }: a string, a number and two functions');
    }
    if (!Number.isInteger(codec.size) || codec.size < 1 || codec.size > 1024) {
      throw new NoatunError(ErrorCode.SCHEMA_INVALID, `fixed-size bytes must be 1 to 1024 bytes, not ${codec.size}`);
    }
    this.codec = codec;
    this.kind = codec.name;
    this.description = `fixed(${codec.name},${codec.size})`;
    this.tracker = (codec.size + 3) >>> 2;
    this.words = this.tracker + 1;
  }

  get(a: Arena, w: WordOffset): T {
    a.read(w + this.tracker);
    return this.peek(a, w);
  }

  set(a: Arena, w: WordOffset, value: T): void {
    this.write(a, w, value, false);
  }

  peek(a: Arena, w: WordOffset): T {
    const start = w * 4;
    return this.codec.decode(a.u8.slice(start, start + this.codec.size));
  }

  #encode(value: T, what: string): Uint8Array {
    let bytes: Uint8Array | undefined;
    try {
      bytes = this.codec.encode(value);
    } catch {
      bytes = undefined;
    }
    if (bytes === undefined || bytes.length !== this.codec.size) invalid(what, value);
    return bytes;
  }

  write(a: Arena, w: WordOffset, value: T, opaque: boolean): void {
    const bytes = this.#encode(value, this.kind);
    a.own(w + this.tracker, opaque);
    a.jn(w, this.tracker);
    a.u8.set(bytes, w * 4);
  }

  destroy(a: Arena, w: WordOffset): void {
    a.release(w + this.tracker);
    a.zero(w, this.tracker);
  }

  prepare(key: T, seed: number): number {
    stageBytes(this.#encode(key, `${this.kind} key`));
    return hashBytes(scratch, 0, stagedLength, seed);
  }

  matches(a: Arena, w: WordOffset): boolean {
    return matchesStaged(a, w * 4, this.codec.size);
  }

  store(a: Arena, w: WordOffset): void {
    a.own(w + this.tracker, false);
    a.jn(w, this.tracker);
    a.u8.set(scratch.subarray(0, stagedLength), w * 4);
  }
}

// ------------------------------------------------------------------ opaque

/**
 * `opaque(T)`: written inside apply like `T`, but never readable there, so it never becomes a
 * read dependency; its writes are reported as opaque (pruning treats such data differently).
 */
export class OpaqueLeaf<T> implements LeafType<T> {
  readonly leaf = true as const;
  readonly opaque = true;
  readonly keyable = false;
  readonly kind: string;
  readonly description: string;
  readonly words: number;
  readonly align: 1 | 2;
  readonly tracker: number;
  readonly inner: LeafType<T>;

  constructor(inner: LeafType<T>) {
    if (inner.opaque) throw new NoatunError(ErrorCode.SCHEMA_INVALID, 'opaque(opaque(T)) is not a type');
    this.inner = inner;
    this.kind = `opaque ${inner.kind}`;
    this.description = `opaque(${inner.description})`;
    this.words = inner.words;
    this.align = inner.align;
    this.tracker = inner.tracker;
  }

  get(a: Arena, w: WordOffset): T {
    a.opaqueRead();
    return this.inner.peek(a, w);
  }

  set(a: Arena, w: WordOffset, value: T): void {
    this.inner.write(a, w, value, true);
  }

  peek(a: Arena, w: WordOffset): T {
    return this.inner.peek(a, w);
  }

  write(a: Arena, w: WordOffset, value: T): void {
    this.inner.write(a, w, value, true);
  }

  destroy(a: Arena, w: WordOffset): void {
    this.inner.destroy(a, w);
  }
}
