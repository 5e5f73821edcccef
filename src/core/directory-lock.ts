/**
 * One open Database per directory: an exclusive advisory lock (`flock`) on the directory's `LOCK`
 * file, held by an open descriptor for as long as the database is open, plus a set of the
 * directories this process has open. Two mappings of the same view file by two writers would
 * corrupt it, so a second open fails with `DATABASE_LOCKED` instead.
 *
 * Why a lock held by a descriptor: the kernel lets go of it when the process ends, however it
 * ends, so a crash (SIGKILL) never leaves the directory locked. The lock file used to be the lock
 * itself, holding its owner's pid, and a lock whose pid no longer ran was taken over: a pid reused
 * by another program after a crash kept the directory locked until someone deleted the file, and
 * two processes taking over the same stale lock at once could both remove it and both open. The
 * file still holds the pid of the process that has the database open, for the error another one
 * gives; it is never deleted (deleting a locked file would let another process lock a new one).
 *
 * Versions before this one took the lock by the pid alone: do not open one directory with both at
 * once (this one does not see the other's lock).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { diskFullFrom, ErrorCode, NoatunError, systemErrorFrom } from '../errors.js';
import { lockFile } from '../view/mapped-file.js';

const openHere = new Set<string>();

/** Takes the lock of `directory`; returns the function that releases it. */
export function lockDirectory(directory: string): () => void {
  // The directory as the file system names it: opened again through a symlink, it is the same one.
  const resolved = realDirectory(directory);
  if (openHere.has(resolved)) {
    throw new NoatunError(ErrorCode.DATABASE_LOCKED, `${directory} is already open in this process`);
  }
  const file = path.join(resolved, 'LOCK');
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
  } catch (error) {
    // (Out of file descriptors, a full disk: a clear error, not Node's.)
    throw diskFullFrom(error, file) ?? systemErrorFrom(error, 'open', file);
  }
  try {
    // A lock the file says this process took, and that it has let go of (it is not open here),
    // is held by a child forked meanwhile by another thread, until the child runs its program:
    // that waits longer (an open after a close, on a loaded machine, was refused so).
    if (!lockWithin(fd, file, LOCK_PATIENCE_MS) && !(ownerOf(fd) === process.pid && lockWithin(fd, file, FORKED_LOCK_PATIENCE_MS))) {
      const owner = ownerOf(fd);
      const holder =
        owner === undefined ? 'another process' : owner === process.pid ? `another thread of this process (${owner})` : `process ${owner}`;
      throw new NoatunError(ErrorCode.DATABASE_LOCKED, `${directory} is open in ${holder}`);
    }
    // Ours: the pid is only for the message of the next process that tries.
    fs.ftruncateSync(fd, 0);
    fs.writeSync(fd, String(process.pid), 0);
  } catch (error) {
    fs.closeSync(fd);
    if (error instanceof NoatunError) throw error;
    throw diskFullFrom(error, file) ?? systemErrorFrom(error, 'write', file);
  }
  openHere.add(resolved);
  return () => {
    openHere.delete(resolved);
    try {
      fs.closeSync(fd);
    } catch {
      // Closed already: nothing to release.
    }
  };
}

/**
 * How long a lock held elsewhere is waited for before the open is refused. A lock this process
 * has just let go of can still be held for a moment: a child process forked by another thread
 * holds a copy of the descriptor until it runs its program (a test closing and reopening a
 * database while other tests started processes met it). Real contention waits this long, once.
 */
const LOCK_PATIENCE_MS = 200;

/**
 * How long this process's own released lock is waited for (see {@link lockDirectory}): a fork
 * holds it until its program runs, which on a loaded machine took longer than
 * {@link LOCK_PATIENCE_MS} (the engine suites with 60 seeds, the crash tests forking meanwhile).
 * A lock another thread of this process holds (it has the database open) looks the same from
 * here: it is refused after this wait, naming that thread.
 */
const FORKED_LOCK_PATIENCE_MS = 5_000;

/** Tries to take the lock for up to `patienceMs`; whether it was taken. */
function lockWithin(fd: number, file: string, patienceMs: number): boolean {
  const until = Date.now() + patienceMs;
  for (;;) {
    if (lockFile(fd, file)) return true;
    if (Date.now() >= until) return false;
    // A synchronous pause (the open's lock is taken synchronously).
    Atomics.wait(PAUSE, 0, 0, 10);
  }
}

const PAUSE = new Int32Array(new SharedArrayBuffer(4));

/** `directory` with symlinks resolved (the path as given, resolved, where that fails). */
function realDirectory(directory: string): string {
  try {
    return fs.realpathSync(directory);
  } catch {
    return path.resolve(directory);
  }
}

/** The pid the lock file names, if it names one. */
function ownerOf(fd: number): number | undefined {
  try {
    const bytes = Buffer.alloc(32);
    const owner = Number.parseInt(bytes.toString('utf8', 0, fs.readSync(fd, bytes, 0, bytes.length, 0)), 10);
    return Number.isSafeInteger(owner) && owner > 0 ? owner : undefined;
  } catch {
    return undefined;
  }
}
