/**
 * Errors raised by Noatun. Every error is a {@link NoatunError} with a stable `code` string that
 * callers and tests match on; subclasses carry the data of their condition.
 *
 * This module sits below every layer (view, core, net) so that all of them throw the same family.
 */

/** The stable codes of every error Noatun raises. Retired codes are never reused. */
export const ErrorCode = {
  /** A file's header is damaged, foreign, or of an unknown format version. */
  CORRUPT_FILE: 'CORRUPT_FILE',
  /** A stored view or log was made for a different schema. */
  SCHEMA_MISMATCH: 'SCHEMA_MISMATCH',
  /** A schema definition is malformed (reserved field names, bad key types, ...). */
  SCHEMA_INVALID: 'SCHEMA_INVALID',
  /** An opaque datum was read inside `apply`, where it would be an untracked dependency. */
  OPAQUE_READ_IN_APPLY: 'OPAQUE_READ_IN_APPLY',
  /** An accessor was used after the callback that produced it returned. */
  VIEW_ACCESS_OUTSIDE_SESSION: 'VIEW_ACCESS_OUTSIDE_SESSION',
  /** A write was attempted in a read-only session (`db.read`, `preview`'s query). */
  VIEW_READ_ONLY: 'VIEW_READ_ONLY',
  /** A value does not fit the schema type it is assigned to. */
  VALUE_INVALID: 'VALUE_INVALID',
  /** An assignment to a property that the object's schema does not have (a misspelt field?). */
  UNKNOWN_FIELD: 'UNKNOWN_FIELD',
  /** A list index outside `[0, length)`. */
  INDEX_OUT_OF_RANGE: 'INDEX_OUT_OF_RANGE',
  /** The view would grow past its reserved address space (`maxViewBytes`). */
  VIEW_FULL: 'VIEW_FULL',
  /** A system call failed (open, ftruncate, mmap, msync, ...). */
  SYSTEM_CALL_FAILED: 'SYSTEM_CALL_FAILED',
  /** The native addon (memory maps, checksums) has no build for this platform, or its build does not load. */
  NATIVE_ADDON_UNAVAILABLE: 'NATIVE_ADDON_UNAVAILABLE',
  /** A session was opened while another one is running (sessions do not nest). */
  SESSION_NESTED: 'SESSION_NESTED',
  /** The object was used after `close()`. */
  CLOSED: 'CLOSED',
  /** Bytes from disk or the wire do not decode (bad length, version, checksum, ...). */
  BAD_FRAME: 'BAD_FRAME',
  /** An envelope's id does not match its content hash. */
  FORGED_ID: 'FORGED_ID',
  /** A peer went over a limit of the replication protocol (sessions, rounds, ids asked, rate). */
  LIMIT_EXCEEDED: 'LIMIT_EXCEEDED',
  /** A replication session waited too long for its peer, or ran past its deadline. */
  TIMEOUT: 'TIMEOUT',
  /** An argument is malformed (bad id string, bad option, ...). */
  INVALID_ARGUMENT: 'INVALID_ARGUMENT',
  /**
   * This Node.js is older than the package supports (22.12, `engines` in package.json): a database
   * is not opened on it rather than risk its files.
   */
  RUNTIME_UNSUPPORTED: 'RUNTIME_UNSUPPORTED',
  /** The database directory is locked by another process or another open Database. */
  DATABASE_LOCKED: 'DATABASE_LOCKED',
  /** A key file (private swarm key, node identity) is malformed. */
  KEY_INVALID: 'KEY_INVALID',
  /** A listen address is already taken by another process. */
  ADDRESS_IN_USE: 'ADDRESS_IN_USE',
  /** A file or directory that must exist does not (a database to inspect, an app module, a key file). */
  NOT_FOUND: 'NOT_FOUND',
  /** A module given as an app does not export one made by `defineApp`. */
  APP_INVALID: 'APP_INVALID',
  /**
   * The application's own `apply` threw for an event appended here (`append`, `transaction`), or
   * ran out of call stack; the event was not stored. The cause is attached.
   */
  APPLY_FAILED: 'APPLY_FAILED',
  /**
   * An event holds a value the codec cannot encode or would change (a function, a Map, a class
   * instance, a cycle, …): the message names where. See the README for what round-trips.
   */
  PAYLOAD_INVALID: 'PAYLOAD_INVALID',
  /**
   * With `checkDeterminism`, applying the same events twice gave different views: `apply` used
   * something besides the event, the view and `ctx` (`Date.now()`, `Math.random()`, outer state).
   */
  NON_DETERMINISTIC_APPLY: 'NON_DETERMINISTIC_APPLY',
  /** An event is larger than an envelope may be (`append`): no peer could store or send it. */
  EVENT_TOO_LARGE: 'EVENT_TOO_LARGE',
  /**
   * Applying events ran out of call stack or memory on this machine: not the event's fault (it is
   * never recorded as its failure, which would differ between peers); nothing of the batch was
   * stored.
   */
  RESOURCE_EXHAUSTED: 'RESOURCE_EXHAUSTED',
  /**
   * The file system has no room left for a write (no space, or a quota reached). A batch whose
   * projection met it was undone and not stored: free space and write again. A commit of the event
   * log that met it leaves the database refusing work until it is reopened (once there is space):
   * every acknowledged write is kept, and the batches not acknowledged were not stored.
   */
  DISK_FULL: 'DISK_FULL',
  /** An internal invariant does not hold: a bug in Noatun. */
  INTERNAL: 'INTERNAL',
} as const;

