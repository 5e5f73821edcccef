/**
 * The checks of what an application hands the database: the options of `Database.open` and of
 * an append, the codec, the clock and id arguments. Each refuses bad input with
 * `INVALID_ARGUMENT` before anything is opened or stored.
 */
import { ErrorCode, NoatunError, refuseUnknownOptions } from '../errors.js';
import { describeValue } from '../view/composite.js';
import type { ObjectSchema } from '../view/schema.js';
import type { Codec } from './codec.js';
import type { AppendOptions, DatabaseOptions } from './database-contract.js';
import { type IdMinter, MAX_TIMESTAMP, MessageId } from './message-id.js';

/**
 * The (timestamp, sequence) of a new local event, from the append options. A time more than
 * `maxSkewMs` after the clock is refused: every peer (this one too, for another's event) refuses
 * an event dated so far ahead until its clock gets there, so it would not replicate till then.
 */
export function placement(minter: IdMinter, now: number, options: AppendOptions | undefined, maxSkewMs: number): { timestamp: number; sequence: number } {
  if (options === undefined) return minter.next(now);
  if (options === null || typeof options !== 'object') {
    throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `append options must be an object ({ time }, { before } or { after }), got ${describeValue(options)}`);
  }
  // A misspelt `time` placed the event at the clock's time, silently.
  refuseUnknownOptions(options, APPEND_OPTION_NAMES, 'append');
  const { time, before, after } = options;
  if ([time, before, after].filter((o) => o !== undefined).length > 1) {
    throw new NoatunError(ErrorCode.INVALID_ARGUMENT, 'give at most one of time, before and after');
  }
  // (The event named need not be stored here: one another peer wrote and this one has not yet, or
  // one pruned, places the new one as well.)
  if (before !== undefined) return MessageId.fromBytes(idBytes(before, 'before')).predecessor();
  if (after !== undefined) return MessageId.fromBytes(idBytes(after, 'after')).successor();
  if (time !== undefined) {
    if (!Number.isSafeInteger(time) || time < 0) throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `time ${time} is not a ms timestamp`);
    if (time > MAX_TIMESTAMP) throw timeOutOfRange('time', time);
    if (time > now + maxSkewMs) {
      throw new NoatunError(
        ErrorCode.INVALID_ARGUMENT,
        `time ${time} is ${time - now} ms after the clock (${now}); peers refuse events dated more than ${maxSkewMs} ms ahead of their clocks (inbox.maxClockSkewMs), so it would not replicate until then`,
      );
    }
    return minter.next(time);
  }
  if (now > MAX_TIMESTAMP) throw timeOutOfRange('the clock reads', now);
  return minter.next(now);
}

/** `INVALID_ARGUMENT` for a time an id cannot hold (ids keep 48 bits of ms). */
export function timeOutOfRange(what: string, time: number): NoatunError {
  return new NoatunError(
    ErrorCode.INVALID_ARGUMENT,
    `${what} ${time}, past the last time an event id can hold (${MAX_TIMESTAMP} ms, in the year 10889): nothing is appended`,
  );
}

/**
 * The 16 bytes of an id argument, or `INVALID_ARGUMENT` naming it (an id from another copy of
 * this package is taken: only its bytes are read).
 */
export function idBytes(id: MessageId, name: string): Uint8Array {
  const bytes = (id as { bytes?: unknown } | null | undefined)?.bytes;
  if (!(bytes instanceof Uint8Array && bytes.length === 16)) {
    throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `${name} must be a MessageId (MessageId.parse makes one from its hex form), got ${describeValue(id)}`);
  }
  return bytes;
}

/** Refuses a codec without the functions the database calls, before anything is opened. */
export function checkCodec(codec: Codec<unknown> | undefined): void {
  if (codec === undefined) return;
  const methods = codec as unknown as Record<string, unknown>;
  for (const name of ['encode', 'decode']) {
    if (typeof methods[name] !== 'function') throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `codec.${name} must be a function`);
  }
  for (const name of ['copy', 'validate']) {
    if (methods[name] !== undefined && typeof methods[name] !== 'function') {
      throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `codec.${name} must be a function when given`);
    }
  }
}

