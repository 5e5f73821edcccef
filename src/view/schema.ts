/**
 * The schema builders (`s.*`) and the types inferred from a schema: `Infer<T>`, the plain JS value
 * of a schema, and `View<T>`, the accessor type that queries and `apply` see.
 *
 * A schema is a value: `s.object({ total: s.u32() })` builds the type's layout once; the view
 * generates its accessor classes from it.
 *
 * @example
 * const Employee = s.object({ name: s.string(), salary: s.u32() });
 * const Company = s.object({ totalSalary: s.u32(), employees: s.map(s.string(), Employee) });
 * type Plain = s.Infer<typeof Company>;  // { totalSalary: number; employees: Map<string, ...> }
 */
import { createHash } from 'node:crypto';
import { ErrorCode, NoatunError } from '../errors.js';
import {
  type AnyType,
  type ListAccessor,
  ListType,
  ObjectType,
  type OpaqueListAccessor,
  OpaqueListType,
  OptionalType,
} from './composite.js';
import {
  BigLeaf,
  BoolLeaf,
  BytesLeaf,
  F64Leaf,
  type FixedCodec,
  FixedLeaf,
  I32Leaf,
  type KeyType,
  type LeafType,
  OpaqueLeaf,
  rawCodec,
  UintLeaf,
} from './leaf.js';
import { type MapAccessor, MapType } from './map.js';

// The accessor classes and the codec interface appear in the signatures of `s.*` (`s.MapView` is a
// `MapAccessor`, `s.fixed` takes a `FixedCodec`), so their types are part of the public API.
export type { ListAccessor, OpaqueListAccessor } from './composite.js';
export type { FixedCodec } from './leaf.js';
export type { MapAccessor } from './map.js';

declare const PLAIN: unique symbol;
declare const VIEWED: unique symbol;

/**
 * A schema type. `P` is its plain JS value, `V` what a read of it gives inside a view (the same
 * plain value for leaves, an accessor for objects and collections). The two members exist only
 * for the type checker.
 */
export interface Schema<P, V> {
  /** The plain type, for {@link Infer}; never set at run time. */
  readonly [PLAIN]?: P;
  /** The accessor type, for {@link View}; never set at run time. */
  readonly [VIEWED]?: V;
}

/** A schema usable as a map key. */
export interface KeySchema<P> extends Schema<P, P> {
  /** Marks the types `map` accepts as keys. */
  readonly keyable: true;
}

/** A leaf schema (stored inline, read as a plain value). */
export interface LeafSchema<P> extends Schema<P, P> {
  /** Marks the types stored inline. */
  readonly leaf: true;
}

/** The plain JS type of a schema. */
export type Infer<T> = T extends Schema<infer P, unknown> ? P : never;

/** The accessor type of a schema, as seen inside `db.read` and `apply`. */
export type View<T> = T extends Schema<unknown, infer V> ? V : never;

/** What a schema's shape maps to as a plain object. */
export type InferShape<F> = { [K in keyof F]: Infer<F[K]> };

/** An object's accessor: its fields as properties, plus `export`, `assign` and `toJSON`. */
export type ObjectView<F> = { -readonly [K in keyof F]: View<F[K]> } & {
  /** The object as a plain value. */
  export(): InferShape<F>;
  /** Replaces every field with those of a plain value. */
  assign(value: InferShape<F>): void;
  /** The plain value made JSON-friendly (maps as objects, bigints as strings), for `JSON.stringify`. */
  toJSON(): unknown;
};

/** The accessor of `list(T)`. */
export type ListView<T> = ListAccessor<View<T>, Infer<T>>;
/** The accessor of `map(K, V)`. */
export type MapView<K, V> = MapAccessor<Infer<K>, View<V>, Infer<V>>;
/** The accessor of `opaqueList(T)`. */
export type OpaqueListView<T> = OpaqueListAccessor<View<T>, Infer<T>>;

/** An object schema, the kind the view's root must be. */
export type ObjectSchema<F> = Schema<InferShape<F>, ObjectView<F>> & ObjectType;

/** Any schema type: the bound of the builders that take one (`list(T)`, `optional(T)`, ...). */
export type AnySchema = Schema<unknown, unknown>;

