/**
 * Composite types: objects, optional values, lists, maps and opaque lists, with their accessor
 * classes.
 *
 * Placement rule: an object is laid out inline inside its parent object, so its address never
 * changes. Inside a container (list element, map value) a leaf is stored inline, but a composite
 * value is stored in its own block and the container holds a pointer to it. Containers move their
 * slots when they grow (and maps when they delete), but a composite value never moves, so an
 * accessor to it stays valid for its whole session.
 *
 * Object accessors are classes generated once per object type, with each field at a fixed word
 * offset: a field read is a session check, a tracker report and one typed-array load.
 */
import { ErrorCode, NoatunError, ValueError } from '../errors.js';
import type { Arena, WordOffset } from './arena.js';
import { LIST_INITIAL_CAPACITY, MAP_INITIAL_CAPACITY, NO_OWNER } from './constants.js';
import type { KeyType, LeafType } from './leaf.js';
import type { Ordinal } from './tracking.js';

/** A composite type: its value is handed out as an accessor, not as a plain value. */
export interface CompositeType {
  readonly kind: string;
  readonly words: number;
  readonly align: 1 | 2;
  readonly leaf: false;
  readonly description: string;
  /** The accessor for the value at `w` (or `null` for an absent optional). */
  get(a: Arena, session: number, w: WordOffset): unknown;
  /** Replaces the value at `w` with an imported plain value. */
  assign(a: Arena, w: WordOffset, value: unknown): void;
  /** The value at `w` as plain JS. */
  exportAt(a: Arena, w: WordOffset): unknown;
  /** Releases every tracker of the value at `w` and zeroes it. */
  destroy(a: Arena, w: WordOffset): void;
}

/** Any type of the view. */
export type AnyType = LeafType<unknown> | CompositeType;

// ------------------------------------------------------------------ slots in containers

/** Words a value of type `t` takes in a container slot. */
function slotWords(t: AnyType): number {
  return t.leaf ? t.words : 1;
}

function slotAlign(t: AnyType): 1 | 2 {
  return t.leaf ? t.align : 1;
}

function slotGet(t: AnyType, a: Arena, session: number, w: WordOffset): unknown {
  return t.leaf ? t.get(a, w) : t.get(a, session, a.u32[w]!);
}

/** Fills a zeroed slot. */
function slotInit(t: AnyType, a: Arena, w: WordOffset, value: unknown): void {
  if (t.leaf) {
    t.set(a, w, value);
  } else {
    const block = a.alloc(t.words);
    a.set32(w, block);
    t.assign(a, block, value);
  }
}

function slotAssign(t: AnyType, a: Arena, w: WordOffset, value: unknown): void {
  if (t.leaf) t.set(a, w, value);
  else t.assign(a, a.u32[w]!, value);
}

function slotExport(t: AnyType, a: Arena, w: WordOffset): unknown {
  return t.leaf ? t.get(a, w) : t.exportAt(a, a.u32[w]!);
}

function slotDestroy(t: AnyType, a: Arena, w: WordOffset): void {
  if (t.leaf) {
    t.destroy(a, w);
  } else {
    t.destroy(a, a.u32[w]!);
    a.set32(w, 0);
  }
}

/**
 * A plain value made JSON-friendly: maps become objects, bigints decimal strings, byte arrays
 * arrays of numbers (what `toJSON` of the accessors returns).
 */
export function jsonify(value: unknown): unknown {
  if (value instanceof Map) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of value) out[String(k)] = jsonify(v);
    return out;
  }
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Uint8Array) return Array.from(value);
  if (Array.isArray(value)) return value.map(jsonify);
  if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = jsonify(v);
    return out;
  }
  return value;
}

function alignUp(words: number, align: 1 | 2): number {
  return align === 2 ? (words + 1) & ~1 : words;
}

function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : typeof value === 'string' ? JSON.stringify(value) : String(value);
}

// ------------------------------------------------------------------ objects

/** A field of an object type, at a fixed word offset. */
export interface Field {
  readonly name: string;
  readonly type: AnyType;
  readonly offset: number;
}

/** Names an object type cannot use for fields: its accessor's own members. */
const RESERVED_FIELDS = new Set(['export', 'assign', 'toJSON', 'constructor', '__proto__']);

/** The accessor constructor generated for an object type. */
export type ObjectAccessorClass = new (a: Arena, session: number, w: WordOffset) => object;

/** `object({...})`: fields laid out inline at fixed offsets. */
export class ObjectType implements CompositeType {
  readonly kind = 'object';
  readonly leaf = false as const;
  readonly fields: readonly Field[];
  readonly words: number;
  readonly align: 1 | 2;
  readonly description: string;
  #accessor: ObjectAccessorClass | undefined;

