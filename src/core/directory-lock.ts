/**
 * One open Database per directory: a lock file holding the owner's pid, plus a set of the
 * directories this process has open. Two mappings of the same view file by two writers would
 * corrupt it, so a second open fails with `DATABASE_LOCKED` instead.
 *
 * A lock left by a process that died (SIGKILL) is taken over: its pid no longer runs.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { diskFullFrom, ErrorCode, NoatunError, systemErrorFrom } from '../errors.js';

const openHere = new Set<string>();

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes the lock of `directory`; returns the function that releases it. */
export function lockDirectory(directory: string): () => void {
  const resolved = path.resolve(directory);
  if (openHere.has(resolved)) {
    throw new NoatunError(ErrorCode.DATABASE_LOCKED, `${directory} is already open in this process`);
  }
  const file = path.join(resolved, 'LOCK');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(file, String(process.pid), { flag: 'wx' });
      openHere.add(resolved);
      return () => {
        openHere.delete(resolved);
        try {
          if (fs.readFileSync(file, 'utf8') === String(process.pid)) fs.unlinkSync(file);
        } catch {
          // Already gone: nothing to release.
        }
      };
    } catch (error) {
      const full = diskFullFrom(error, file);
      if (full !== undefined) {
        // The file may have been made, empty: it would only be taken over at the next open.
        fs.rmSync(file, { force: true });
        throw full;
      }
      // (Out of file descriptors, say: a clear error, not Node's.)
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw systemErrorFrom(error, 'open', file);
      let owner: number;
      try {
        owner = Number.parseInt(fs.readFileSync(file, 'utf8'), 10);
      } catch (cause) {
        // Released between the two calls: try again.
        if ((cause as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw systemErrorFrom(cause, 'read', file);
      }
      if (Number.isInteger(owner) && owner !== process.pid && alive(owner)) {
        throw new NoatunError(ErrorCode.DATABASE_LOCKED, `${directory} is open in process ${owner}`);
      }
      fs.rmSync(file, { force: true });
    }
  }
  throw new NoatunError(ErrorCode.DATABASE_LOCKED, `${directory}: could not take the lock`);
}