function runtime(schema: AnySchema, where: string): AnyType {
  if (schema === null || typeof schema !== 'object' || !('leaf' in schema)) {
    throw new NoatunError(ErrorCode.SCHEMA_INVALID, `${where} is not a schema type (build it with s.*)`);
  }
  return schema as unknown as AnyType;
}

/**
 * Composite types nested in each other, at most. The view walks a schema recursively (its
 * accessor classes, a value's copy and write): about a thousand levels overflowed the stack in
 * `Database.open` with a bare `RangeError`, and no data has a shape that deep.
 */
export const MAX_SCHEMA_DEPTH = 64;

/** Levels of composite types in each type built here (a leaf has none). */
const depths = new WeakMap<AnyType, number>();

/** Records the depth of `composite`, made of `children`; refuses it past {@link MAX_SCHEMA_DEPTH}. */
function nest(composite: AnyType, children: readonly AnyType[]): void {
  let deepest = 0;
  for (const child of children) deepest = Math.max(deepest, child.leaf ? 0 : (depths.get(child) ?? 1));
  if (deepest + 1 > MAX_SCHEMA_DEPTH) {
    throw new NoatunError(ErrorCode.SCHEMA_INVALID, `schema types nest at most ${MAX_SCHEMA_DEPTH} levels deep (objects, lists, maps and optionals in each other)`);
  }
  depths.set(composite, deepest + 1);
}

// ------------------------------------------------------------------ leaves

/** A boolean. */
export function bool(): LeafSchema<boolean> {
  return new BoolLeaf() as unknown as LeafSchema<boolean>;
}
/** An unsigned 8-bit integer. */
export function u8(): KeySchema<number> & LeafSchema<number> {
  return new UintLeaf('u8', 0xff) as unknown as KeySchema<number> & LeafSchema<number>;
}
/** An unsigned 16-bit integer. */
export function u16(): KeySchema<number> & LeafSchema<number> {
  return new UintLeaf('u16', 0xffff) as unknown as KeySchema<number> & LeafSchema<number>;
}
/** An unsigned 32-bit integer. Writing a value outside `[0, 2^32)` throws `VALUE_INVALID`. */
export function u32(): KeySchema<number> & LeafSchema<number> {
  return new UintLeaf('u32', 0xffffffff) as unknown as KeySchema<number> & LeafSchema<number>;
}
/** A signed 32-bit integer. */
export function i32(): KeySchema<number> & LeafSchema<number> {
  return new I32Leaf() as unknown as KeySchema<number> & LeafSchema<number>;
}
/** A 64-bit float. */
export function f64(): LeafSchema<number> {
  return new F64Leaf('f64') as unknown as LeafSchema<number>;
}
/** An unsigned 64-bit integer, as a bigint. */
export function u64(): KeySchema<bigint> & LeafSchema<bigint> {
  return new BigLeaf('u64') as unknown as KeySchema<bigint> & LeafSchema<bigint>;
}
/** A signed 64-bit integer, as a bigint. */
export function i64(): KeySchema<bigint> & LeafSchema<bigint> {
  return new BigLeaf('i64') as unknown as KeySchema<bigint> & LeafSchema<bigint>;
}
/** A timestamp in milliseconds since the epoch, read and written as a number. */
export function time(): LeafSchema<number> {
  return new F64Leaf('time') as unknown as LeafSchema<number>;
}
/**
 * A UTF-8 string. A lone surrogate (half of a pair, as `text.slice(0, n)` can leave of an emoji)
 * has no UTF-8 form and reads back as U+FFFD, on every peer alike: two strings that differ only
 * there are one value, and one map key.
 */
export function string(): KeySchema<string> & LeafSchema<string> {
  return new BytesLeaf<string>('string') as unknown as KeySchema<string> & LeafSchema<string>;
}

/** Bytes: variable length with no argument, exactly `size` bytes with one (usable as a map key). */
export function bytes(size?: number): KeySchema<Uint8Array> & LeafSchema<Uint8Array> {
  const type = size === undefined ? new BytesLeaf<Uint8Array>('bytes') : new FixedLeaf(rawCodec(size));
  return type as unknown as KeySchema<Uint8Array> & LeafSchema<Uint8Array>;
}

