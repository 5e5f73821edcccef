/**
 * Payload codecs: how an application's events become the bytes inside an envelope.
 */
import { Packr } from 'msgpackr';
import { ErrorCode, NoatunError } from '../errors.js';

/** Turns events into bytes and back. `decode(encode(e))` must give an equal event. */
export interface Codec<E> {
  encode(event: E): Uint8Array;
  decode(bytes: Uint8Array): E;
  /**
   * Throws a {@link ErrorCode.PAYLOAD_INVALID} error for an event the codec cannot encode, or
   * would change (so that `apply` on another peer would see something else than the author
   * meant). `append` calls it before encoding.
   */
  validate?(event: E): void;
  /**
   * Optional: the value `apply` gets on the author's machine, made without a round trip through
   * bytes. Returns `{ value }`, a fresh copy of `event` that this codec carries unchanged — for
   * which `decode(encode(value))` is identical to `value`: the same types and prototypes, the same
   * keys in the same order, numbers equal by `Object.is` — or undefined when it cannot promise
   * that for this event. With a copy, the database encodes the copy (not the event, which the
   * application may still change) and hands the copy itself to the author's `apply`, instead of
   * decoding the bytes it has just encoded; every other peer decodes those bytes to an identical
   * value. An event that is copied is not passed to {@link validate}: the copy must refuse (return
   * undefined for) anything `validate` would refuse.
   */
  copy?(event: E): Copied<E>;
}

/**
 * What {@link Codec.copy} gives: the copied value, or undefined for an event it leaves to the bytes.
 * `bytes`, when given, are what `encode(value)` gives (the codec made them while copying); the
 * database then does not encode the value again.
 */
export type Copied<E> = { readonly value: E; readonly bytes?: Uint8Array } | undefined;

/** An event value the codec cannot carry as it is; `path` says where inside the event. */
export class PayloadError extends NoatunError {
  /** Where the offending value is, e.g. `event.items[2].tags`. */
  readonly path: string;

  constructor(path: string, reason: string) {
    super(ErrorCode.PAYLOAD_INVALID, `${path}: ${reason}`);
    this.path = path;
  }
}

const sharedSteps: (string | number)[] = [];

/** How deep an event may nest (deeper ones would exhaust the stack of the encoder). */
const MAX_PAYLOAD_DEPTH = 512;

/**
 * Checks that MessagePack carries `value` unchanged: null, booleans, numbers (−0 becomes 0),
 * strings, bigints in the 64-bit range, `Uint8Array`s (read back as `Uint8Array`s), `Date`s,
 * arrays, and plain objects with string keys — nested up to 512 levels, without cycles.
 * `undefined` is kept as a value of a property or an element.
 */
export function validateMessagePack(value: unknown): void {
  // No cycle bookkeeping on the way (this runs for every append): a cycle shows as a walk deeper
  // than the limit, and only then is the value walked again to tell a cycle from deep nesting.
  // One path stack for every call, indexed by depth (never shrunk): no array per event.
  try {
    walkPayload(value, sharedSteps, 0, undefined);
  } catch (error) {
    if (!(error instanceof TooDeep)) throw error;
    walkPayload(value, [], 0, new Set());
    throw new PayloadError(error.path, `nested more than ${MAX_PAYLOAD_DEPTH} levels deep`);
  }
}

/** `event` followed by the first `depth` steps (`.name`, `[index]`) to a value. */
function pathOf(steps: readonly (string | number)[], depth: number): string {
  let path = 'event';
  for (let i = 0; i < depth; i++) {
    const step = steps[i]!;
    path += typeof step === 'number' ? `[${step}]` : `.${step}`;
  }
  return path;
}

/** Why a string that is not well-formed UTF-16 is refused: MessagePack would change it. */
const LONE_SURROGATE = 'a string with a lone surrogate (not well-formed UTF-16) has no UTF-8 form, and is read back with U+FFFD in its place';

/** Thrown by {@link walkPayload} past {@link MAX_PAYLOAD_DEPTH} when it tracks no cycles. */
class TooDeep extends Error {
  readonly path: string;

