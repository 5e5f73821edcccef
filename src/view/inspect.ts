/**
 * A read-only walk over the whole view that produces a JSON-able tree: every object, map, list
 * and leaf with its value and the event that wrote it (the provenance an inspector shows).
 *
 * The view knows events only as the ordinals in its trackers, so the walk asks its caller to name
 * each ordinal (`writerOf`); the engine turns ordinals into message ids. The walk reads the arena
 * directly with the types' untracked `peek`, inside a read session, so it reports no reads and
 * cannot run inside `apply`.
 */
import { ErrorCode, NoatunError } from '../errors.js';
import type { Arena, WordOffset } from './arena.js';
import {
  type AnyType,
  ListType,
  ObjectType,
  OpaqueListType,
  OptionalType,
} from './composite.js';
import type { LeafType } from './leaf.js';
import { MapType, MapWord } from './map.js';
import type { ObjectSchema } from './schema.js';
import { asOrdinal, type Ordinal } from './tracking.js';
import type { MaterializedView } from './view.js';

/**
 * Entries shown per map or list before the rest is cut off.
 * @default 1000
 */
export const DEFAULT_INSPECT_MAX_ENTRIES = 1000;

/** Options of {@link Database.inspectView}. */
export interface InspectOptions {
  /**
   * Entries shown per map and per list; the rest are counted in `truncated`. Keeps the tree of a
   * large view small enough to send to a browser.
   * @default 1000
   */
  readonly maxEntries?: number;
}

/**
 * A leaf value made JSON-able: numbers, booleans and strings as they are; bigints as decimal
 * strings; byte arrays as hex; other values (a MessageId) by their `toString()`.
 */
export type InspectValue = string | number | boolean | null;

/** A leaf (a number, string, bytes, id, …) with the event that wrote it. */
export interface LeafNode {
  /** Tells the node kinds apart. */
  readonly kind: 'leaf';
  /** The schema type, e.g. `u32`, `string`, `opaque(string)`. */
  readonly type: string;
  /** The value, made JSON-able (see {@link InspectValue}). */
  readonly value: InspectValue;
  /** The event that wrote the value last, or null when no event did (a zeroed default). */
  readonly writer: string | null;
  /** Opaque data: writable in apply, never read there, so never a dependency. */
  readonly opaque: boolean;
}

/** A field of an {@link ObjectNode}. */
export interface FieldNode {
  /** The field's name in the schema. */
  readonly name: string;
  /** The field's value. */
  readonly node: ViewNode;
}

/** An object: its fields in schema order. Objects have no writer of their own. */
export interface ObjectNode {
  /** Tells the node kinds apart. */
  readonly kind: 'object';
  /** Every field, in the order the schema declares them. */
  readonly fields: readonly FieldNode[];
}

/** An `optional(T)`: whether it is set, who set (or unset) it last, and its value when set. */
export interface OptionalNode {
  /** Tells the node kinds apart. */
  readonly kind: 'optional';
  /** The schema type, e.g. `optional(string)`. */
  readonly type: string;
  /** True when a value is set. */
  readonly present: boolean;
  /** The event that last set or cleared it, or null. */
  readonly writer: string | null;
  /** The value when set, else null. */
  readonly value: ViewNode | null;
}

/** An entry of a {@link MapNode}. */
export interface MapEntryNode {
  /** The key, made JSON-able (see {@link InspectValue}). */
  readonly key: InspectValue;
  /** The event that inserted the key. */
  readonly keyWriter: string | null;
  /** The value stored under the key. */
  readonly value: ViewNode;
}

/** A map: its entries in table order (deterministic, not sorted). */
export interface MapNode {
  /** Tells the node kinds apart. */
  readonly kind: 'map';
  /** The schema type, e.g. `map(string, u32)`. */
  readonly type: string;
  /** How many keys the map holds (all of them, shown or not). */
  readonly size: number;
  /** The event that last inserted or deleted a key (the map's membership). */
  readonly writer: string | null;
  /** The event that last cleared the map, or null. */
  readonly clearedBy: string | null;
  /** The entries shown: at most `maxEntries`. */
  readonly entries: readonly MapEntryNode[];
  /** Entries left out by `maxEntries`. */
  readonly truncated: number;
}