  constructor(shape: Record<string, AnyType>) {
    const fields: Field[] = [];
    let words = 0;
    let align: 1 | 2 = 1;
    for (const [name, type] of Object.entries(shape)) {
      if (RESERVED_FIELDS.has(name) || name.startsWith('$')) {
        throw new NoatunError(ErrorCode.SCHEMA_INVALID, `"${name}" cannot be a field name (reserved by the accessor)`);
      }
      if (type === undefined || typeof type !== 'object' || !('leaf' in type)) {
        throw new NoatunError(ErrorCode.SCHEMA_INVALID, `field "${name}" is not a schema type (use s.*)`);
      }
      words = alignUp(words, type.align);
      fields.push({ name, type, offset: words });
      words += type.words;
      if (type.align === 2) align = 2;
    }
    this.fields = fields;
    this.words = alignUp(Math.max(words, 1), align);
    this.align = align;
    this.description = `object{${fields.map((f) => `${JSON.stringify(f.name)}:${f.type.description}`).join(',')}}`;
  }

  /** The generated accessor class (built on first use). */
  get Accessor(): ObjectAccessorClass {
    this.#accessor ??= generateObjectAccessor(this);
    return this.#accessor;
  }

  get(a: Arena, session: number, w: WordOffset): object {
    return new this.Accessor(a, session, w);
  }

  assign(a: Arena, w: WordOffset, value: unknown): void {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw new ValueError(`expected an object for ${this.description.slice(0, 80)}, got ${describeValue(value)}`);
    }
    const plain = value as Record<string, unknown>;
    for (const field of this.fields) {
      let v = plain[field.name];
      if (v === undefined) {
        if (field.type instanceof OptionalType) v = null;
        else throw new ValueError(`missing field "${field.name}"`);
      }
      if (field.type.leaf) field.type.set(a, w + field.offset, v);
      else field.type.assign(a, w + field.offset, v);
    }
  }

  exportAt(a: Arena, w: WordOffset): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const field of this.fields) {
      out[field.name] = field.type.leaf ? field.type.get(a, w + field.offset) : field.type.exportAt(a, w + field.offset);
    }
    return out;
  }

  destroy(a: Arena, w: WordOffset): void {
    for (const field of this.fields) field.type.destroy(a, w + field.offset);
  }
}

/**
 * Builds the accessor class of an object type with `new Function`, so that every field getter has
 * its offset as a constant and calls one specific type's method (a monomorphic, inlinable site).
 */
function generateObjectAccessor(type: ObjectType): ObjectAccessorClass {
  const lines: string[] = [];
  const types: AnyType[] = [];
  lines.push('return class ObjectAccessor {');
  lines.push('  constructor(a, s, w) { this.$a = a; this.$s = s; this.$w = w;');
  type.fields.forEach((field, i) => {
    if (!field.type.leaf && !(field.type instanceof OptionalType)) lines.push(`    this.$c${i} = undefined;`);
  });
  lines.push('  }');
  type.fields.forEach((field, i) => {
    types.push(field.type);
    const key = JSON.stringify(field.name);
    const check = 'const a = this.$a; if (this.$s !== a.session) a.stale();';
    if (field.type.leaf) {
      lines.push(`  get [${key}]() { ${check} return T${i}.get(a, this.$w + ${field.offset}); }`);
      lines.push(`  set [${key}](v) { ${check} T${i}.set(a, this.$w + ${field.offset}, v); }`);
    } else if (field.type instanceof OptionalType) {
      lines.push(`  get [${key}]() { ${check} return T${i}.get(a, this.$s, this.$w + ${field.offset}); }`);
      lines.push(`  set [${key}](v) { ${check} T${i}.assign(a, this.$w + ${field.offset}, v); }`);
    } else {
      lines.push(
        `  get [${key}]() { ${check} return this.$c${i} ??= T${i}.get(a, this.$s, this.$w + ${field.offset}); }`,
      );
      lines.push(`  set [${key}](v) { ${check} T${i}.assign(a, this.$w + ${field.offset}, v); }`);
    }
  });
  lines.push('  export() { const a = this.$a; if (this.$s !== a.session) a.stale(); return SELF.exportAt(a, this.$w); }');
  lines.push('  assign(v) { const a = this.$a; if (this.$s !== a.session) a.stale(); SELF.assign(a, this.$w, v); }');
  lines.push('  toJSON() { return JSONIFY(this.export()); }');
  lines.push('};');
  const params = ['SELF', 'JSONIFY', ...types.map((_, i) => `T${i}`)];
  const factory = new Function(...params, lines.join('\n')) as (...args: unknown[]) => ObjectAccessorClass;
  return factory(type, jsonify, ...types);
}