  constructor(path: string) {
    super('too deep');
    this.path = path;
  }
}

/**
 * Checks one value (see {@link validateMessagePack}), reached by `steps` (a stack shared by the
 * whole walk, so no path is built unless one is reported); `seen`, when given, finds cycles.
 */
function walkPayload(v: unknown, steps: (string | number)[], depth: number, seen: Set<object> | undefined): void {
  switch (typeof v) {
    case 'undefined':
    case 'boolean':
    case 'number':
      return;
    case 'string':
      if (!v.isWellFormed()) throw new PayloadError(pathOf(steps, depth), LONE_SURROGATE);
      return;
    case 'bigint':
      if (v < -(2n ** 63n) || v >= 2n ** 64n) throw new PayloadError(pathOf(steps, depth), `${v}n does not fit in 64 bits; MessagePack cannot carry it (use a string)`);
      return;
    case 'function':
      throw new PayloadError(pathOf(steps, depth), 'a function cannot be sent; MessagePack drops it');
    case 'symbol':
      throw new PayloadError(pathOf(steps, depth), 'a Symbol cannot be sent in MessagePack');
  }
  if (v === null) return;
  const object = v as object;
  if (seen?.has(object) === true) throw new PayloadError(pathOf(steps, depth), 'a circular reference cannot be sent in MessagePack');
  if (depth >= MAX_PAYLOAD_DEPTH) {
    if (seen === undefined) throw new TooDeep(pathOf(steps, depth));
    throw new PayloadError(pathOf(steps, depth), `nested more than ${MAX_PAYLOAD_DEPTH} levels deep`);
  }
  if (object instanceof Uint8Array) {
    if (object.constructor !== Uint8Array && !Buffer.isBuffer(object)) {
      throw new PayloadError(pathOf(steps, depth), `a ${object.constructor.name} is read back as a Uint8Array; send a Uint8Array`);
    }
    return;
  }
  if (object instanceof Date) {
    if (Number.isNaN(object.getTime())) throw new PayloadError(pathOf(steps, depth), 'an invalid Date cannot be sent in MessagePack');
    return;
  }
  if (ArrayBuffer.isView(object) || object instanceof ArrayBuffer) {
    throw new PayloadError(pathOf(steps, depth), `a ${object.constructor.name} is read back as a Uint8Array; send a Uint8Array (or an array of numbers)`);
  }
  if (object instanceof Map) throw new PayloadError(pathOf(steps, depth), 'a Map is read back as a plain object; send an object or an array of [key, value] pairs');
  if (object instanceof Set) throw new PayloadError(pathOf(steps, depth), 'a Set is read back as an array; send an array');
  seen?.add(object);
  if (Array.isArray(object)) {
    for (let i = 0; i < object.length; i++) {
      steps[depth] = i;
      walkPayload(object[i], steps, depth + 1, seen);
    }
  } else {
    const proto = Object.getPrototypeOf(object);
    if (proto !== Object.prototype && proto !== null) {
      const name = (object.constructor as { name?: string } | undefined)?.name ?? 'class';
      throw new PayloadError(pathOf(steps, depth), `a ${name} instance is read back as a plain object without its class; send a plain object`);
    }
    if (Object.getOwnPropertySymbols(object).length !== 0) throw new PayloadError(pathOf(steps, depth), 'Symbol keys are dropped by MessagePack');
    for (const key in object) {
      if (!Object.hasOwn(object, key)) continue;
      steps[depth] = key;
      if (!key.isWellFormed()) throw new PayloadError(pathOf(steps, depth + 1), `its key: ${LONE_SURROGATE}`);
      // (An own `__proto__`, as JSON.parse makes one: the decoder renames it, so that no payload can set a prototype.)
      if (key === '__proto__') throw new PayloadError(pathOf(steps, depth + 1), 'a key "__proto__" is read back as "__proto_"; use another name');
      walkPayload((object as Record<string, unknown>)[key], steps, depth + 1, seen);
    }
  }
  seen?.delete(object);
}

