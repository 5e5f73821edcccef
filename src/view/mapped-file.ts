/**
 * A file mapped shared and read-write into this process, with address space reserved beyond its
 * end so that it can grow in place without remapping. Used for the view arena and the undo
 * journal.
 *
 * Safety rules: touching a mapped page past the end of the file kills the process (SIGBUS). So the
 * mapping's ArrayBuffer spans the file only ({@link MappedFile.byteLength}); {@link MappedFile.grow}
 * replaces it with a longer one over the same addresses, and callers re-create their typed arrays
 * from {@link MappedFile.buffer} after it. Writing a page that has no block on disk makes the
 * kernel find one at that moment, and on a full file system it can only answer with SIGBUS too:
 * so a new file is given its blocks at once, and a caller writes only where it gave the file its
 * blocks first ({@link MappedFile.allocate}: there a full disk is a {@link DiskFullError}): past
 * what it allocated so far as the file grows, and where it gave pages back
 * ({@link MappedFile.discard}).
 */
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { DiskFullError, ErrorCode, NoatunError, systemErrorFrom } from '../errors.js';
import { PAGE_BYTES } from './constants.js';

/** The functions the addon exports (see native/mmap.c). */
export interface NativeMmap {
  map(fd: number, reserve: number, length: number, writable: boolean): ArrayBuffer;
  extend(buffer: ArrayBuffer, length: number): ArrayBuffer;
  unmap(buffer: ArrayBuffer): void;
  sync(buffer: ArrayBuffer, offset: number, length: number): void;
  advise(buffer: ArrayBuffer, advice: number): void;
  discard(buffer: ArrayBuffer, from: number, to: number): boolean;
  allocate(fd: number, offset: number, length: number): void;
  /** Absent from a build of an older source: pages then fault in when first written, as before. */
  prefault?(buffer: ArrayBuffer, from: number, to: number): boolean;
  /** Absent from a build of an older source (a stale `build/`): callers fall back to JavaScript. */
  verifyIds?(all: Uint8Array, table: Uint32Array, count: number): number;
  /** Absent from a build of an older source: callers fall back to `node:crypto`. */
  idHash?(input: Uint8Array, length: number): void;
  /** Absent where Node exports no zstd, or from a build of an older source: callers use `node:zlib`. */
  zstdCompress?(input: Uint8Array, output: Uint8Array, at: number): number;
  checksum(view: ArrayBufferView): Buffer;
  checksumFile(fd: number, offset: number, length: number): Buffer;
  /** An exclusive `flock` of the open file, without waiting: false when another holds it. */
  lock(fd: number): boolean;
}

/** What `node-gyp-build` exports: finds the addon for this platform and loads it. */
type AddonLoader = (packageRoot: string) => unknown;

/** The package's root: `src/view/` and `dist/view/` both sit two levels below it. */
const PACKAGE_ROOT = fileURLToPath(new URL('../..', import.meta.url));

let native: NativeMmap | undefined;

/**
 * Loads the native addon (native/mmap.c) of the package rooted at `packageRoot`: a local build
 * (`build/Release`, made by `npm run build:native` or by the install script when no prebuilt
 * binary fits) wins over the prebuilt one shipped in `prebuilds/<platform>-<arch>/`, so a changed
 * C source takes effect as soon as it is rebuilt.
 *
 * Throws `NATIVE_ADDON_UNAVAILABLE` when neither exists or the one found does not load (another
 * C library, a damaged file), with the loader's error as the cause. Exported for the test of that
 * error; the package's own code calls it once, for its own root.
 */
export function loadAddon(packageRoot: string): NativeMmap {
  const require = createRequire(import.meta.url);
  let addon: NativeMmap;
  try {
    const load = require('node-gyp-build') as AddonLoader;
    addon = load(packageRoot) as NativeMmap;
  } catch (cause) {
    throw new NoatunError(
      ErrorCode.NATIVE_ADDON_UNAVAILABLE,
      `Noatun's native addon (memory maps) could not be loaded on ${process.platform}-${process.arch}: ` +
        `${(cause as Error)?.message?.split('\n')[0] ?? String(cause)}. A prebuilt binary ships for linux-x64 with ` +
        'glibc; anywhere else the addon is built from source when the package installs, which needs a C compiler, ' +
        'make and Python: install them, then run `npm rebuild noatun`',
      { cause },
    );
  }
  return assertComplete(addon);
}

/** What the addon must export (`verifyIds` may be missing: its callers fall back to JavaScript). */
const REQUIRED_FUNCTIONS = ['map', 'extend', 'unmap', 'sync', 'advise', 'discard', 'allocate', 'checksum', 'checksumFile', 'lock'] as const;