/**
 * A fixed-size leaf with its own JS representation (how `s.messageId()` is built): stored as
 * `codec.size` bytes, usable as a map key.
 */
export function fixed<T>(codec: FixedCodec<T>): KeySchema<T> & LeafSchema<T> {
  return new FixedLeaf(codec) as unknown as KeySchema<T> & LeafSchema<T>;
}

// ------------------------------------------------------------------ composites

/** An object with the given fields, laid out inline. */
export function object<F extends Record<string, AnySchema>>(shape: F): ObjectSchema<F> {
  if (shape === null || typeof shape !== 'object') {
    throw new NoatunError(ErrorCode.SCHEMA_INVALID, 's.object() takes an object of field types');
  }
  const fields: Record<string, AnyType> = {};
  for (const [name, type] of Object.entries(shape)) {
    // (Assigned below, it would set the prototype of `fields`: the field vanished without a word.)
    if (name === '__proto__') throw new NoatunError(ErrorCode.SCHEMA_INVALID, '"__proto__" cannot be a field name (reserved by the accessor)');
    fields[name] = runtime(type, `field "${name}"`);
  }
  const type = new ObjectType(fields);
  nest(type, Object.values(fields));
  return type as unknown as ObjectSchema<F>;
}

/** `T` or absent (`null`). */
export function optional<T extends AnySchema>(inner: T): Schema<Infer<T> | null, View<T> | null> {
  const type = new OptionalType(runtime(inner, 'the optional type'));
  nest(type, [type.inner]);
  return type as unknown as Schema<Infer<T> | null, View<T> | null>;
}

/** A growable list of `T`. */
export function list<T extends AnySchema>(element: T): Schema<Infer<T>[], ListView<T>> {
  const type = new ListType(runtime(element, 'the list element'));
  nest(type, [type.element]);
  return type as unknown as Schema<Infer<T>[], ListView<T>>;
}

/** A hash map from keys `K` (string, integer types, messageId, bytes(n)) to values `V`. */
export function map<K extends KeySchema<unknown>, V extends AnySchema>(
  key: K,
  value: V,
): Schema<Map<Infer<K>, Infer<V>>, MapView<K, V>> {
  const keyType = runtime(key, 'the map key');
  if (!keyType.leaf || !(keyType as LeafType<unknown>).keyable) {
    throw new NoatunError(ErrorCode.SCHEMA_INVALID, `${keyType.description} cannot be a map key`);
  }
  const type = new MapType(keyType as KeyType<unknown>, runtime(value, 'the map value'));
  nest(type, [type.value]);
  return type as unknown as Schema<
    Map<Infer<K>, Infer<V>>,
    MapView<K, V>
  >;
}

/**
 * A leaf that `apply` may write but never read, so it is never a read dependency: the events that
 * wrote it can be pruned as soon as it is overwritten. Readable outside apply.
 */
export function opaque<T extends LeafSchema<unknown>>(inner: T): Schema<Infer<T>, View<T>> {
  const type = runtime(inner, 'the opaque type');
  if (!type.leaf) {
    throw new NoatunError(ErrorCode.SCHEMA_INVALID, `opaque() takes a leaf type, not ${type.description}; use opaqueList for lists`);
  }
  return new OpaqueLeaf(type) as unknown as Schema<Infer<T>, View<T>>;
}

/** A list that `apply` can only push to and clear: pushers never depend on each other. */
export function opaqueList<T extends AnySchema>(element: T): Schema<Infer<T>[], OpaqueListView<T>> {
  const type = new OpaqueListType(runtime(element, 'the opaque list element'));
  nest(type, [type.element]);
  return type as unknown as Schema<Infer<T>[], OpaqueListView<T>>;
}

/**
 * The 16-byte hash that identifies a root schema's layout in the view file, and the version of
 * the `apply` that fills it when one is named (without one, the hash of views made before it).
 */
export function schemaHash(root: AnySchema, applyVersion?: string): Uint8Array {
  const type = runtime(root, 'the root');
  const named = applyVersion === undefined ? '' : `\napply:${JSON.stringify(applyVersion)}`;
  return new Uint8Array(createHash('sha256').update(`noatun-view/1:${type.description}${named}`).digest().subarray(0, 16));
}