/** What `copyPacked` returns for a value it leaves to encoding and decoding. */
const NOT_COPIED: unique symbol = Symbol('not copied');

/**
 * Most array elements and object keys one copy takes (2^24, as many bytes as the largest payload
 * the database accepts: each encodes to a byte at least). A larger event is left to the encoder,
 * which refuses it with an error, where copying it first could exhaust the heap (an array of a
 * billion holes costs nothing to make, and a billion slots to copy).
 */
const MAX_COPY_SLOTS = 2 ** 24;

/** Slots the copy running now may still take (see {@link MAX_COPY_SLOTS}). */
let copySlots = 0;

// ------------------------------------------------------------------ copying and encoding at once

/**
 * Where `copyPacked` writes: a pool the payloads are views of, as msgpackr's are of its
 * buffer (a view of a pool costs less than a buffer of its own); a fresh one once it is full.
 */
const POOL_BYTES = 64 * 1024;
/** A pool grown past this for a large event is replaced by a fresh one after it. */
const MAX_KEPT_POOL_BYTES = 1024 * 1024;
let packPool = Buffer.allocUnsafeSlow(POOL_BYTES);
/** Where the value being written started in {@link packPool}, and where it is now. */
let packStart = 0;
let packAt = 0;
/** Whether a value is being written (see `copy` in {@link messagePackCodec}). */
let packing = false;

/** Makes room for `bytes` more bytes at {@link packAt}, moving what this value wrote so far into a new pool if need be. */
function packRoom(bytes: number): void {
  if (packAt + bytes <= packPool.length) return;
  const written = packAt - packStart;
  const pool = Buffer.allocUnsafeSlow(Math.max(POOL_BYTES, 2 ** Math.ceil(Math.log2(written + bytes + 1))));
  packPool.copy(pool, 0, packStart, packAt);
  packPool = pool;
  packStart = 0;
  packAt = written;
}

/** Writes a string as msgpackr does: UTF-8 (the string is well-formed), after the smallest header for its byte length. */
function packString(v: string): void {
  const n = v.length;
  // Room for the longest the string can take, after the header that length would need; the
  // bytes move back when a shorter header does.
  const most = 3 * n;
  const header = most < 0x20 ? 1 : most < 0x100 ? 2 : most < 0x10000 ? 3 : 5;
  packRoom(header + most);
  const pool = packPool;
  const from = packAt + header;
  let length: number;
  if (n < 64) {
    let at = from;
    for (let i = 0; i < n; i++) {
      let c = v.charCodeAt(i);
      if (c < 0x80) pool[at++] = c;
      else if (c < 0x800) {
        pool[at++] = (c >> 6) | 0xc0;
        pool[at++] = (c & 0x3f) | 0x80;
      } else if ((c & 0xfc00) === 0xd800) {
        // A surrogate pair (a well-formed string has no lone one).
        c = 0x10000 + ((c & 0x03ff) << 10) + (v.charCodeAt(++i) & 0x03ff);
        pool[at++] = (c >> 18) | 0xf0;
        pool[at++] = ((c >> 12) & 0x3f) | 0x80;
        pool[at++] = ((c >> 6) & 0x3f) | 0x80;
        pool[at++] = (c & 0x3f) | 0x80;
      } else {
        pool[at++] = (c >> 12) | 0xe0;
        pool[at++] = ((c >> 6) & 0x3f) | 0x80;
        pool[at++] = (c & 0x3f) | 0x80;
      }
    }
    length = at - from;
  } else {
    length = pool.write(v, from);
  }
  let at = packAt;
  const needed = length < 0x20 ? 1 : length < 0x100 ? 2 : length < 0x10000 ? 3 : 5;
  if (needed < header) pool.copyWithin(at + needed, from, from + length);
  if (needed === 1) pool[at++] = 0xa0 | length;
  else if (needed === 2) {
    pool[at++] = 0xd9;
    pool[at++] = length;
  } else if (needed === 3) {
    pool[at++] = 0xda;
    pool[at++] = length >> 8;
    pool[at++] = length & 0xff;
  } else {
    pool[at++] = 0xdb;
    pool.writeUInt32BE(length, at);
    at += 4;
  }
  packAt = at + length;
}

