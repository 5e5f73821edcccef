/**
 * Making a directory and the ones above it, without Node's recursive `mkdirSync`: where `mkdir`
 * fails with ENOENT although the parent exists (a path under `/proc`, a relative path once the
 * working directory was deleted), Node's recursive mkdir retried for ever at full CPU, deaf to
 * signals, and `Database.open` and `noatun peer` never returned.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type NoatunError, systemErrorFrom } from './errors.js';

/**
 * Makes `directory` and any missing directory above it; does nothing when it exists. Throws the
 * system's error (an `ErrnoException`): ENOTDIR when it, or one above it, is not a directory.
 */
export function makeDirectories(directory: string): void {
  // (Resolving a relative path reads the working directory, which throws when it was deleted.)
  const target = path.resolve(directory);
  const missing: string[] = [];
  for (let at = target; ; ) {
    let stats: fs.Stats | undefined;
    try {
      stats = fs.statSync(at);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    if (stats !== undefined) {
      if (!stats.isDirectory()) throw notADirectory(at);
      break;
    }
    missing.push(at);
    const parent = path.dirname(at);
    if (parent === at) break;
    at = parent;
  }
  // Each one once, from the top: a failure is the system's answer, not a reason to try again.
  for (let i = missing.length - 1; i >= 0; i--) {
    const at = missing[i]!;
    try {
      fs.mkdirSync(at);
    } catch (error) {
      // Made meanwhile by someone else: fine if it is a directory.
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || !fs.statSync(at).isDirectory()) throw error;
    }
  }
}

function notADirectory(at: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`ENOTDIR: not a directory, mkdir '${at}'`), { code: 'ENOTDIR', errno: -20, syscall: 'mkdir', path: at });
}

/**
 * {@link makeDirectories} with its failures as `NoatunError`s: `notADirectory(error)` when `directory`,
 * or one above it, is not a directory (each caller says what that means for it), the system's
 * error otherwise (`SYSTEM_CALL_FAILED`, or `DISK_FULL`).
 */
export function makeDirectoriesOrRefuse(directory: string, notADirectory: (error: unknown) => NoatunError): void {
  try {
    makeDirectories(directory);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' || code === 'ENOTDIR') throw notADirectory(error);
    throw systemErrorFrom(error, 'mkdir', directory);
  }
}
