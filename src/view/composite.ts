/**
 * Composite types: objects, optional values, lists and opaque lists, with their accessor classes
 * (maps have their own file, `map.ts`), and the helpers every container uses for its slots.
 *
 * Placement rule: an object is laid out inline inside its parent object, so its address never
 * changes. Inside a container (list element, map value) a leaf is stored inline, but a composite
 * value is stored in its own block and the container holds a pointer to it. Containers move their
 * slots when they grow (and maps when they compact), but a composite value never moves, so an
 * accessor to it stays valid for its whole session.
 *
 * Object accessors are classes generated once per object type, with each field at a fixed word
 * offset: a field read is a session check, a tracker report and one typed-array load.
 */
import { ErrorCode, NoatunError, quote, ValueError } from '../errors.js';
import type { Arena, WordOffset } from './arena.js';
import { LIST_INITIAL_CAPACITY } from './constants.js';
import { type LeafType, UintLeaf } from './leaf.js';

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
  /**
   * For a container (list, map): the accessor class {@link get} constructs, taking
   * `(arena, session, w)`, so an object accessor can construct it directly; with `readOnly`,
   * the class for read sessions (see {@link ObjectType.ReadAccessor}).
   */
  accessorClass?(readOnly?: boolean): new (a: Arena, session: number, w: WordOffset) => unknown;
}

/** Any type of the view. */
export type AnyType = LeafType<unknown> | CompositeType;

// ------------------------------------------------------------------ slots in containers

/** Words a value of type `t` takes in a container slot. */
export function slotWords(t: AnyType): number {
  return t.leaf ? t.words : 1;
}

/** Alignment (in words) of a value of type `t` in a container slot. */
export function slotAlign(t: AnyType): 1 | 2 {
  return t.leaf ? t.align : 1;
}

/** What a container slot reads as: the plain value of a leaf, the accessor of a composite. */
export function slotGet(t: AnyType, a: Arena, session: number, w: WordOffset): unknown {
  return t.leaf ? t.get(a, w) : t.get(a, session, a.u32[w]!);
}

/** Fills a zeroed slot. */
export function slotInit(t: AnyType, a: Arena, w: WordOffset, value: unknown): void {
  if (t.leaf) {
    t.set(a, w, value);
  } else {
    const block = a.alloc(t.words);
    a.set32(w, block);
    t.assign(a, block, value);
  }
}

/** Replaces the value in a filled slot. */
export function slotAssign(t: AnyType, a: Arena, w: WordOffset, value: unknown): void {
  if (t.leaf) t.set(a, w, value);
  else t.assign(a, a.u32[w]!, value);
}

/** The value in a slot as plain JS. */
export function slotExport(t: AnyType, a: Arena, w: WordOffset): unknown {
  return t.leaf ? t.get(a, w) : t.exportAt(a, a.u32[w]!);
}

/** Releases the trackers of the value in a slot and zeroes it (a composite's block is left behind). */
export function slotDestroy(t: AnyType, a: Arena, w: WordOffset): void {
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
    for (const [k, v] of value) put(out, String(k), jsonify(v));
    return out;
  }
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Uint8Array) return Array.from(value);
  if (Array.isArray(value)) return value.map(jsonify);
  if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) put(out, k, jsonify(v));
    return out;
  }
  return value;
}

/** Sets `out[key]`, as an own property even for `__proto__` (an assignment would set the prototype). */
function put(out: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
  else out[key] = value;
}

/** `words` rounded up to the alignment `align` (1 or 2 words). */
export function alignUp(words: number, align: 1 | 2): number {
  return align === 2 ? (words + 1) & ~1 : words;
}

/** A short description of a value for error messages. */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'function') return 'a function';
  return typeof value === 'object' ? 'an object' : typeof value === 'string' ? quote(value) : String(value);
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

/**
 * The method that moves an accessor of a value that never moves (the root and what is laid out
 * inline in it) into another session, with the child accessors it keeps: the view reuses the
 * root's accessors for every session instead of making them anew (see MaterializedView). A symbol,
 * so it is no name an application sees.
 */
export const ENTER = Symbol('noatun.enterSession');