/** Writes a number as msgpackr does (without records): the smallest integer form up to 32 bits, else a float64. */
function packNumber(v: number): void {
  packRoom(9);
  const pool = packPool;
  let at = packAt;
  if (v >>> 0 === v) {
    if (v < 0x80) pool[at++] = v;
    else if (v < 0x100) {
      pool[at++] = 0xcc;
      pool[at++] = v;
    } else if (v < 0x10000) {
      pool[at++] = 0xcd;
      pool[at++] = v >> 8;
      pool[at++] = v & 0xff;
    } else {
      pool[at++] = 0xce;
      pool.writeUInt32BE(v, at);
      at += 4;
    }
  } else if (v >> 0 === v) {
    if (v >= -0x20) pool[at++] = 0x100 + v;
    else if (v >= -0x80) {
      pool[at++] = 0xd0;
      pool[at++] = v + 0x100;
    } else if (v >= -0x8000) {
      pool[at++] = 0xd1;
      pool.writeInt16BE(v, at);
      at += 2;
    } else {
      pool[at++] = 0xd2;
      pool.writeInt32BE(v, at);
      at += 4;
    }
  } else {
    pool[at++] = 0xcb;
    pool.writeDoubleBE(v, at);
    at += 8;
  }
  packAt = at;
}

/** Writes a one-byte value (nil, a boolean) or undefined (fixext 1 of type 0, as msgpackr writes it). */
function packByte(byte: number): void {
  packRoom(3);
  packPool[packAt++] = byte;
  if (byte === 0xd4) {
    packPool[packAt++] = 0;
    packPool[packAt++] = 0;
  }
}

/** Writes a collection's header: `short` (0x90 for arrays) below 16 items, else `long16` or `long16 + 1` and the count. */
function packHeader(count: number, short: number, long16: number): void {
  packRoom(5);
  const pool = packPool;
  if (short !== 0 && count < 0x10) pool[packAt++] = short | count;
  else if (count < 0x10000) {
    pool[packAt++] = long16;
    pool[packAt++] = count >> 8;
    pool[packAt++] = count & 0xff;
  } else {
    pool[packAt++] = long16 + 1;
    pool.writeUInt32BE(count, packAt);
    packAt += 4;
  }
}

/**
 * A fresh copy of `v`, written as MessagePack at {@link packAt} too, when it is made only of
 * values MessagePack (msgpackr, as configured in {@link messagePackCodec}) carries unchanged, else
 * {@link NOT_COPIED}. Each case mirrors what
 * the encoder writes and the decoder builds (test/core/codec-copy.test.ts tries them all
 * against a real round trip):
 * - `undefined`, booleans, and numbers other than −0 are written and read back as they are;
 *   −0 is written as the integer 0, so the copy has 0. Integers beyond 32 bits are written as
 *   floats (never as 64-bit integers, which would come back as bigints).
 * - A string is written as UTF-8. A lone surrogate has no UTF-8 form and comes back replaced, so
 *   only well-formed strings are copied.
 * - An array comes back as a plain array of the same length; a hole comes back as `undefined`.
 * - A plain object (prototype `Object.prototype` or null) comes back as a plain object with
 *   `Object.prototype`, with its own enumerable string keys in the same order. The decoder
 *   renames a `__proto__` key, so such an object is not copied; nor one with Symbol keys
 *   (`validate` refuses them), or with a key `hasOwnProperty` or `toJSON`. A shared sub-object
 *   is copied once per place, as it is written.
 * - Anything else (bigints, byte arrays, dates, class instances, functions, cycles, nesting past
 *   {@link MAX_PAYLOAD_DEPTH}, more than {@link MAX_COPY_SLOTS} elements and keys) is left to the
 *   encoder and decoder, and to `validate`.
 * Every property is read once, and the copy is what is encoded: a getter that answers
 * differently each time cannot make the author's apply see something else than the bytes say.
 *
 * The bytes are exactly what msgpackr (with the default codec's options: no records) writes for
 * the copy, in one walk instead of a copy and an encoding: integers up to 32 bits in their smallest
 * form and other numbers as float64, strings as UTF-8 after the smallest header, arrays with the
 * smallest header, objects always as a map 16 (msgpackr writes the count after the entries), and
 * `undefined` as fixext 1 of type 0. An object of more than 65,535 keys, which msgpackr refuses, is
 * not copied. test/core/codec-copy.test.ts compares the bytes with msgpackr's.
 */