/**
 * `addon` if it exports every function this source calls; else `NATIVE_ADDON_UNAVAILABLE`, naming
 * what is missing. A local build of an older source wins over a newer prebuilt binary (see
 * {@link loadAddon}) and lacks what came since: without this check the first call of it would
 * fail deep inside a write.
 */
export function assertComplete(addon: NativeMmap): NativeMmap {
  const missing = REQUIRED_FUNCTIONS.filter((name) => typeof addon[name] !== 'function');
  if (missing.length !== 0) {
    throw new NoatunError(
      ErrorCode.NATIVE_ADDON_UNAVAILABLE,
      `Noatun's native addon was built from an older source (it has no ${missing.join(', ')}): rebuild it with ` +
        '`npm run build:native` in a checkout, or `npm rebuild noatun` where the package is installed',
    );
  }
  return addon;
}

function loadNative(): NativeMmap {
  native ??= loadAddon(PACKAGE_ROOT);
  return native;
}

/**
 * Takes an exclusive advisory lock (`flock`) on the open file `fd` without waiting: true when
 * taken, false when another open file holds it. Closing `fd` (or the process ending) releases it.
 * A failing call throws `SYSTEM_CALL_FAILED` for `file`.
 */
export function lockFile(fd: number, file: string): boolean {
  try {
    return loadNative().lock(fd);
  } catch (error) {
    if (error instanceof NoatunError) throw error;
    throw systemErrorFrom(error, 'flock', file);
  }
}

/**
 * Checks the ids of `count` envelopes lying in `all` in one native call (see `verifyIds` in
 * native/mmap.c): row i of `table` holds where envelope i starts in `all`, where its payload starts
 * and the payload's length. Returns the index of the first envelope whose id is not its content's
 * hash, -1 when all are right, or undefined where the addon cannot (the caller checks each in JS).
 */
export function verifyIds(all: Uint8Array, table: Uint32Array, count: number): number | undefined {
  const addon = loadNative();
  return addon.verifyIds === undefined ? undefined : addon.verifyIds(all, table, count);
}

/**
 * The addon's `idHash(input, length)` (see native/mmap.c: SHA-256 over the first `length` bytes of
 * `input`, whose first 8 bytes it overwrites with the digest's first 8), or undefined where the
 * addon has none or cannot be loaded (the caller hashes with `node:crypto`).
 */
export function nativeIdHash(): ((input: Uint8Array, length: number) => void) | undefined {
  // (A Node-API function does not use `this`: it can be called unbound.)
  return addonIfLoaded()?.idHash;
}

/**
 * The addon's `zstdCompress(input, output, at)` (see native/mmap.c: compresses `input` with zstd
 * at level 1, with its checksum, into `output` from `at`; returns the compressed length, or -1 when
 * it does not fit), or undefined where the addon has none or cannot be loaded (the caller uses
 * `node:zlib`).
 */
export function nativeZstdCompress(): ((input: Uint8Array, output: Uint8Array, at: number) => number) | undefined {
  return addonIfLoaded()?.zstdCompress;
}

/** The addon, or undefined where it cannot be loaded (for the functions callers can do without). */
function addonIfLoaded(): NativeMmap | undefined {
  try {
    return loadNative();
  } catch {
    return undefined;
  }
}

/**
 * A 128-bit checksum (16 bytes) of a typed array's bytes, computed natively at memory speed (see
 * native/mmap.c). For detecting accidental damage to the files, not for security: any change
 * within one 8-byte word is always detected, larger damage with probability 1 - 2^-64 or better.
 */
export function checksum(view: ArrayBufferView): Buffer {
  return loadNative().checksum(view);
}

/**
 * {@link checksum} of `length` bytes of the file at `path` from `offset`, read with `pread`
 * rather than through a mapping: verifying a freshly opened view this way does not fill in a
 * page-table entry for every page of it, which cost far more than the hashing itself. Throws
 * `SYSTEM_CALL_FAILED` when the file cannot be read or is shorter than the range.
 */
export function checksumFile(path: string, offset: number, length: number): Buffer {
  let fd: number;
  try {
    fd = fs.openSync(path, 'r');
  } catch (error) {
    throw systemErrorFrom(error, 'open', path);
  }
  try {
    return loadNative().checksumFile(fd, offset, length);
  } catch (error) {
    throw systemErrorFrom(error, 'pread', path);
  } finally {
    fs.closeSync(fd);
  }
}

/** `madvise` advice values (Linux). */
export const Advice = {
  NORMAL: 0,
  RANDOM: 1,
  SEQUENTIAL: 2,
  WILLNEED: 3,
} as const;