/** On the prototype of every accessor (object, list, map, opaque list): see `detach`. */
export const IS_ACCESSOR = Symbol('noatun.accessor');

/**
 * A plain copy of `value` as the write of a `type` reads it: each field of the schema read once
 * (getters run once, in field order), accessors replaced by their plain value (`export()`),
 * arrays, Maps and records copied to the depth of the schema; properties the schema lacks are
 * not read at all. Called where an app writes a composite value, before anything is written, for
 * three reasons:
 * - an accessor reads the view as it is when it is read, so `list.assign([...list].sort(...))`
 *   copied from elements the assignment had already cleared, and got zeros;
 * - no code of the app runs while the view is half written: a getter that pushed onto the list
 *   being pushed to left an element pointing at the view file's header (and a view that differed
 *   after a rebuild), and getters ran twice;
 * - a value with a cycle or a deep chain in a property the schema lacks is written as any other
 *   (it overflowed the stack).
 * A value the write would refuse (of the wrong kind) is returned as it is, to be refused there.
 * (An accessor of an entry deleted before it is written elsewhere still reads the cleared entry:
 * `export()` it first.)
 */
export function detach(type: AnyType, value: unknown): unknown {
  if (type.leaf || value === null || typeof value !== 'object') return value;
  if ((value as { [IS_ACCESSOR]?: boolean })[IS_ACCESSOR] === true) return (value as { export(): unknown }).export();
  switch (type.kind) {
    case 'object': {
      if (Array.isArray(value)) return value;
      const copy: Record<string, unknown> = {};
      for (const field of (type as ObjectType).fields) {
        put(copy, field.name, detach(field.type, (value as Record<string, unknown>)[field.name]));
      }
      return copy;
    }
    case 'optional':
      return detach((type as OptionalType).inner, value);
    case 'list':
    case 'opaqueList': {
      if (!Array.isArray(value)) return value;
      const element = (type as ListType).element;
      const length = value.length;
      const copy: unknown[] = new Array(length);
      for (let i = 0; i < length; i++) copy[i] = detach(element, value[i]);
      return copy;
    }
    case 'map': {
      const valueType = (type as CompositeType & { readonly value: AnyType }).value;
      const entries = value instanceof Map ? [...value] : isPlainRecord(value) ? Object.entries(value) : undefined;
      if (entries === undefined) return value;
      const copy = new Map<unknown, unknown>();
      for (const [k, v] of entries) copy.set(k, detach(valueType, v));
      return copy;
    }
    default:
      return value;
  }
}

/**
 * An accessor that can be moved into another session (`ENTER`): those of maps and lists,
 * and those of objects made by {@link ObjectType.Accessor} and {@link ObjectType.RootAccessor}.
 */
export interface ReusableAccessor {
  [ENTER](session: number): void;
}

/**
 * The two accessor classes of a container type (map, list), each generated on first use: the one
 * apply uses and the one of read sessions (see {@link ObjectType.ReadAccessor}).
 */
export class AccessorClasses<C> {
  /** Apply's class once generated: the type's `get` reads it directly. */
  write: C | undefined;
  #read: C | undefined;
  readonly #generate: (readOnly: boolean) => C;

  constructor(generate: (readOnly: boolean) => C) {
    this.#generate = generate;
  }

  /** The class for read sessions (`readOnly`) or for apply. */
  of(readOnly: boolean): C {
    if (readOnly) return (this.#read ??= this.#generate(true));
    return (this.write ??= this.#generate(false));
  }
}

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
  #readAccessor: ObjectAccessorClass | undefined;
  #rootAccessor: ObjectAccessorClass | undefined;

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
    this.#accessor ??= generateObjectAccessor(this, 'write');
    return this.#accessor;
  }

  /**
   * The accessor class of read sessions (queries), generated apart from {@link Accessor}, the one
   * apply uses. Its reads report nothing (a read session tracks nothing) and it reaches the read
   * classes of the containers and objects inside. Two classes because V8 compiles each function
   * once for all its callers: a getter apply has made hot carries apply's tracking code into its
   * compiled form, and V8 then judges it too big to inline into a query.
   */
  get ReadAccessor(): ObjectAccessorClass {
    this.#readAccessor ??= generateObjectAccessor(this, 'read');
    return this.#readAccessor;
  }