function copyPacked(v: unknown, depth: number): unknown {
  switch (typeof v) {
    case 'string':
      if (!v.isWellFormed()) return NOT_COPIED;
      packString(v);
      return v;
    case 'number':
      packNumber(v);
      return v === 0 ? 0 : v;
    case 'boolean':
      packByte(v ? 0xc3 : 0xc2);
      return v;
    case 'undefined':
      packByte(0xd4);
      return v;
    case 'object':
      break;
    default:
      return NOT_COPIED;
  }
  if (v === null) {
    packByte(0xc0);
    return null;
  }
  if (depth >= MAX_PAYLOAD_DEPTH) return NOT_COPIED;
  if (Array.isArray(v)) {
    const length = v.length;
    copySlots -= length;
    if (copySlots < 0) return NOT_COPIED;
    packHeader(length, 0x90, 0xdc);
    // Made at its length (a push onto an empty array gives it room for 17), then filled.
    const out: unknown[] = new Array(length);
    for (let i = 0; i < length; i++) {
      const element = copyPacked(v[i], depth + 1);
      if (element === NOT_COPIED) return NOT_COPIED;
      out[i] = element;
    }
    return out;
  }
  const proto = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) return NOT_COPIED;
  if (Object.getOwnPropertySymbols(v).length !== 0) return NOT_COPIED;
  const out: Record<string, unknown> = {};
  const keys = Object.keys(v); // the own enumerable string keys, in the order the encoder writes them
  if (keys.length > 0xffff) return NOT_COPIED;
  copySlots -= keys.length;
  if (copySlots < 0) return NOT_COPIED;
  packHeader(keys.length, 0, 0xde);
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    // (With an own `hasOwnProperty` that is no function, the encoder writes inherited keys too;
    // a `toJSON` that is no function makes it throw, unless the object's constructor is Object.)
    if (key === '__proto__' || key === 'hasOwnProperty' || key === 'toJSON' || !key.isWellFormed()) return NOT_COPIED;
    packString(key);
    const value = copyPacked((v as Record<string, unknown>)[key], depth + 1);
    if (value === NOT_COPIED) return NOT_COPIED;
    out[key] = value;
  }
  return out;
}

/**
 * Bytes that follow a MessagePack header byte before its value's content, and how many bytes of
 * it give the content's length (`LENGTH_BYTES`), by header byte from 0xc0 (see {@link checkPackedDepth}).
 */
const FIXED_BYTES = [
  // c0 nil, c1 (unused), c2 false, c3 true, c4–c6 bin 8/16/32, c7–c9 ext 8/16/32 (length, type)
  0, 0, 0, 0, 1, 2, 4, 2, 3, 5,
  // ca float 32, cb float 64, cc–cf uint 8–64, d0–d3 int 8–64
  4, 8, 1, 2, 4, 8, 1, 2, 4, 8,
  // d4–d8 fixext 1/2/4/8/16 (type and data), d9–db str 8/16/32, dc–dd array 16/32, de–df map 16/32
  2, 3, 5, 9, 17, 1, 2, 4, 2, 4, 2, 4,
];
const LENGTH_BYTES = [0, 0, 0, 0, 1, 2, 4, 1, 2, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 4, 0, 0, 0, 0];

