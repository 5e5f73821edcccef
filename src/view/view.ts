/**
 * The materialized view: a root object of a schema in a memory-mapped arena (`view.bin`) with an
 * undo journal (`journal.bin`), both in one directory.
 *
 * Queries run in read sessions (`read`), apply runs in write sessions with a tracking context
 * (`write`). The caller (the engine) marks event boundaries in the journal and rewinds to them.
 */
import * as path from 'node:path';
import { ErrorCode, NoatunError } from '../errors.js';
import { makeDirectoriesOrRefuse } from '../directories.js';
import { Arena, HeaderFlag, stuckSessions } from './arena.js';
import { ENTER, type ObjectType, ObjectType as ObjectTypeClass, type ReusableAccessor } from './composite.js';
import { DEFAULT_MAX_JOURNAL_BYTES, DEFAULT_MAX_VIEW_BYTES, MAX_ADDRESSABLE_VIEW_BYTES } from './constants.js';
import { type JournalMark, UndoJournal } from './journal.js';
import { type Infer, type ObjectSchema, schemaHash, type View as ViewOf } from './schema.js';
import type { TrackingContext } from './tracking.js';

/** Options of {@link MaterializedView.open}. */
export interface ViewOptions<R> {
  /** Directory holding `view.bin` and `journal.bin`; created if missing. */
  readonly directory: string;
  /** The root object's schema. */
  readonly root: R;
  /**
   * The version of the `apply` that makes the view (see `DatabaseOptions.applyVersion`): part of
   * the schema hash, so a view made by another version is a `SCHEMA_MISMATCH`.
   */
  readonly applyVersion?: string;
  /**
   * Address space reserved for the view file; it can never grow past this.
   * @default 8 GiB (at most 16 GiB)
   */
  readonly maxViewBytes?: number;
  /**
   * Address space reserved for the undo journal.
   * @default 8 GiB
   */
  readonly maxJournalBytes?: number;
}

/** Sizes reported by {@link MaterializedView.stats}. */
export interface ViewStats {
  /** Bytes of the view in use (header and allocated blocks). */
  readonly viewBytes: number;
  /** Bytes of the view file. */
  readonly viewFileBytes: number;
  /** Bytes of undo history kept. */
  readonly journalBytes: number;
}

/**
 * Refuses a root that is not an object schema (`SCHEMA_INVALID`) and a `maxViewBytes` out of range
 * (`INVALID_ARGUMENT`), before anything is made on disk; returns the schema's hash.
 */
export function checkViewOptions(options: Pick<ViewOptions<ObjectSchema<unknown>>, 'root' | 'applyVersion' | 'maxViewBytes'>): Uint8Array {
  const rootType = options.root as unknown as ObjectType;
  if (rootType === null || typeof rootType !== 'object' || rootType.kind !== 'object') {
    throw new NoatunError(ErrorCode.SCHEMA_INVALID, 'the root of a view must be an s.object({...}) schema');
  }
  const maxViewBytes = options.maxViewBytes ?? DEFAULT_MAX_VIEW_BYTES;
  if (!(maxViewBytes > 0 && maxViewBytes <= MAX_ADDRESSABLE_VIEW_BYTES)) {
    throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `maxViewBytes must be in (0, ${MAX_ADDRESSABLE_VIEW_BYTES}]`);
  }
  return schemaHash(options.root, options.applyVersion);
}

/** A typed view over a memory-mapped arena. */
export class MaterializedView<R extends ObjectSchema<unknown>> {
  /** The arena: exposed for the engine's bookkeeping (use counts live in the same memory). */
  readonly arena: Arena;
  readonly root: R;
  /** Hex of the schema hash stored in the file header. */
  readonly schemaHash: string;
  readonly directory: string;
  #rootType: ObjectType;
  /**
   * The root's accessor for apply, made once and moved into each session (`#enter`), with the
   * accessors of what is inline in it: a query's fixed cost is mostly its session, and making
   * these anew was most of it. Reusing them loosens nothing that matters: outside a session they
   * throw as any accessor does, and inside one they read the view as it is, as new ones would.
   */
  #root: ReusableAccessor;
  /** The root's accessor for read sessions (ObjectType.RootAccessor), reused the same way. */
  #readRoot: ReusableAccessor;