  /**
   * The accessor class of the root of read sessions: a {@link ReadAccessor} that makes the
   * accessors of everything inline in it once (`$keep()`) and keeps them, so a view reuses them
   * for every session, moving them in with `ENTER`.
   */
  get RootAccessor(): ObjectAccessorClass {
    this.#rootAccessor ??= generateObjectAccessor(this, 'root');
    return this.#rootAccessor;
  }

  get(a: Arena, session: number, w: WordOffset): object {
    const Accessor = this.#accessor ?? this.Accessor;
    return new Accessor(a, session, w);
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
        else throw new ValueError('missing (every field but an optional one must be given)', field.name);
      }
      try {
        if (field.type.leaf) field.type.set(a, w + field.offset, v);
        else field.type.assign(a, w + field.offset, v);
      } catch (error) {
        throw ValueError.within(error, field.name);
      }
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
 * What an object accessor class is for: `write` for apply (tracked reads; container children made
 * on first access and kept), `read` for queries (reads report nothing; children made on each
 * access and kept nowhere), `root` for the root of read sessions (as `read`, but every child made
 * once and kept, moved into each session with the root).
 */
type AccessorMode = 'write' | 'read' | 'root';

/**
 * Builds the accessor class of an object type with `new Function`, so that every field getter has
 * its offset as a constant and calls one specific type's method (a monomorphic, inlinable site).
 *
 * The getters are kept small because V8 inlines by bytecode size, and a query only runs at the
 * speed of plain JS when the accessors it goes through are inlined into it: then V8 also need not
 * allocate the accessors it does not keep. Hence no session check in a container field's getter
 * (the child checks its own session, the same one, on every use) and, in read classes, no child
 * kept on the accessor (a kept child is a store V8 cannot remove).
 */
function generateObjectAccessor(type: ObjectType, mode: AccessorMode): ObjectAccessorClass {
  const lines: string[] = [];
  const types: AnyType[] = [];
  const keeps: string[] = [];
  const kept = (t: AnyType) => !t.leaf && !(t instanceof OptionalType);
  const keeping = mode !== 'read';
  lines.push('const Accessor = class ObjectAccessor {');
  // Declared fields are defined on the instance (not assigned), so they never reach the
  // prototype chain's guard below.
  lines.push('  $a; $s; $w;');
  if (keeping) {
    type.fields.forEach((field, i) => {
      if (kept(field.type)) lines.push(`  $c${i} = undefined;`);
    });
    // The children it keeps are inline, so they never move either: they go along.
    // (A root has made all of them: no check needed, and a smaller method for V8 to inline.)
    const enters = type.fields
      .map((field, i) =>
        !kept(field.type) ? '' : mode === 'root' ? ` this.$c${i}[ENTER](s);` : ` if (this.$c${i} !== undefined) this.$c${i}[ENTER](s);`,
      )
      .join('');
    lines.push(`  [ENTER](s) { this.$s = s;${enters} }`);
  }
  lines.push('  constructor(a, s, w) { this.$a = a; this.$s = s; this.$w = w; }');
  type.fields.forEach((field, i) => {
    types.push(field.type);
    const key = JSON.stringify(field.name);
    const check = 'const a = this.$a; if (this.$s !== a.session) a.stale();';
    // Setters name the field in a value error (the path grows as the error passes each level).
    const guard = (call: string) => `try { ${call}; } catch (e) { throw WITHIN(e, ${key}); }`;
    const at = `this.$w + ${field.offset}`;
    if (field.type.leaf) {
      const read = mode === 'write' ? 'get' : 'peek';
      lines.push(`  get [${key}]() { return T${i}.${read}(this.$arena(), ${at}); }`);
    } else if (field.type instanceof OptionalType) {
      lines.push(`  get [${key}]() { ${check} return T${i}.get(a, this.$s, ${at}); }`);
    } else {
      const make = classFor(field.type) === undefined ? `T${i}.get(this.$a, this.$s, ${at})` : `new C${i}(this.$a, this.$s, ${at})`;
      if (mode === 'write') {
        lines.push(`  get [${key}]() { return this.$c${i} ?? this.$make${i}(); }`);
        lines.push(`  $make${i}() { return (this.$c${i} = ${make}); }`);
      } else if (mode === 'read') {
        lines.push(`  get [${key}]() { return ${make}; }`);
      } else {
        lines.push(`  get [${key}]() { return this.$c${i}; }`);
        keeps.push(`this.$c${i} = ${make};${field.type instanceof ObjectType ? ` this.$c${i}.$keep();` : ''}`);
      }
    }
    if (field.type.leaf) lines.push(`  set [${key}](v) { ${check} ${guard(`T${i}.set(a, ${at}, v)`)} }`);
    else lines.push(`  set [${key}](v) { ${check} ${guard(`T${i}.assign(a, ${at}, DETACH(T${i}, v))`)} }`);
  });
  // Makes and keeps every child (the root of read sessions, once).
  if (mode === 'root') lines.push(`  $keep() { ${keeps.join(' ')} }`);
  lines.push('  $arena() { const a = this.$a; if (this.$s !== a.session) a.stale(); return a; }');
  lines.push('  export() { const a = this.$a; if (this.$s !== a.session) a.stale(); return SELF.exportAt(a, this.$w); }');
  lines.push('  assign(v) { const a = this.$a; if (this.$s !== a.session) a.stale(); SELF.assign(a, this.$w, DETACH(SELF, v)); }');
  lines.push('  get [IS_ACCESSOR]() { return true; }');
  lines.push('  toJSON() { return JSONIFY(this.export()); }');
  lines.push('};');
  // Assigning a property the schema does not have (a misspelt field) reaches the end of the
  // prototype chain, where a guard refuses it: otherwise it would silently set a property of the
  // accessor object and never reach the view.
  lines.push('Object.setPrototypeOf(Accessor.prototype, UNKNOWN_GUARD);');
  lines.push('return Accessor;');
  // The class a container field's accessor is made from, for this mode.
  function classFor(t: AnyType): unknown {
    if (t instanceof ObjectType) return mode === 'write' ? t.Accessor : mode === 'read' ? t.ReadAccessor : t.RootAccessor;
    return !t.leaf && t.accessorClass !== undefined ? t.accessorClass(mode !== 'write') : undefined;
  }
  const classes = types.map(classFor);
  const params = ['SELF', 'JSONIFY', 'WITHIN', 'UNKNOWN_GUARD', 'ENTER', 'DETACH', 'IS_ACCESSOR', ...types.map((_, i) => `T${i}`), ...types.map((_, i) => `C${i}`)];
  const factory = new Function(...params, lines.join('\n')) as (...args: unknown[]) => ObjectAccessorClass;
  return factory(type, jsonify, ValueError.within, unknownFieldGuard(type), ENTER, detach, IS_ACCESSOR, ...types, ...classes);
}

/**
 * The last prototype of an object type's accessors: a proxy whose only trap refuses assignments
 * to properties the type does not have (reads of them still give `undefined`).
 */
function unknownFieldGuard(type: ObjectType): object {
  const names = type.fields.map((field) => field.name);
  return new Proxy(Object.prototype, {
    set(_target, property) {
      const known = names.length === 0 ? 'it has none' : `it has ${names.map((n) => JSON.stringify(n)).join(', ')}`;
      throw new NoatunError(
        ErrorCode.UNKNOWN_FIELD,
        `${typeof property === 'string' ? JSON.stringify(property) : String(property)} is not a field of this object (${known})`,
      );
    },
  });
}

// ------------------------------------------------------------------ optional

/**
 * `optional(T)`: slot `[present, tracker, T…]`. Reading reports a read of the presence tracker.
 * The tracker belongs to the event that made the value present, for as long as it stays present:
 * setting a present optional again reads it (and owns only the value), and setting `null`
 * destroys the value and the presence, then owns the absence. So the event that sets `null` has
 * the one that made the value present among its victims, whoever set it since, and that event
 * cannot go while a later setter is stored (see {@link ListType} on elements, the same rule).
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
      if (present) {
        inner.destroy(a, w + this.offset);
        a.release(w + 1);
        a.set32(w, 0);
      }
      a.own(w + 1, false);
      return;
    }
    if (present) {
      a.read(w + 1);
    } else {
      a.own(w + 1, false);
      a.set32(w, 1);
    }
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
  if (old !== 0) a.retire(old, capacity * elementWords);
}

/**
 * `list(T)`: header `[block, length, capacity, length tracker, clear tracker, pad]`. Reading the
 * length or an element reports a read of the length tracker; push and pop read and write it, so
 * the writers of a list form a chain (use a map or an opaque list where pruning matters).
 *
 * Each element slot ends with an *existence tracker*, owned by the event that pushed the element
 * for as long as the element exists; `set` leaves it alone, and `pop`, `clear` and destroying the
 * list destroy it. So whatever destroys an element has its pusher among its victims, not only the
 * last event that set it. Without it, a tombstone whose victim (a `set`) was pruned before it
 * would, in a replay of the stored events, destroy the pusher's value instead and be kept for
 * good where the peer that did not replay prunes it (docs/PRUNING.md, "Destroyed data written by
 * several events"). The pusher cannot go while a later `set` of its element is stored: every list
 * operation reads the length, which chains it to the pushes before it.
 */
export class ListType implements CompositeType {
  readonly kind = 'list';
  readonly leaf = false as const;
  readonly words = 6;
  readonly align = 1 as const;
  readonly element: AnyType;
  /** Words of an element slot: the element's own, then its existence tracker (or in its padding). */
  readonly elementWords: number;
  /** Word offset of the existence tracker inside an element slot. */
  readonly existence: number;
  readonly description: string;
  /** The accessor classes generated for this list type ({@link generateListAccessor}). */
  readonly #classes = new AccessorClasses<ListAccessorClass>((readOnly) => generateListAccessor(this, readOnly));