// ------------------------------------------------------------------ optional

/**
 * `optional(T)`: slot `[present, tracker, T…]`. Reading reports a read of the presence tracker;
 * setting `null` destroys the value.
 */
export class OptionalType implements CompositeType {
  readonly kind = 'optional';
  readonly leaf = false as const;
  readonly inner: AnyType;
  readonly words: number;
  readonly align: 1 | 2;
  readonly offset: number;
  readonly description: string;

  constructor(inner: AnyType) {
    if (inner instanceof OptionalType) throw new NoatunError(ErrorCode.SCHEMA_INVALID, 'optional(optional(T)) is not a type');
    this.inner = inner;
    this.align = inner.align;
    this.offset = alignUp(2, inner.align);
    this.words = alignUp(this.offset + inner.words, inner.align);
    this.description = `optional(${inner.description})`;
  }

  get(a: Arena, session: number, w: WordOffset): unknown {
    a.read(w + 1);
    if (a.u32[w] === 0) return null;
    const inner = this.inner;
    return inner.leaf ? inner.get(a, w + this.offset) : inner.get(a, session, w + this.offset);
  }

  assign(a: Arena, w: WordOffset, value: unknown): void {
    const present = a.u32[w] !== 0;
    const inner = this.inner;
    if (value === null || value === undefined) {
      if (present) inner.destroy(a, w + this.offset);
      a.own(w + 1, false);
      if (present) a.set32(w, 0);
      return;
    }
    a.own(w + 1, false);
    if (!present) a.set32(w, 1);
    if (inner.leaf) inner.set(a, w + this.offset, value);
    else inner.assign(a, w + this.offset, value);
  }

  exportAt(a: Arena, w: WordOffset): unknown {
    a.read(w + 1);
    if (a.u32[w] === 0) return null;
    const inner = this.inner;
    return inner.leaf ? inner.get(a, w + this.offset) : inner.exportAt(a, w + this.offset);
  }

  destroy(a: Arena, w: WordOffset): void {
    if (a.u32[w] !== 0) this.inner.destroy(a, w + this.offset);
    a.release(w + 1);
    a.set32(w, 0);
  }
}

// ------------------------------------------------------------------ lists

// List header words.
const L_BLOCK = 0;
const L_LENGTH = 1;
const L_CAPACITY = 2;
const L_LENGTH_TRACKER = 3;
const L_CLEAR_TRACKER = 4;

function growList(a: Arena, w: WordOffset, elementWords: number, needed: number): void {
  const capacity = a.u32[w + L_CAPACITY]!;
  if (needed <= capacity) return;
  const next = Math.max(LIST_INITIAL_CAPACITY, capacity * 2, needed);
  const block = a.alloc(next * elementWords);
  const u32 = a.u32;
  const old = u32[w + L_BLOCK]!;
  // Fresh memory needs no journal; the old block is left behind (a rebuild compacts it).
  u32.copyWithin(block, old, old + u32[w + L_LENGTH]! * elementWords);
  a.set32(w + L_BLOCK, block);
  a.set32(w + L_CAPACITY, next);
}

/**
 * `list(T)`: header `[block, length, capacity, length tracker, clear tracker, pad]`. Reading the
 * length or an element reports a read of the length tracker; push and pop read and write it, so
 * the writers of a list form a chain (use a map or an opaque list where pruning matters).
 */
export class ListType implements CompositeType {
  readonly kind = 'list';
  readonly leaf = false as const;
  readonly words = 6;
  readonly align = 1 as const;
  readonly element: AnyType;
  readonly elementWords: number;
  readonly description: string;

  constructor(element: AnyType) {
    this.element = element;
    this.elementWords = alignUp(slotWords(element), slotAlign(element));
    if (slotAlign(element) === 2 && this.elementWords % 2 !== 0) this.elementWords += 1;
    this.description = `list(${element.description})`;
  }

  get(a: Arena, session: number, w: WordOffset): ListAccessor<unknown, unknown> {
    return new ListAccessor(this, a, session, w);
  }

  assign(a: Arena, w: WordOffset, value: unknown): void {
    if (!Array.isArray(value)) throw new ValueError(`expected an array for ${this.description}, got ${describeValue(value)}`);
    this.clearAt(a, w);
    for (const item of value) this.pushAt(a, w, item);
  }

  pushAt(a: Arena, w: WordOffset, value: unknown): number {
    a.read(w + L_LENGTH_TRACKER);
    a.own(w + L_LENGTH_TRACKER, false);
    const length = a.u32[w + L_LENGTH]!;
    growList(a, w, this.elementWords, length + 1);
    slotInit(this.element, a, a.u32[w + L_BLOCK]! + length * this.elementWords, value);
    a.set32(w + L_LENGTH, length + 1);
    return length + 1;
  }