/** One of the values of {@link ErrorCode}. */
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** The base class of every error Noatun throws. Match on {@link NoatunError.code}. */
export class NoatunError extends Error {
  /** The stable machine-readable code of this condition. */
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A file is damaged, foreign or of an unknown format. */
export class CorruptFileError extends NoatunError {
  /** The file that was refused. */
  readonly path: string;
  /** The byte offset where the damage was seen, when known. */
  readonly offset: number | undefined;

  constructor(path: string, reason: string, offset?: number) {
    super(ErrorCode.CORRUPT_FILE, `${path}: ${reason}${offset === undefined ? '' : ` (at byte ${offset})`}`);
    this.path = path;
    this.offset = offset;
  }
}

/** A stored file was made for another schema than the one given now. */
export class SchemaMismatchError extends NoatunError {
  /** The file that was made for another schema. */
  readonly path: string;
  /** The hash of the schema given now. */
  readonly expected: string;
  /** The hash of the schema the file was made for. */
  readonly found: string;

  constructor(path: string, expected: string, found: string) {
    super(ErrorCode.SCHEMA_MISMATCH, `${path}: made for schema ${found}, opened with schema ${expected}`);
    this.path = path;
    this.expected = expected;
    this.found = found;
  }
}

/** A system call failed; carries the call's name and the errno. */
export class SystemCallError extends NoatunError {
  /** The call that failed: `open`, `ftruncate`, `mmap`, `msync`, `pread`, ... */
  readonly syscall: string;
  /** The positive errno it failed with (0 when unknown). */
  readonly errno: number;
  /** The file it was made on, when there is one. */
  readonly path: string | undefined;

  constructor(syscall: string, errno: number, detail: string, path?: string, options?: ErrorOptions) {
    super(
      ErrorCode.SYSTEM_CALL_FAILED,
      `${syscall} failed${path === undefined ? '' : ` on ${path}`}: ${detail} (errno ${errno})`,
      options,
    );
    this.syscall = syscall;
    this.errno = errno;
    this.path = path;
  }
}

/** errno values of a full file system: ENOSPC, and EDQUOT (a quota reached). */
const NO_SPACE_ERRNOS = new Set([28, 122]);

/** Whether a system call's errno says the file system has no room left. */
export function isNoSpaceErrno(errno: number): boolean {
  return NO_SPACE_ERRNOS.has(errno);
}

/**
 * `error` (a Node system error: `code` 'ENOSPC' or 'EDQUOT', or such an errno) as a
 * {@link DiskFullError} about `path`; undefined when it is not about a full file system.
 */
export function diskFullFrom(error: unknown, path: string): DiskFullError | undefined {
  const e = error as { code?: unknown; errno?: unknown; message?: unknown } | null;
  const full =
    e?.code === 'ENOSPC' || e?.code === 'EDQUOT' || (typeof e?.errno === 'number' && isNoSpaceErrno(Math.abs(e.errno)));
  return full ? new DiskFullError(path, String(e?.message ?? error), { cause: error }) : undefined;
}

/**
 * A failed system call on `path` (a Node `fs` error, or the native addon's) as this library's:
 * {@link DiskFullError} for a full file system, else a {@link SystemCallError} with its errno
 * (EMFILE when no file descriptor is left, say).
 */
export function systemErrorFrom(error: unknown, syscall: string, path: string): NoatunError {
  const e = error as { errno?: number; code?: string; syscall?: string; message?: string };
  const errno = typeof e.errno === 'number' ? Math.abs(e.errno) : 0;
  if (isNoSpaceErrno(errno)) {
    return new DiskFullError(path, `${e.syscall ?? syscall} failed (errno ${errno})`, { cause: error });
  }
  return new SystemCallError(e.syscall ?? syscall, errno, e.code ?? e.message ?? 'unknown error', path, { cause: error });
}

/** A write found no room on the file system ({@link ErrorCode.DISK_FULL}). */
export class DiskFullError extends NoatunError {
  /** The file that could not grow or be written. */
  readonly path: string;