  constructor(element: AnyType) {
    this.element = element;
    this.existence = element.leaf && element.spare !== undefined ? element.spare : slotWords(element);
    this.elementWords = alignUp(Math.max(slotWords(element), this.existence + 1), slotAlign(element));
    this.description = `list(${element.description})`;
  }

  /** Destroys the element in `slot`: its value's trackers, then its existence. */
  #destroyElement(a: Arena, slot: WordOffset): void {
    slotDestroy(this.element, a, slot);
    a.release(slot + this.existence);
  }

  get(a: Arena, session: number, w: WordOffset): ListAccessor<unknown, unknown> {
    const Accessor = this.#classes.write ?? this.#classes.of(false);
    return new Accessor(a, session, w);
  }

  /** The accessor class generated for this list type ({@link generateListAccessor}), or its read-session class. */
  accessorClass(readOnly = false): ListAccessorClass {
    return this.#classes.of(readOnly);
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
    const slot = a.u32[w + L_BLOCK]! + length * this.elementWords;
    try {
      slotInit(this.element, a, slot, value);
    } catch (error) {
      throw ValueError.within(error, `[${length}]`);
    }
    a.own(slot + this.existence, false);
    a.add32(w + L_LENGTH, 1);
    return length + 1;
  }

  clearAt(a: Arena, w: WordOffset): void {
    a.own(w + L_LENGTH_TRACKER, false);
    a.own(w + L_CLEAR_TRACKER, true);
    const length = a.u32[w + L_LENGTH]!;
    for (let i = 0; i < length; i++) this.#destroyElement(a, a.u32[w + L_BLOCK]! + i * this.elementWords);
    if (length !== 0) a.set32(w + L_LENGTH, 0);
  }