  private constructor(arena: Arena, root: R, hash: Uint8Array, directory: string) {
    this.arena = arena;
    this.root = root;
    this.#rootType = root as unknown as ObjectType;
    const roots = makeRoots(this.#rootType, arena);
    this.#root = roots.write;
    this.#readRoot = roots.read;
    stuckSessions.set(arena, () => this.#unstick());
    this.schemaHash = Buffer.from(hash).toString('hex');
    this.directory = directory;
  }

  /**
   * Opens (or creates) the view in `options.directory`. Throws `CORRUPT_FILE` for a damaged or
   * foreign file and `SCHEMA_MISMATCH` for a view made with another schema.
   */
  static open<R extends ObjectSchema<unknown>>(options: ViewOptions<R>): MaterializedView<R> {
    const hash = checkViewOptions(options);
    const rootType = options.root as unknown as ObjectType;
    const maxViewBytes = options.maxViewBytes ?? DEFAULT_MAX_VIEW_BYTES;
    makeViewDirectory(options.directory);
    const journal = new UndoJournal(
      path.join(options.directory, 'journal.bin'),
      options.maxJournalBytes ?? DEFAULT_MAX_JOURNAL_BYTES,
    );
    let arena: Arena;
    try {
      arena = Arena.open({
        path: path.join(options.directory, 'view.bin'),
        reserveBytes: maxViewBytes,
        schemaHash: hash,
        rootWords: rootType.words,
        journal,
      });
    } catch (error) {
      journal.close();
      throw error;
    }
    if (arena.created) journal.clear();
    return new MaterializedView(arena, options.root, hash, options.directory);
  }

  /**
   * Runs a read-only query. The root accessor (and everything reached from it) is valid only
   * until `fn` returns; keep plain values (`export()`), not accessors.
   */
  read<T>(fn: (root: ViewOf<R>) => T): T {
    // The arena's begin() and end() written out for a session without a tracking context (its
    // `ctx` is null outside sessions already): every query pays for this function, and V8
    // inlines it and the query into the caller only while their bytecode fits its budget.
    const a = this.arena;
    if (a.active || a.closed) a.refuseSession();
    a.active = true;
    const root = this.#readRoot;
    // (When this throws, the session stays open: see #unstick. Not mended here: a try/catch in
    // this function, or this line after the one above, costs a query 10%, as V8 then inlines less.)
    root[ENTER](++a.session);
    try {
      return fn(root as ViewOf<R>);
    } finally {
      a.active = false;
      a.session++;
    }
  }

  /**
   * Runs `fn` with write access; every read and write is reported to `ctx`. Journal marks are
   * the caller's: call {@link mark} before an event to be able to undo it.
   */
  write<T>(ctx: TrackingContext, fn: (root: ViewOf<R>) => T): T {
    const a = this.arena;
    const session = a.begin(ctx);
    try {
      return fn(this.#enter(session));
    } finally {
      a.end();
    }
  }

  /**
   * {@link write} for a function of the root and two arguments, so a caller applying many events
   * need not make a closure per event.
   */
  writeWith<A, B, T>(ctx: TrackingContext, fn: (a: A, root: ViewOf<R>, b: B) => T, a: A, b: B): T {
    const arena = this.arena;
    const session = arena.begin(ctx);
    try {
      return fn(a, this.#enter(session), b);
    } finally {
      arena.end();
    }
  }

  /** The root accessor, moved into session `session`. */
  #enter(session: number): ViewOf<R> {
    const root = this.#root;
    try {
      root[ENTER](session);
    } catch {
      return this.#remakeRoots(session);
    }
    return root as ViewOf<R>;
  }

  /**
   * Called when a session is asked for while one is open: whether that one is stuck, and no
   * longer open. A read whose root could not be moved into its session (an app froze it, or a map
   * inline in it, in an earlier read) threw before its session could close, and every later read
   * and write was refused. Then the roots are made afresh and the session closed.
   */
  #unstick(): boolean {
    try {
      this.#readRoot[ENTER](this.arena.session);
      return false;
    } catch {
      this.#remakeRoots(this.arena.session);
      this.arena.active = false;
      this.arena.session++;
      return true;
    }
  }

  /**
   * Makes the reused root accessors afresh, for when moving them into a session failed: an apply
   * froze one of them (`Object.freeze(root)`, or a map inline in it), and every later apply would
   * have failed where a rebuild, with new accessors, does not. Returns the new root, moved into
   * `session`.
   */
  #remakeRoots(session: number): ViewOf<R> {
    const roots = makeRoots(this.#rootType, this.arena);
    this.#root = roots.write;
    this.#readRoot = roots.read;
    this.#root[ENTER](session);
    return this.#root as ViewOf<R>;
  }

  /** The whole view as a plain value. */
  export(): Infer<R> {
    return this.read((root) => (root as { export(): Infer<R> }).export());
  }

  /** Marks the start of event `ordinal` in the undo journal (see {@link Arena.mark}). */
  mark(ordinal: number): JournalMark {
    return this.arena.mark(ordinal);
  }

  /** Undoes everything after `mark`. */
  rewindTo(mark: JournalMark): void {
    this.arena.rewindTo(mark);
  }

  /** Drops undo history before `mark`. */
  truncateBefore(mark: JournalMark): void {
    this.arena.truncateBefore(mark);
  }

  /** The ordinal of the last event the view reflects (maintained by the engine). */
  get lastApplied(): number {
    return this.arena.lastApplied;
  }

  set lastApplied(ordinal: number) {
    this.arena.lastApplied = ordinal;
  }

  /** True while the engine has marked the view as possibly not matching {@link lastApplied}. */
  get dirty(): boolean {
    return (this.arena.flags & HeaderFlag.DIRTY) !== 0;
  }

  set dirty(value: boolean) {
    this.arena.flags = value ? this.arena.flags | HeaderFlag.DIRTY : this.arena.flags & ~HeaderFlag.DIRTY;
  }

  /** Sizes of the view and its undo history. */
  stats(): ViewStats {
    return {
      viewBytes: this.arena.usedBytes,
      viewFileBytes: this.arena.file.byteLength,
      journalBytes: this.arena.journal.byteLength,
    };
  }

  /**
   * Records checksums of the view and of the undo history, so damage done to the files while the
   * view is closed is detected ({@link verify}, {@link verifyHistory}). Call when clean.
   */
  seal(): void {
    this.arena.seal();
    this.arena.journal.seal();
  }

  /** True when the view's contents match the checksum of the last {@link seal}. */
  verify(): boolean {
    return this.arena.verify();
  }

  /** True when the undo history matches the checksum of the last {@link seal}. */
  verifyHistory(): boolean {
    return this.arena.journal.verify();
  }

  /** Forgets all undo history: the view can no longer be rewound (a late event rebuilds it). */
  forgetHistory(): void {
    this.arena.truncateBefore(this.arena.position);
  }

  /** Flushes view and journal to disk. */
  sync(): void {
    this.arena.journal.sync();
    this.arena.sync();
  }

  /** Unmaps both files; accessors made earlier throw afterwards. Idempotent. */
  close(): void {
    this.arena.close();
    this.arena.journal.close();
  }
}

/**
 * The reused root accessors of a view (see `MaterializedView`'s #root): the one for apply and the
 * one for read sessions, with the accessors of everything inline in them made, kept and sealed
 * ({@link sealKept}), and closed to new properties themselves. Made in session 0, which never runs (sessions count from 2), so they are
 * unusable until entered.
 */
function makeRoots(type: ObjectType, arena: Arena): { write: ReusableAccessor; read: ReusableAccessor } {
  const write = new type.Accessor(arena, 0, arena.root) as ReusableAccessor;
  const read = new type.RootAccessor(arena, 0, arena.root) as ReusableAccessor & { $keep(): void };
  read.$keep();
  sealKept(write, type);
  sealKept(read, type);
  // The roots themselves too: a property an apply defined on the root (`Object.defineProperty(root,
  // 'n', …)`, which no setter sees) shadowed a field for the events after it, until a reopen.
  Object.preventExtensions(write);
  Object.preventExtensions(read);
  return { write, read };
}

/**
 * Makes the accessors kept in `root` (an object accessor of `type`), the containers and objects
 * inline in it at any depth, and closes each to new properties (`Object.preventExtensions`).
 * They are reused from one session to the next: a property an apply set on one (`root.map.seen =
 * true`) stayed for the next event, which could then do what a rebuild of the same events, with
 * new accessors, would not. Now such an assignment throws (a TypeError). Object accessors refuse
 * unknown fields with `UNKNOWN_FIELD` already; containers are not guarded the same way because a
 * guard in their prototype chain slowed every query by a tenth.
 */
function sealKept(root: object, type: ObjectType): void {
  for (const field of type.fields) {
    if (field.type.leaf || field.type.kind === 'optional') continue;
    // (A write root makes a child at its first access, and keeps it: this is that access.)
    const child = (root as Record<string, object>)[field.name]!;
    if (field.type instanceof ObjectTypeClass) sealKept(child, field.type);
    Object.preventExtensions(child);
  }
}

/**
 * Makes the view's directory: `CORRUPT_FILE` when something that is not a directory stands in its
 * place (the view is derived from the log: removing it is safe), the system's error as a
 * `NoatunError` otherwise (no permission, say), where a plain Node error came out of the open.
 */
function makeViewDirectory(directory: string): void {
  makeDirectoriesOrRefuse(
    directory,
    (error) =>
      new NoatunError(ErrorCode.CORRUPT_FILE, `the view's place ${directory} is not a directory: remove it (the view is made again from the event log)`, {
        cause: error,
      }),
  );
}