/**
 * Refuses (`PAYLOAD_INVALID`) MessagePack bytes whose value nests deeper than
 * {@link MAX_PAYLOAD_DEPTH} levels, as `validateMessagePack` refuses such a value before it is
 * appended. Without it another peer's event nested thousands of levels deep (a peer with its own
 * encoder can send one) decoded or ran out of stack depending on the machine's stack: a failure
 * of this machine, not the event's, so one peer stored it and another refused it. Refused here,
 * it fails to apply alike everywhere. A loop with a stack of counts (no recursion); bytes that
 * end early or hold an unknown byte are left to the decoder, which refuses them.
 */
function checkPackedDepth(bytes: Uint8Array): void {
  // Items left in each open array or map (a map's pairs count twice), innermost last.
  const left: number[] = [];
  let at = 0;
  const end = bytes.length;
  const lengthAt = (offset: number, size: number): number =>
    size === 1 ? bytes[offset]! : size === 2 ? (bytes[offset]! << 8) | bytes[offset + 1]! : ((bytes[offset]! << 24) | (bytes[offset + 1]! << 16) | (bytes[offset + 2]! << 8) | bytes[offset + 3]!) >>> 0;
  do {
    if (at >= end) return;
    const head = bytes[at++]!;
    let items = 0;
    if (head <= 0x7f || head >= 0xe0) {
      // a fixint
    } else if (head <= 0x8f) items = (head & 0x0f) * 2;
    else if (head <= 0x9f) items = head & 0x0f;
    else if (head <= 0xbf) at += head & 0x1f;
    else {
      const index = head - 0xc0;
      const fixed = FIXED_BYTES[index]!;
      const sized = LENGTH_BYTES[index]!;
      if (at + fixed > end) return;
      if (head >= 0xdc) items = lengthAt(at, fixed) * (head >= 0xde ? 2 : 1);
      else if (sized !== 0) at += lengthAt(at, sized);
      at += fixed;
    }
    if (head === 0xdc || head === 0xdd || head === 0xde || head === 0xdf || (head >= 0x80 && head <= 0x9f)) {
      // An array or a map, at the depth of the containers open around it.
      if (left.length >= MAX_PAYLOAD_DEPTH) throw new PayloadError('event', `nested more than ${MAX_PAYLOAD_DEPTH} levels deep`);
      if (items !== 0) {
        left.push(items);
        continue;
      }
    }
    // A whole value was read: it counts against the innermost open container, closing those done.
    while (left.length !== 0 && --left[left.length - 1]! === 0) left.pop();
  } while (left.length !== 0);
}

/**
 * The default codec: MessagePack (msgpackr) without records or structured cloning, so the bytes
 * are plain MessagePack that any implementation can read. Its `copy` gives the copy's bytes too
 * (see `copyPacked`).
 */
export function messagePackCodec<E>(): Codec<E> {
  const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: 'bigint' });
  return {
    encode: (event) => packr.pack(event),
    decode(bytes) {
      // Under MAX_PAYLOAD_DEPTH + 1 bytes a value cannot nest deeper (each level takes a byte).
      if (bytes.length > MAX_PAYLOAD_DEPTH) checkPackedDepth(bytes);
      return packr.unpack(bytes) as E;
    },
    validate: validateMessagePack,
    copy(event) {
      // A getter of the event that appends another event copies that one while this one is half
      // written: it is left to the encoder (which keeps the two apart).
      if (packing) return undefined;
      packing = true;
      copySlots = MAX_COPY_SLOTS;
      packStart = packAt;
      let value: unknown;
      try {
        value = copyPacked(event, 0);
      } catch (error) {
        // A getter that threw, or no memory for the pool: nothing of this value stays written.
        packAt = packStart;
        throw error;
      } finally {
        packing = false;
      }
      if (value === NOT_COPIED) {
        packAt = packStart;
        return undefined;
      }
      const bytes = packPool.subarray(packStart, packAt);
      // A large event's pool is not kept for the next ones (its payload keeps it while it needs it).
      if (packPool.length > MAX_KEPT_POOL_BYTES) {
        packPool = Buffer.allocUnsafeSlow(POOL_BYTES);
        packAt = 0;
      }
      return { value: value as E, bytes };
    },
  };
}