  /** Destroys the last of `length` elements (a pop). */
  popAt(a: Arena, w: WordOffset, length: number): void {
    this.#destroyElement(a, a.u32[w + L_BLOCK]! + (length - 1) * this.elementWords);
    a.add32(w + L_LENGTH, -1);
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
    for (let i = 0; i < length; i++) this.#destroyElement(a, a.u32[w + L_BLOCK]! + i * this.elementWords);
    a.release(w + L_LENGTH_TRACKER);
    a.release(w + L_CLEAR_TRACKER);
    a.zero(w, this.words);
  }
}

/** The accessor of a list. `E` is what elements read as, `P` the plain value they take. */
export abstract class ListAccessor<E, P> {
  // Every list accessor is made by the class generated for its list type (generateListAccessor),
  // whose prototype is this one: its constructor sets these (the type is on its prototype), so
  // they are declared here, not #private.
  private declare readonly $type: ListType;
  private declare readonly $a: Arena;
  private declare $s: number;
  private declare readonly $w: WordOffset;

  private $arena(): Arena {
    const a = this.$a;
    if (this.$s !== a.session) a.stale();
    return a;
  }

  /** See `ENTER`: a list inline in the root is reused for every session. */
  [ENTER](session: number): void {
    this.$s = session;
  }

  /** A list's length changes by `push` and `pop` only. */
  set length(_length: number) {
    throw new NoatunError(ErrorCode.UNKNOWN_FIELD, "a list's length cannot be set: it changes by push(value) and pop()");
  }