/** A list or an opaque list. */
export interface ListNode {
  /** Tells the node kinds apart: `opaqueList` for an `s.opaqueList(T)`. */
  readonly kind: 'list' | 'opaqueList';
  /** The schema type, e.g. `list(string)`. */
  readonly type: string;
  /** How many items the list holds (all of them, shown or not). */
  readonly length: number;
  /** The event that last changed the length (push, pop); null for opaque lists, which track none. */
  readonly writer: string | null;
  /** The event that last cleared the list, or null. */
  readonly clearedBy: string | null;
  /** The items shown, from the first: at most `maxEntries`. */
  readonly items: readonly ViewNode[];
  /** Items left out by `maxEntries`. */
  readonly truncated: number;
}

/** One node of the tree {@link Database.inspectView} returns. */
export type ViewNode = LeafNode | ObjectNode | OptionalNode | MapNode | ListNode;

// Header words of lists and maps. They mirror the layout documented in composite.ts (list header
// `[block, length, capacity, length tracker, clear tracker, pad]`, opaque list clear tracker at
// word 3); the inspect-view tests pin them by checking the writers reported for pushes and clears.
// Maps export their header layout as MapWord.
const LIST_BLOCK = 0;
const LIST_LENGTH = 1;
const LIST_LENGTH_TRACKER = 3;
const LIST_CLEAR_TRACKER = 4;
const OPAQUE_LIST_CLEAR_TRACKER = 3;

/** Turns a leaf's JS value into something JSON can carry without loss of meaning. */
function toInspectValue(value: unknown): InspectValue {
  if (value === null || value === undefined) return null;
  if (typeof value === 'number') return Number.isFinite(value) ? value : String(value);
  if (typeof value === 'string' || typeof value === 'boolean') return value;
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex');
  return String(value);
}

/**
 * Walks the view and returns its root as a {@link ViewNode} tree. `writerOf` names the event of a
 * tracker's ordinal (it is never called with ordinal 0, which means "no event").
 *
 * Throws `SESSION_NESTED` when called inside another read or apply callback.
 */
export function inspectView<R extends ObjectSchema<unknown>>(
  view: MaterializedView<R>,
  writerOf: (ordinal: Ordinal) => string | null,
  options: InspectOptions = {},
): ObjectNode {
  if (options === null || typeof options !== 'object') {
    throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `inspectView takes options { maxEntries }, got ${options === null ? 'null' : typeof options}`);
  }
  const maxEntries = options.maxEntries ?? DEFAULT_INSPECT_MAX_ENTRIES;
  if (!(Number.isSafeInteger(maxEntries) && maxEntries >= 0)) {
    throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `maxEntries must be a whole number ≥ 0, not ${maxEntries}`);
  }
  const a = view.arena;
  // A read session: the arena refuses to be walked while an apply or another read runs.
  const session = a.begin(null);
  try {
    const walker = new Walker(a, session, writerOf, maxEntries);
    return walker.object(view.root as unknown as ObjectType, a.root);
  } finally {
    a.end();
  }
}

/** The state of one walk: the arena, and the names already given to ordinals. */
class Walker {
  readonly #a: Arena;
  readonly #session: number;
  readonly #writerOf: (ordinal: Ordinal) => string | null;
  readonly #maxEntries: number;
  /** Most ordinals own many data; naming each once keeps the walk linear in the view's size. */
  readonly #names = new Map<number, string | null>();

  constructor(a: Arena, session: number, writerOf: (ordinal: Ordinal) => string | null, maxEntries: number) {
    this.#a = a;
    this.#session = session;
    this.#writerOf = writerOf;
    this.#maxEntries = maxEntries;
  }