/** Options of {@link MappedFile.open}. */
export interface MappedFileOptions {
  /** Bytes of address space to reserve; the file can never grow past this. */
  readonly reserveBytes: number;
  /** Length of a newly created file (rounded up to a page). */
  readonly initialBytes: number;
  /**
   * The option that sets `reserveBytes`, named in errors about it.
   * @default 'maxViewBytes'
   */
  readonly limitOption?: string;
}

/** A shared read-write memory map of one file. */
export class MappedFile {
  /** The path the file was opened at. */
  readonly path: string;
  /** Bytes of address space reserved for the file. */
  readonly reserveBytes: number;
  /** True when the file did not exist (or was empty) and was created by this open. */
  readonly created: boolean;
  /** The option that sets {@link reserveBytes} (named in `VIEW_FULL` errors). */
  readonly limitOption: string;
  #fd: number;
  #buffer: ArrayBuffer;
  #byteLength: number;

  private constructor(path: string, fd: number, buffer: ArrayBuffer, byteLength: number, reserveBytes: number, created: boolean, limitOption: string) {
    this.path = path;
    this.limitOption = limitOption;
    this.#fd = fd;
    this.#buffer = buffer;
    this.#byteLength = byteLength;
    this.reserveBytes = reserveBytes;
    this.created = created;
  }

  /**
   * Opens (creating if missing) and maps `path`. A new or empty file is extended to
   * `initialBytes` of zeros.
   */
  static open(path: string, options: MappedFileOptions): MappedFile {
    const reserveBytes = roundUpToPage(options.reserveBytes);
    let fd: number;
    try {
      fd = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
    } catch (error) {
      throw systemErrorFrom(error, 'open', path);
    }
    try {
      let size = fs.fstatSync(fd).size;
      const created = size === 0;
      if (created) {
        size = roundUpToPage(Math.max(options.initialBytes, PAGE_BYTES));
        try {
          loadNative().allocate(fd, 0, size);
        } catch (error) {
          fs.ftruncateSync(fd, 0); // an empty file counts as new at the next open
          throw systemErrorFrom(error, 'fallocate', path);
        }
      }
      if (size > reserveBytes) {
        throw new NoatunError(
          ErrorCode.VIEW_FULL,
          `${path} is ${size} bytes, larger than the ${reserveBytes} bytes reserved for it (raise ${options.limitOption ?? 'maxViewBytes'})`,
        );
      }
      let buffer: ArrayBuffer;
      try {
        buffer = loadNative().map(fd, reserveBytes, size, true);
      } catch (error) {
        if (error instanceof NoatunError) throw error;
        throw systemErrorFrom(error, 'mmap', path);
      }
      return new MappedFile(path, fd, buffer, size, reserveBytes, created, options.limitOption ?? 'maxViewBytes');
    } catch (error) {
      fs.closeSync(fd);
      if (error instanceof NoatunError) throw error;
      throw systemErrorFrom(error, 'ftruncate', path);
    }
  }

  /** Current length of the file in bytes: the only part of the mapping that may be touched. */
  get byteLength(): number {
    return this.#byteLength;
  }

  /**
   * The mapping's ArrayBuffer, exactly {@link byteLength} bytes long. {@link grow} replaces it:
   * rebuild typed arrays from it after growing (older ones stay valid but short).
   */
  get buffer(): ArrayBuffer {
    this.#assertOpen();
    return this.#buffer;
  }

  /** True once {@link close} has run. */
  get closed(): boolean {
    return this.#fd < 0;
  }