  /** Number of elements (a tracked read of the list's length). */
  get length(): number {
    // Written out rather than through $arena(): queries call this at every step, and V8 inlines
    // by bytecode size.
    const a = this.$a;
    const w = this.$w;
    if (this.$s !== a.session) a.stale();
    a.read(w + L_LENGTH_TRACKER);
    return a.u32[w + L_LENGTH]!;
  }

  /**
   * The element at `index`, or `undefined` past the end (a tracked read of the length in apply).
   * Written out per list type (generateListAccessor).
   */
  abstract get(index: number): E | undefined;

  /** Replaces the element at `index` (which must exist). */
  set(index: number, value: P): void {
    const a = this.$arena();
    const w = this.$w;
    a.read(w + L_LENGTH_TRACKER);
    if (typeof index !== 'number' || index >>> 0 !== index || index >= a.u32[w + L_LENGTH]!) {
      throw new NoatunError(ErrorCode.INDEX_OUT_OF_RANGE, `list index ${index} is out of range`);
    }
    try {
      slotAssign(this.$type.element, a, a.u32[w + L_BLOCK]! + index * this.$type.elementWords, detach(this.$type.element, value));
    } catch (error) {
      throw ValueError.within(error, `[${index}]`);
    }
  }

  /** Appends a value; returns the new length. */
  push(value: P): number {
    return this.$type.pushAt(this.$arena(), this.$w, detach(this.$type.element, value));
  }

  /** Removes the last element and returns it as a plain value (`undefined` when empty). */
  pop(): P | undefined {
    const a = this.$arena();
    const w = this.$w;
    a.read(w + L_LENGTH_TRACKER);
    a.own(w + L_LENGTH_TRACKER, false);
    const length = a.u32[w + L_LENGTH]!;
    if (length === 0) return undefined;
    const value = slotExport(this.$type.element, a, a.u32[w + L_BLOCK]! + (length - 1) * this.$type.elementWords) as P;
    this.$type.popAt(a, w, length);
    return value;
  }

  /** Removes every element. */
  clear(): void {
    this.$type.clearAt(this.$arena(), this.$w);
  }

  /** Replaces the contents with the given plain values. */
  assign(values: readonly P[]): void {
    this.$type.assign(this.$arena(), this.$w, detach(this.$type, values));
  }

  /** See `detach`. */
  get [IS_ACCESSOR](): boolean {
    return true;
  }

  /** The elements as a plain array. */
  export(): P[] {
    return this.$type.exportAt(this.$arena(), this.$w) as P[];
  }

  toJSON(): unknown {
    return jsonify(this.export());
  }

  /** Elements in order; like an array's iterator, it sees elements pushed or popped during the loop. */
  *[Symbol.iterator](): IterableIterator<E> {
    for (let i = 0; i < this.length; i++) yield this.get(i) as E;
  }
}

/** The accessor class of one list type. */
type ListAccessorClass = new (a: Arena, session: number, w: WordOffset) => ListAccessor<unknown, unknown>;