  /** The name of the event whose ordinal is in the tracker word `tw`. */
  #writer(tw: WordOffset): string | null {
    const ordinal = this.#a.u32[tw]!;
    if (ordinal === 0) return null;
    let name = this.#names.get(ordinal);
    if (name === undefined) {
      name = this.#writerOf(asOrdinal(ordinal));
      this.#names.set(ordinal, name);
    }
    return name;
  }

  node(type: AnyType, w: WordOffset): ViewNode {
    if (type.leaf) return this.leaf(type, w);
    if (type instanceof ObjectType) return this.object(type, w);
    if (type instanceof OptionalType) return this.optional(type, w);
    if (type instanceof ListType) return this.list(type, w);
    if (type instanceof OpaqueListType) return this.opaqueList(type, w);
    if (type instanceof MapType) return this.map(type, w);
    throw new NoatunError(ErrorCode.INTERNAL, `inspectView does not know the type ${type.description}`);
  }

  /** A value in a container slot: leaves inline, composites behind a pointer. */
  slot(type: AnyType, w: WordOffset): ViewNode {
    return type.leaf ? this.leaf(type, w) : this.node(type, this.#a.u32[w]!);
  }

  leaf(type: LeafType<unknown>, w: WordOffset): LeafNode {
    return {
      kind: 'leaf',
      type: type.description,
      value: toInspectValue(type.peek(this.#a, w)),
      writer: this.#writer(w + type.tracker),
      opaque: type.opaque,
    };
  }

  object(type: ObjectType, w: WordOffset): ObjectNode {
    return { kind: 'object', fields: type.fields.map((field) => ({ name: field.name, node: this.node(field.type, w + field.offset) })) };
  }

  optional(type: OptionalType, w: WordOffset): OptionalNode {
    const present = this.#a.u32[w] !== 0;
    return {
      kind: 'optional',
      type: type.description,
      present,
      writer: this.#writer(w + 1),
      value: present ? this.node(type.inner, w + type.offset) : null,
    };
  }

  list(type: ListType, w: WordOffset): ListNode {
    const { items, length, truncated } = this.#items(type.element, type.elementWords, w);
    return {
      kind: 'list',
      type: type.description,
      length,
      writer: this.#writer(w + LIST_LENGTH_TRACKER),
      clearedBy: this.#writer(w + LIST_CLEAR_TRACKER),
      items,
      truncated,
    };
  }

  opaqueList(type: OpaqueListType, w: WordOffset): ListNode {
    const { items, length, truncated } = this.#items(type.element, type.elementWords, w);
    return {
      kind: 'opaqueList',
      type: type.description,
      length,
      writer: null,
      clearedBy: this.#writer(w + OPAQUE_LIST_CLEAR_TRACKER),
      items,
      truncated,
    };
  }

  #items(element: AnyType, elementWords: number, w: WordOffset): { items: ViewNode[]; length: number; truncated: number } {
    const u32 = this.#a.u32;
    const length = u32[w + LIST_LENGTH]!;
    const shown = Math.min(length, this.#maxEntries);
    const block = u32[w + LIST_BLOCK]!;
    const items: ViewNode[] = [];
    for (let i = 0; i < shown; i++) items.push(this.slot(element, block + i * elementWords));
    return { items, length, truncated: length - shown };
  }

  map(type: MapType, w: WordOffset): MapNode {
    const a = this.#a;
    const size = a.u32[w + MapWord.COUNT]!;
    const entries: MapEntryNode[] = [];
    const cursor = type.cursor(a, w, this.#session);
    for (let entry = cursor.next(); entry !== -1; entry = cursor.next()) {
      if (entries.length === this.#maxEntries) break;
      const keyAt = entry + type.keyOffset;
      entries.push({
        key: toInspectValue(type.key.peek(a, keyAt)),
        keyWriter: this.#writer(keyAt + type.key.tracker),
        value: this.slot(type.value, entry + type.valueOffset),
      });
    }
    return {
      kind: 'map',
      type: type.description,
      size,
      writer: this.#writer(w + MapWord.MEMBERSHIP),
      clearedBy: this.#writer(w + MapWord.CLEAR_TRACKER),
      entries,
      truncated: size - entries.length,
    };
  }
}