  clearAt(a: Arena, w: WordOffset): void {
    a.own(w + L_LENGTH_TRACKER, false);
    a.own(w + L_CLEAR_TRACKER, true);
    const length = a.u32[w + L_LENGTH]!;
    for (let i = 0; i < length; i++) slotDestroy(this.element, a, a.u32[w + L_BLOCK]! + i * this.elementWords);
    if (length !== 0) a.set32(w + L_LENGTH, 0);
  }

  exportAt(a: Arena, w: WordOffset): unknown[] {
    a.read(w + L_LENGTH_TRACKER);
    const length = a.u32[w + L_LENGTH]!;
    const out = new Array<unknown>(length);
    for (let i = 0; i < length; i++) out[i] = slotExport(this.element, a, a.u32[w + L_BLOCK]! + i * this.elementWords);
    return out;
  }

  destroy(a: Arena, w: WordOffset): void {
    const length = a.u32[w + L_LENGTH]!;
    for (let i = 0; i < length; i++) slotDestroy(this.element, a, a.u32[w + L_BLOCK]! + i * this.elementWords);
    a.release(w + L_LENGTH_TRACKER);
    a.release(w + L_CLEAR_TRACKER);
    a.zero(w, this.words);
  }
}

/** The accessor of a list. `E` is what elements read as, `P` the plain value they take. */
export class ListAccessor<E, P> {
  readonly #type: ListType;
  readonly #a: Arena;
  readonly #s: number;
  readonly #w: WordOffset;

  constructor(type: ListType, a: Arena, session: number, w: WordOffset) {
    this.#type = type;
    this.#a = a;
    this.#s = session;
    this.#w = w;
  }

  #arena(): Arena {
    const a = this.#a;
    if (this.#s !== a.session) a.stale();
    return a;
  }