/**
 * Generates the accessor class of a list type: its own constructor and a `get` that reads this
 * element type with the element size as a constant, over {@link ListAccessor}'s prototype for
 * everything else. A class of its own per list type (not a subclass: V8 constructs subclasses far
 * slower), so a query's `list.get` is monomorphic and V8 can inline it; the shared `get` is
 * polymorphic as soon as a program has two list types. The class of read sessions (`readOnly`)
 * reports no reads and reads elements untracked (see ObjectType.ReadAccessor).
 */
function generateListAccessor(type: ListType, readOnly: boolean): ListAccessorClass {
  const element = type.element;
  // (A query reads an element of an unsigned integer type in place, not through its type's peek().)
  const read = element.leaf
    ? readOnly && element instanceof UintLeaf
      ? 'u32[e]'
      : `ELEMENT.${readOnly ? 'peek' : 'get'}(a, e)`
    : element instanceof ObjectType
      ? 'new ACCESSOR(a, s, a.u32[e])'
      : 'ELEMENT.get(a, s, a.u32[e])';
  // A read session tracks nothing: its class reports no reads (see ObjectType.ReadAccessor).
  const track = readOnly ? '' : `a.read(w + ${L_LENGTH_TRACKER});`;
  const length = readOnly
    ? `get length() { const a = this.$a; if (this.$s !== a.session) a.stale(); return a.u32[this.$w + ${L_LENGTH}]; }
      set length(v) { SET_LENGTH.call(this, v); }`
    : '';
  const body = `
    class GeneratedListAccessor {
      constructor(a, s, w) { this.$a = a; this.$s = s; this.$w = w; }
      get(index) {
        const a = this.$a;
        const s = this.$s;
        if (s !== a.session) a.stale();
        const w = this.$w;
        ${track}
        const u32 = a.u32;
        if (typeof index !== 'number' || index >>> 0 !== index || index >= u32[w + ${L_LENGTH}]) return undefined;
        const e = u32[w + ${L_BLOCK}] + index * ${type.elementWords};
        return ${read};
      }
      ${length}
    }
    // The type is the same for every instance: on the prototype, where ListAccessor's methods find it.
    GeneratedListAccessor.prototype.$type = TYPE;
    Object.setPrototypeOf(GeneratedListAccessor.prototype, BASE.prototype);
    return GeneratedListAccessor;`;
  const accessor = element instanceof ObjectType ? (readOnly ? element.ReadAccessor : element.Accessor) : undefined;
  const setLength = Object.getOwnPropertyDescriptor(ListAccessor.prototype, 'length')!.set;
  return new Function('BASE', 'TYPE', 'ELEMENT', 'ACCESSOR', 'SET_LENGTH', body)(ListAccessor, type, element, accessor, setLength) as ListAccessorClass;
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
    } catch (error) {
      throw ValueError.within(error, `[${length}]`);
    } finally {
      a.opaqueWrites = previous;
    }
    a.add32(w + L_LENGTH, 1);
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
  #s: number;
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

  /** See `ENTER`: a list inline in the root is reused for every session. */
  [ENTER](session: number): void {
    this.#s = session;
  }

  /** Appends a value (no read: concurrent pushers never depend on each other). */
  push(value: P): void {
    this.#type.pushAt(this.#arena(), this.#w, detach(this.#type.element, value));
  }

  /** See `detach`. */
  get [IS_ACCESSOR](): boolean {
    return true;
  }

  /** Removes every element. */
  clear(): void {
    this.#type.clearAt(this.#arena(), this.#w);
  }

  /** An opaque list's length changes by `push` and `clear` only. */
  set length(_length: number) {
    throw new NoatunError(ErrorCode.UNKNOWN_FIELD, "an opaque list's length cannot be set: it changes by push(value) and clear()");
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
    if (typeof index !== 'number' || index >>> 0 !== index || index >= a.u32[w + L_LENGTH]!) return undefined;
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

/** Whether `value` is a plain object (`{...}`), not a class instance, array or null. */
export function isPlainRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype;
}

/** A map key as a path step shows it: `"text"`, `42`, `7n`, or hex for bytes. */
export function describeKey(key: unknown): string {
  if (typeof key === 'string') return JSON.stringify(key);
  if (typeof key === 'bigint') return `${key}n`;
  if (key instanceof Uint8Array) return Buffer.from(key).toString('hex');
  return String(key);
}