  /**
   * Grows the file to at least `minBytes` (doubling, rounded to pages, capped at the
   * reservation). The mapping already covers the new bytes, which read as zero; they have no
   * blocks on disk yet (a doubling would take as much disk as the file held), so the caller
   * {@link allocate}s what it is about to write. Throws `VIEW_FULL` when the reservation is too
   * small.
   */
  grow(minBytes: number): void {
    this.#assertOpen();
    if (minBytes <= this.#byteLength) return;
    if (minBytes > this.reserveBytes) {
      throw new NoatunError(
        ErrorCode.VIEW_FULL,
        `${this.path} needs ${minBytes} bytes but only ${this.reserveBytes} are reserved (raise ${this.limitOption})`,
      );
    }
    const target = Math.min(this.reserveBytes, roundUpToPage(Math.max(minBytes, this.#byteLength * 2)));
    try {
      fs.ftruncateSync(this.#fd, target);
    } catch (error) {
      throw systemErrorFrom(error, 'ftruncate', this.path);
    }
    // A longer ArrayBuffer over the same mapping (see native/mmap.c: buffers span the file, not
    // the reservation, because V8 counts their length as external memory).
    this.#buffer = loadNative().extend(this.#buffer, target);
    this.#byteLength = target;
  }

  /** Flushes `[offset, offset + length)` (default: the whole file) to disk with msync(MS_SYNC). */
  sync(offset = 0, length = this.#byteLength - offset): void {
    this.#assertOpen();
    try {
      loadNative().sync(this.#buffer, offset, length);
    } catch (error) {
      throw systemErrorFrom(error, 'msync', this.path);
    }
  }

  /** Passes an access-pattern hint to the kernel (see {@link Advice}). */
  advise(advice: number): void {
    this.#assertOpen();
    try {
      loadNative().advise(this.#buffer, advice);
    } catch (error) {
      throw systemErrorFrom(error, 'madvise', this.path);
    }
  }

  /**
   * Gives the file's blocks in bytes [`from`, `to`) back to the file system (a hole is punched;
   * the bytes read as zeros afterwards), rounded in to whole pages: for space no longer in use.
   * False where the platform or the file system cannot (the bytes then stay as they were, so the
   * caller must not rely on them reading as zeros).
   */
  discard(from: number, to: number = this.byteLength): boolean {
    this.#assertOpen();
    try {
      return loadNative().discard(this.#buffer, from, Math.min(to, this.byteLength));
    } catch (error) {
      throw systemErrorFrom(error, 'madvise', this.path);
    }
  }

  /**
   * Gives bytes [`from`, `to`) of the file (capped at its length) their blocks on disk, rounded
   * out to whole pages, before the caller writes there through the mapping. Cheap where they have
   * them already. Throws `DISK_FULL` when the file system has no room (the bytes read and write as
   * before where they had blocks).
   */
  allocate(from: number, to: number = this.byteLength): void {
    this.#assertOpen();
    const start = Math.floor(from / PAGE_BYTES) * PAGE_BYTES;
    const end = Math.min(this.#byteLength, roundUpToPage(to));
    if (end <= start) return;
    try {
      loadNative().allocate(this.#fd, start, end - start);
    } catch (error) {
      throw systemErrorFrom(error, 'fallocate', this.path);
    }
  }

  /**
   * Gives blocks on disk from byte `from` (where the caller's blocks end) to `ahead` bytes past
   * both `need` and `from + ahead`, capped at the file's length (or at `cap`, for a writer that
   * must not reach past it), and makes those pages present in the background ({@link prefault});
   * returns where the blocks end now. So a writer that calls this only when it passes that end
   * makes one system call per `ahead` bytes written and has at most twice that on disk past what
   * it wrote. Throws `DISK_FULL` (nothing changed) when the file system has no room.
   */
  allocateAhead(from: number, need: number, ahead: number, cap: number = this.#byteLength): number {
    const to = Math.min(this.#byteLength, cap, Math.max(need, from + ahead) + ahead);
    this.allocate(from, to);
    this.prefault(from, to);
    return to;
  }

  /**
   * Makes the pages of [`from`, `to`) present and writable on a background thread (see `prefault`
   * in native/mmap.c), so that the writes this thread makes there next take no page fault. For
   * pages that have their blocks already ({@link allocate}). Does nothing where the platform
   * cannot; never throws (a page not made present faults when written, as without this). A
   * {@link discard} made before the work runs cancels it, whatever its range.
   */
  prefault(from: number, to: number): void {
    if (this.#fd < 0 || !this.#prefaults) return;
    const end = Math.min(to, this.#byteLength);
    if (end <= from) return;
    try {
      if (loadNative().prefault?.(this.#buffer, from, end) !== true) this.#prefaults = false;
    } catch {
      this.#prefaults = false;
    }
  }

  /**
   * Whether files opened from now on make the pages they write next present ahead (see
   * {@link prefault}): a switch to measure with and without (BENCHMARKS.md, run X).
   */
  static prefaults = true;

  /** False once {@link prefault} found the platform (or the addon) cannot. */
  #prefaults = MappedFile.prefaults;

  /**
   * Unmaps and closes. Typed arrays over the mapping become empty (their buffer is detached), so
   * a stale reader sees `undefined`, never freed memory. Idempotent.
   */
  close(): void {
    if (this.#fd < 0) return;
    loadNative().unmap(this.#buffer);
    fs.closeSync(this.#fd);
    this.#fd = -1;
  }

  #assertOpen(): void {
    if (this.#fd < 0) throw new NoatunError(ErrorCode.CLOSED, `${this.path} is closed`);
  }
}

function roundUpToPage(bytes: number): number {
  return Math.ceil(bytes / PAGE_BYTES) * PAGE_BYTES;
}