  /** Number of elements (a tracked read of the list's length). */
  get length(): number {
    const a = this.#arena();
    a.read(this.#w + L_LENGTH_TRACKER);
    return a.u32[this.#w + L_LENGTH]!;
  }

  /** The element at `index`, or `undefined` past the end. */
  get(index: number): E | undefined {
    const a = this.#arena();
    const w = this.#w;
    a.read(w + L_LENGTH_TRACKER);
    if (index >>> 0 !== index || index >= a.u32[w + L_LENGTH]!) return undefined;
    return slotGet(this.#type.element, a, this.#s, a.u32[w + L_BLOCK]! + index * this.#type.elementWords) as E;
  }

  /** Replaces the element at `index` (which must exist). */
  set(index: number, value: P): void {
    const a = this.#arena();
    const w = this.#w;
    a.read(w + L_LENGTH_TRACKER);
    if (index >>> 0 !== index || index >= a.u32[w + L_LENGTH]!) {
      throw new NoatunError(ErrorCode.INDEX_OUT_OF_RANGE, `list index ${index} is out of range`);
    }
    slotAssign(this.#type.element, a, a.u32[w + L_BLOCK]! + index * this.#type.elementWords, value);
  }

  /** Appends a value; returns the new length. */
  push(value: P): number {
    return this.#type.pushAt(this.#arena(), this.#w, value);
  }

  /** Removes the last element and returns it as a plain value (`undefined` when empty). */
  pop(): P | undefined {
    const a = this.#arena();
    const w = this.#w;
    a.read(w + L_LENGTH_TRACKER);
    a.own(w + L_LENGTH_TRACKER, false);
    const length = a.u32[w + L_LENGTH]!;
    if (length === 0) return undefined;
    const slot = a.u32[w + L_BLOCK]! + (length - 1) * this.#type.elementWords;
    const value = slotExport(this.#type.element, a, slot) as P;
    slotDestroy(this.#type.element, a, slot);
    a.set32(w + L_LENGTH, length - 1);
    return value;
  }

  /** Removes every element. */
  clear(): void {
    this.#type.clearAt(this.#arena(), this.#w);
  }

  /** Replaces the contents with the given plain values. */
  assign(values: readonly P[]): void {
    this.#type.assign(this.#arena(), this.#w, values);
  }

  /** The elements as a plain array. */
  export(): P[] {
    return this.#type.exportAt(this.#arena(), this.#w) as P[];
  }

  toJSON(): unknown {
    return jsonify(this.export());
  }

  *[Symbol.iterator](): IterableIterator<E> {
    const length = this.length;
    for (let i = 0; i < length; i++) yield this.get(i) as E;
  }
}

// ------------------------------------------------------------------ opaque lists

/**
 * `opaqueList(T)`: header `[block, length, capacity, clear tracker, …]`. Push appends without
 * reading anything, so pushers never depend on each other; the contents (and the length) can
 * only be read outside apply.
 */
export class OpaqueListType implements CompositeType {
  readonly kind = 'opaqueList';
  readonly leaf = false as const;
  readonly words = 6;
  readonly align = 1 as const;
  readonly element: AnyType;
  readonly elementWords: number;
  readonly description: string;

  constructor(element: AnyType) {
    this.element = element;
    this.elementWords = alignUp(slotWords(element), slotAlign(element));
    this.description = `opaqueList(${element.description})`;
  }

  get(a: Arena, session: number, w: WordOffset): OpaqueListAccessor<unknown, unknown> {
    return new OpaqueListAccessor(this, a, session, w);
  }

  assign(a: Arena, w: WordOffset, value: unknown): void {
    if (!Array.isArray(value)) throw new ValueError(`expected an array for ${this.description}, got ${describeValue(value)}`);
    this.clearAt(a, w);
    for (const item of value) this.pushAt(a, w, item);
  }

  pushAt(a: Arena, w: WordOffset, value: unknown): void {
    a.writer();
    const length = a.u32[w + L_LENGTH]!;
    growList(a, w, this.elementWords, length + 1);
    const previous = a.opaqueWrites;
    a.opaqueWrites = true;
    try {
      slotInit(this.element, a, a.u32[w + L_BLOCK]! + length * this.elementWords, value);
    } finally {
      a.opaqueWrites = previous;
    }
    a.set32(w + L_LENGTH, length + 1);
  }

  clearAt(a: Arena, w: WordOffset): void {
    a.own(w + 3, true);
    const length = a.u32[w + L_LENGTH]!;
    for (let i = 0; i < length; i++) slotDestroy(this.element, a, a.u32[w + L_BLOCK]! + i * this.elementWords);
    if (length !== 0) a.set32(w + L_LENGTH, 0);
  }

  exportAt(a: Arena, w: WordOffset): unknown[] {
    a.opaqueRead();
    const length = a.u32[w + L_LENGTH]!;
    const out = new Array<unknown>(length);
    for (let i = 0; i < length; i++) out[i] = slotExport(this.element, a, a.u32[w + L_BLOCK]! + i * this.elementWords);
    return out;
  }

  destroy(a: Arena, w: WordOffset): void {
    const length = a.u32[w + L_LENGTH]!;
    for (let i = 0; i < length; i++) slotDestroy(this.element, a, a.u32[w + L_BLOCK]! + i * this.elementWords);
    a.release(w + 3);
    a.zero(w, this.words);
  }
}

/** The accessor of an opaque list: write-only inside apply, readable outside. */
export class OpaqueListAccessor<E, P> {
  readonly #type: OpaqueListType;
  readonly #a: Arena;
  readonly #s: number;
  readonly #w: WordOffset;

  constructor(type: OpaqueListType, a: Arena, session: number, w: WordOffset) {
    this.#type = type;
    this.#a = a;
    this.#s = session;
    this.#w = w;
  }

  #arena(): Arena {
    const a = this.#a;
    if (this.#s !== a.session) a.stale();
    return a;
  }

  /** Appends a value (no read: concurrent pushers never depend on each other). */
  push(value: P): void {
    this.#type.pushAt(this.#arena(), this.#w, value);
  }

  /** Removes every element. */
  clear(): void {
    this.#type.clearAt(this.#arena(), this.#w);
  }

  /** Number of elements; outside apply only. */
  get length(): number {
    const a = this.#arena();
    a.opaqueRead();
    return a.u32[this.#w + L_LENGTH]!;
  }

  /** The element at `index` (or `undefined`); outside apply only. */
  get(index: number): E | undefined {
    const a = this.#arena();
    a.opaqueRead();
    const w = this.#w;
    if (index >>> 0 !== index || index >= a.u32[w + L_LENGTH]!) return undefined;
    return slotGet(this.#type.element, a, this.#s, a.u32[w + L_BLOCK]! + index * this.#type.elementWords) as E;
  }

  /** The elements as a plain array; outside apply only. */
  export(): P[] {
    return this.#type.exportAt(this.#arena(), this.#w) as P[];
  }

  toJSON(): unknown {
    return jsonify(this.export());
  }

  *[Symbol.iterator](): IterableIterator<E> {
    const length = this.length;
    for (let i = 0; i < length; i++) yield this.get(i) as E;
  }
}

// ------------------------------------------------------------------ maps

// Map header words.
const M_TABLE = 0;
const M_COUNT = 1;
const M_CAPACITY = 2;
const M_MEMBERSHIP = 3;
const M_CLEAR_TRACKER = 4;
/** Bucket state word: 0 = empty, else the key's hash with the top bit set. */
const OCCUPIED = 0x80000000;

/**
 * `map(K, V)`: an open-addressing hash table (linear probing, backward-shift deletion) with
 * header `[table, count, capacity, membership tracker, clear tracker, pad]`. Buckets are
 * `[state, key slot, value slot]`.
 *
 * Tracking: a lookup that finds a key reads what it returns (the value's tracker, or the key's
 * tracker for `has`); a lookup that finds nothing reads the membership tracker, which every insert
 * and delete writes, so "k is absent" is a dependency like any other read.
 */
export class MapType implements CompositeType {
  readonly kind = 'map';
  readonly leaf = false as const;
  readonly words = 6;
  readonly align = 1 as const;
  readonly key: KeyType<unknown>;
  readonly value: AnyType;
  readonly keyOffset: number;
  readonly valueOffset: number;
  readonly bucketWords: number;
  readonly description: string;

  constructor(key: KeyType<unknown>, value: AnyType) {
    if (!key.leaf || !key.keyable) {
      throw new NoatunError(
        ErrorCode.SCHEMA_INVALID,
        `${key.description ?? String(key)} cannot be a map key (use string, an integer type, messageId or bytes(n))`,
      );
    }
    this.key = key;
    this.value = value;
    this.keyOffset = alignUp(1, key.align);
    this.valueOffset = alignUp(this.keyOffset + key.words, slotAlign(value));
    this.bucketWords = alignUp(this.valueOffset + slotWords(value), 2);
    this.description = `map(${key.description},${value.description})`;
  }

  get(a: Arena, session: number, w: WordOffset): MapAccessor<unknown, unknown, unknown> {
    return new MapAccessor(this, a, session, w);
  }

  /**
   * Finds the staged key (see {@link KeyType.prepare}); returns its bucket's word, or -1 with
   * {@link MapType.freeBucket} set to where it would be inserted.
   */
  find(a: Arena, w: WordOffset, hash: number): number {
    const u32 = a.u32;
    const capacity = u32[w + M_CAPACITY]!;
    if (capacity === 0) {
      this.freeBucket = -1;
      return -1;
    }
    const table = u32[w + M_TABLE]!;
    const mask = capacity - 1;
    const state = (hash | OCCUPIED) >>> 0;
    const bucketWords = this.bucketWords;
    const key = this.key;
    const keyOffset = this.keyOffset;
    for (let i = hash & mask; ; i = (i + 1) & mask) {
      const bucket = table + i * bucketWords;
      const s = u32[bucket]!;
      if (s === 0) {
        this.freeBucket = bucket;
        return -1;
      }
      if (s === state && key.matches(a, bucket + keyOffset)) return bucket;
    }
  }

  /** Where {@link find} stopped when it did not find the key. */
  freeBucket = -1;

  /** Inserts or replaces; the key must not be staged yet. */
  setAt(a: Arena, w: WordOffset, key: unknown, value: unknown): void {
    let hash = this.key.prepare(key);
    let bucket = this.find(a, w, hash);
    if (bucket >= 0) {
      // Replacing the value of an existing key observes that the key exists: a read of the
      // key's tracker (its inserter). Without it, a replay without the inserter and the event
      // that later deleted the key would see this event create the key, and keep it.
      a.read(bucket + this.keyOffset + this.key.tracker);
      slotAssign(this.value, a, bucket + this.valueOffset, value);
      return;
    }
    a.writer();
    const count = a.u32[w + M_COUNT]!;
    const capacity = a.u32[w + M_CAPACITY]!;
    if ((count + 1) * 4 > capacity * 3) {
      this.#grow(a, w, capacity === 0 ? MAP_INITIAL_CAPACITY : capacity * 2);
      hash = this.key.prepare(key);
      this.find(a, w, hash);
    }
    bucket = this.freeBucket;
    a.set32(bucket, (hash | OCCUPIED) >>> 0);
    this.key.store(a, bucket + this.keyOffset);
    a.set32(w + M_COUNT, count + 1);
    a.own(w + M_MEMBERSHIP, false);
    slotInit(this.value, a, bucket + this.valueOffset, value);
  }

  /** Removes the key; returns whether it was present. */
  deleteAt(a: Arena, w: WordOffset, key: unknown): boolean {
    const bucket = this.find(a, w, this.key.prepare(key));
    if (bucket < 0) {
      a.read(w + M_MEMBERSHIP);
      a.writer().onDestroy(NO_OWNER as Ordinal);
      return false;
    }
    this.key.destroy(a, bucket + this.keyOffset);
    slotDestroy(this.value, a, bucket + this.valueOffset);
    this.#removeBucket(a, w, bucket);
    a.set32(w + M_COUNT, a.u32[w + M_COUNT]! - 1);
    a.own(w + M_MEMBERSHIP, false);
    return true;
  }

  clearAt(a: Arena, w: WordOffset): void {
    a.own(w + M_CLEAR_TRACKER, true);
    a.own(w + M_MEMBERSHIP, false);
    this.#destroyEntries(a, w);
    a.set32(w + M_TABLE, 0);
    a.set32(w + M_COUNT, 0);
    a.set32(w + M_CAPACITY, 0);
  }

  #destroyEntries(a: Arena, w: WordOffset): void {
    const capacity = a.u32[w + M_CAPACITY]!;
    const table = a.u32[w + M_TABLE]!;
    for (let i = 0; i < capacity; i++) {
      const bucket = table + i * this.bucketWords;
      if (a.u32[bucket] !== 0) {
        this.key.destroy(a, bucket + this.keyOffset);
        slotDestroy(this.value, a, bucket + this.valueOffset);
      }
    }
  }

  #grow(a: Arena, w: WordOffset, capacity: number): void {
    const bucketWords = this.bucketWords;
    const fresh = a.alloc(capacity * bucketWords);
    const u32 = a.u32;
    const old = u32[w + M_TABLE]!;
    const oldCapacity = u32[w + M_CAPACITY]!;
    const mask = capacity - 1;
    // The new table is fresh memory: copying into it needs no journal.
    for (let i = 0; i < oldCapacity; i++) {
      const from = old + i * bucketWords;
      const state = u32[from]!;
      if (state === 0) continue;
      let j = state & mask;
      while (u32[fresh + j * bucketWords] !== 0) j = (j + 1) & mask;
      u32.copyWithin(fresh + j * bucketWords, from, from + bucketWords);
    }
    a.set32(w + M_TABLE, fresh);
    a.set32(w + M_CAPACITY, capacity);
  }

  #removeBucket(a: Arena, w: WordOffset, bucket: number): void {
    const u32 = a.u32;
    const table = u32[w + M_TABLE]!;
    const mask = u32[w + M_CAPACITY]! - 1;
    const bucketWords = this.bucketWords;
    let hole = (bucket - table) / bucketWords;
    let j = hole;
    for (;;) {
      j = (j + 1) & mask;
      const at = table + j * bucketWords;
      const state = a.u32[at]!;
      if (state === 0) break;
      const home = state & mask;
      // The entry at j may move into the hole unless its home lies cyclically in (hole, j].
      const stays = hole <= j ? home > hole && home <= j : home > hole || home <= j;
      if (!stays) {
        a.copyWords(table + hole * bucketWords, at, bucketWords);
        hole = j;
      }
    }
    a.zero(table + hole * bucketWords, bucketWords);
  }

  assign(a: Arena, w: WordOffset, value: unknown): void {
    const entries = value instanceof Map ? [...value] : isPlainRecord(value) ? Object.entries(value) : undefined;
    if (entries === undefined) throw new ValueError(`expected a Map for ${this.description}, got ${describeValue(value)}`);
    this.clearAt(a, w);
    for (const [k, v] of entries) this.setAt(a, w, k, v);
  }

  exportAt(a: Arena, w: WordOffset): Map<unknown, unknown> {
    a.read(w + M_MEMBERSHIP);
    const out = new Map<unknown, unknown>();
    const capacity = a.u32[w + M_CAPACITY]!;
    for (let i = 0; i < capacity; i++) {
      const bucket = a.u32[w + M_TABLE]! + i * this.bucketWords;
      if (a.u32[bucket] === 0) continue;
      a.read(bucket + this.keyOffset + this.key.tracker);
      out.set(this.key.get(a, bucket + this.keyOffset), slotExport(this.value, a, bucket + this.valueOffset));
    }
    return out;
  }

  destroy(a: Arena, w: WordOffset): void {
    this.#destroyEntries(a, w);
    a.release(w + M_MEMBERSHIP);
    a.release(w + M_CLEAR_TRACKER);
    a.zero(w, this.words);
  }

  /**
   * Bucket words of occupied buckets, in table order (deterministic). With `observe`, each key
   * yielded is a tracked read of its tracker: iterating observes which keys exist.
   */
  *buckets(a: Arena, w: WordOffset, session: number, observe = false): IterableIterator<number> {
    const capacity = a.u32[w + M_CAPACITY]!;
    const table = a.u32[w + M_TABLE]!;
    const keyTracker = this.keyOffset + this.key.tracker;
    for (let i = 0; i < capacity; i++) {
      if (session !== a.session) a.stale();
      const bucket = table + i * this.bucketWords;
      if (a.u32[bucket] !== 0) {
        if (observe) a.read(bucket + keyTracker);
        yield bucket;
      }
    }
  }
}

function isPlainRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype;
}

/**
 * The accessor of a map. `K` is the key type, `E` what values read as (plain for leaves, an
 * accessor for composites), `P` the plain value `set` takes.
 */
export class MapAccessor<K, E, P> {
  readonly #type: MapType;
  readonly #a: Arena;
  readonly #s: number;
  readonly #w: WordOffset;

  constructor(type: MapType, a: Arena, session: number, w: WordOffset) {
    this.#type = type;
    this.#a = a;
    this.#s = session;
    this.#w = w;
  }

  #arena(): Arena {
    const a = this.#a;
    if (this.#s !== a.session) a.stale();
    return a;
  }

  /** The value under `key` (an accessor for composite values), or `undefined`. */
  get(key: K): E | undefined {
    const a = this.#arena();
    const type = this.#type;
    const bucket = type.find(a, this.#w, type.key.prepare(key));
    if (bucket < 0) {
      a.read(this.#w + M_MEMBERSHIP);
      return undefined;
    }
    // Finding the key observes that it exists: a read of its tracker (its inserter).
    a.read(bucket + type.keyOffset + type.key.tracker);
    return slotGet(type.value, a, this.#s, bucket + type.valueOffset) as E;
  }

  /** Whether `key` is present (a tracked read either way). */
  has(key: K): boolean {
    const a = this.#arena();
    const type = this.#type;
    const bucket = type.find(a, this.#w, type.key.prepare(key));
    if (bucket < 0) {
      a.read(this.#w + M_MEMBERSHIP);
      return false;
    }
    a.read(bucket + type.keyOffset + type.key.tracker);
    return true;
  }

  /** Inserts or replaces the value under `key` (imported from a plain value). */
  set(key: K, value: P): this {
    this.#type.setAt(this.#arena(), this.#w, key, value);
    return this;
  }

  /** Removes `key`; returns whether it was present. Always makes the event a tombstone. */
  delete(key: K): boolean {
    return this.#type.deleteAt(this.#arena(), this.#w, key);
  }

  /** Removes every entry. */
  clear(): void {
    this.#type.clearAt(this.#arena(), this.#w);
  }

  /** Replaces the contents with the entries of a `Map` (or a plain object for string keys). */
  assign(entries: Map<K, P> | Record<string, P>): void {
    this.#type.assign(this.#arena(), this.#w, entries);
  }

  /**
   * Number of entries. Inside apply it is a tracked read of the membership and of every key (the
   * count depends on each present key's insertion), so it costs O(size) there.
   */
  get size(): number {
    const a = this.#arena();
    a.read(this.#w + M_MEMBERSHIP);
    if (a.ctx !== null) for (const _ of this.#type.buckets(a, this.#w, this.#s, true)) { /* reads the key */ }
    return a.u32[this.#w + M_COUNT]!;
  }

  /** Keys in table order. */
  *keys(): IterableIterator<K> {
    const a = this.#arena();
    const type = this.#type;
    a.read(this.#w + M_MEMBERSHIP);
    for (const bucket of type.buckets(a, this.#w, this.#s, true)) yield type.key.get(a, bucket + type.keyOffset) as K;
  }

  /** Values in table order. */
  *values(): IterableIterator<E> {
    const a = this.#arena();
    const type = this.#type;
    a.read(this.#w + M_MEMBERSHIP);
    for (const bucket of type.buckets(a, this.#w, this.#s, true)) yield slotGet(type.value, a, this.#s, bucket + type.valueOffset) as E;
  }

  /** `[key, value]` pairs in table order. */
  *entries(): IterableIterator<[K, E]> {
    const a = this.#arena();
    const type = this.#type;
    a.read(this.#w + M_MEMBERSHIP);
    for (const bucket of type.buckets(a, this.#w, this.#s, true)) {
      yield [type.key.get(a, bucket + type.keyOffset) as K, slotGet(type.value, a, this.#s, bucket + type.valueOffset) as E];
    }
  }

  [Symbol.iterator](): IterableIterator<[K, E]> {
    return this.entries();
  }

  /** The entries as a JS `Map` of plain values. */
  export(): Map<K, P> {
    return this.#type.exportAt(this.#arena(), this.#w) as Map<K, P>;
  }

  toJSON(): unknown {
    return jsonify(this.export());
  }
}