  constructor(path: string, detail: string, options?: ErrorOptions) {
    super(ErrorCode.DISK_FULL, `no space left on the file system of ${path}: ${detail}`, options);
    this.path = path;
  }
}

/**
 * A value that does not fit its schema type. The message starts with where it was going, relative
 * to the accessor it was assigned through (`employees.set('Andersen', …)` with a salary of -1:
 * `["Andersen"].salary: -1 is not a valid u32`).
 */
export class ValueError extends NoatunError {
  /** What is wrong with the value. */
  readonly reason: string;
  /** Where it was going: field names, `[index]` and `["key"]` steps (empty at the leaf itself). */
  readonly path: string;

  constructor(reason: string, path = '') {
    super(ErrorCode.VALUE_INVALID, path === '' ? reason : `${path}: ${reason}`);
    this.reason = reason;
    this.path = path;
  }

  /**
   * `error` with one more step in front of its path: a field name, or an `[index]` or `["key"]`
   * step. Other errors are returned as they are.
   */
  static within(error: unknown, step: string): unknown {
    if (!(error instanceof ValueError)) return error;
    const path = error.path === '' ? step : error.path.startsWith('[') ? `${step}${error.path}` : `${step}.${error.path}`;
    return new ValueError(error.reason, path);
  }
}

/** Throws an {@link ErrorCode.INTERNAL} error when an invariant does not hold. */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new NoatunError(ErrorCode.INTERNAL, `invariant violated: ${message}`);
}

/** The oldest Node.js a database opens on (`engines` in package.json). */
export const MIN_NODE_VERSION = '22.12.0';

/**
 * Throws `RUNTIME_UNSUPPORTED` when `version` (a Node.js version, `process.versions.node` by
 * default) is older than {@link MIN_NODE_VERSION}. npm only warns about `engines`, and the
 * package is neither built nor tested on older lines.
 */
export function assertSupportedNode(version: string = process.versions.node): void {
  const [major = 0, minor = 0] = version.split('.').map((part) => Number.parseInt(part, 10));
  const [minMajor = 0, minMinor = 0] = MIN_NODE_VERSION.split('.').map(Number);
  if (major > minMajor || (major === minMajor && minor >= minMinor)) return;
  throw new NoatunError(
    ErrorCode.RUNTIME_UNSUPPORTED,
    `Noatun needs Node.js ${MIN_NODE_VERSION} or later; this is Node.js ${version}`,
  );
}

/** Characters of a string that an error message quotes, at most (see {@link quote}). */
export const QUOTED_CHARACTERS = 120;

/**
 * `text` as an error message quotes it: in JSON quotes, its first {@link QUOTED_CHARACTERS}
 * characters only when it is longer, with its length. A mistaken argument can be megabytes (a
 * file's contents passed for its name), and a message that repeats it all buries the mistake.
 */
export function quote(text: string): string {
  if (text.length <= QUOTED_CHARACTERS) return JSON.stringify(text);
  return `${JSON.stringify(text.slice(0, QUOTED_CHARACTERS))}… (${text.length} characters)`;
}

/**
 * Refuses an options object that has a key `known` lacks (`INVALID_ARGUMENT`, naming the key and
 * the known one it is closest to, when one is a letter or two away): a misspelt option would
 * otherwise be ignored without a word. `what` names the call (`Database.open`).
 */
export function refuseUnknownOptions(options: object, known: Readonly<Record<string, unknown>>, what: string): void {
  for (const name of Object.keys(options)) {
    if (Object.hasOwn(known, name)) continue;
    let meant: string | undefined;
    let best = 3;
    for (const candidate of Object.keys(known)) {
      const distance = editDistance(name.toLowerCase(), candidate.toLowerCase());
      if (distance < best) {
        best = distance;
        meant = candidate;
      }
    }
    throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `${what} has no option ${quote(name)}${meant === undefined ? '' : ` (did you mean ${meant}?)`}`);
  }
}

/** Levenshtein distance: the fewest one-letter insertions, deletions and changes from `a` to `b`. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(previous[j]! + 1, row[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = row;
  }
  return previous[b.length]!;
}