/**
 * Refuses a clock whose time is not ms since the epoch (a string, NaN, infinite, before 1970) at
 * open, where the mistake is usually made (and at every later reading: see {@link clockTime}). (A
 * time past the ids' 48 bits is allowed: such a database can still ingest and read; appending
 * there is refused.)
 */
export function checkClock(now: () => number): void {
  if (typeof now !== 'function') throw new NoatunError(ErrorCode.INVALID_ARGUMENT, 'now must be a function returning ms since the epoch');
  clockTime(now());
}

/**
 * `time`, a reading of the app's clock, when it is ms since the epoch; else `INVALID_ARGUMENT`
 * (at open, and at any later reading: an append then stores nothing).
 */
export function clockTime(time: unknown): number {
  if (typeof time !== 'number' || !(time >= 0 && Number.isFinite(time))) {
    const shown = typeof time === 'string' ? JSON.stringify(time) : String(time);
    throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `now() returned ${shown}: it must return the time in ms since the epoch (a finite number, at least 0)`);
  }
  return time;
}

/**
 * Refuses options of the wrong kind that would otherwise be taken without a word: a flag that is
 * not a boolean (`autoPrune: 'no'` is truthy), a callback that is not a function (it would throw
 * only when first called, in the middle of a rebuild), a size that is not a whole number of bytes
 * or too small for the files' first 64 KiB (the open then failed with `VIEW_FULL`).
 */
export function checkOptionKinds(options: object): void {
  const given = options as Record<string, unknown>;
  // A misspelt option would be ignored without a word: `autoprune: false` left pruning on.
  refuseUnknownOptions(given, OPTION_NAMES, 'Database.open');
  const name = (given as { name?: unknown }).name;
  if (name !== undefined && (typeof name !== 'string' || name === '')) {
    throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `name (the app's) must be a non-empty string, got ${describeValue(name)}`);
  }
  if (given.applyVersion !== undefined && typeof given.applyVersion !== 'string') {
    throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `applyVersion must be a string, got ${describeValue(given.applyVersion)}`);
  }
  for (const name of ['autoPrune', 'checkDeterminism', 'acceptSchemaChange'] as const) {
    const value = given[name];
    if (value !== undefined && typeof value !== 'boolean') {
      throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `${name} must be true or false, got ${describeValue(value)}`);
    }
  }
  for (const name of ['onProgress', 'onNonDeterministicApply'] as const) {
    const value = given[name];
    if (value !== undefined && typeof value !== 'function') {
      throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `${name} must be a function, got ${describeValue(value)}`);
    }
  }
  for (const name of ['maxViewBytes', 'maxUndoBytes'] as const) {
    const value = given[name];
    if (value !== undefined && !(Number.isSafeInteger(value) && (value as number) >= MIN_FILE_BYTES)) {
      throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `${name} must be a whole number of bytes, at least ${MIN_FILE_BYTES}, got ${describeValue(value)}`);
    }
  }
}

/** Every option of an append (the compiler keeps this equal to {@link AppendOptions}'s). */
const APPEND_OPTION_NAMES: Record<keyof AppendOptions, true> = { time: true, before: true, after: true };

/** Every option of `Database.open` (the compiler keeps this equal to {@link DatabaseOptions}'s). */
const OPTION_NAMES: Record<keyof DatabaseOptions<unknown, ObjectSchema<unknown>> | 'name', true> = {
  path: true,
  root: true,
  apply: true,
  codec: true,
  now: true,
  cutoffIntervalMs: true,
  autoPrune: true,
  maxViewBytes: true,
  maxUndoBytes: true,
  maxUndoHistoryBytes: true,
  lateWorkShare: true,
  commitMode: true,
  onProgress: true,
  checkDeterminism: true,
  onNonDeterministicApply: true,
  acceptSchemaChange: true,
  applyVersion: true,
  inbox: true,
  // An app's (`Database.open({ ...app, path })` passes it along; see defineApp).
  name: true,
};

/** The least `maxViewBytes` and `maxUndoBytes`: the view's and the journal's files start at 64 KiB. */
const MIN_FILE_BYTES = 64 * 1024;
