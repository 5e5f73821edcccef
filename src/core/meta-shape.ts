/**
 * The shapes of the event log's metadata values (`EventLog.getMeta`): what each must be when it
 * is read back from the file. LMDB keeps no checksums, so a damaged value decodes into anything
 * (an object where a number was, an array missing its items): read unchecked, it surfaced as a
 * raw TypeError from deep inside the open. Checked, it is `CORRUPT_FILE` naming the value.
 */

/** A check of a metadata value, and what it must be, for the error. */
export interface MetaShape<T> {
  readonly is: (value: unknown) => value is T;
  readonly what: string;
}

const isCount = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
const isBytes = (value: unknown): value is Uint8Array => value instanceof Uint8Array;

/** The shapes the engine's metadata take. */
export const MetaShape = {
  /** A count, an ordinal or a byte size: a safe integer ≥ 0. */
  count: { is: isCount, what: 'a whole number ≥ 0' } as MetaShape<number>,
  /** A time in ms (the application's clock may give fractions). */
  time: { is: (value: unknown): value is number => typeof value === 'number' && Number.isFinite(value) && value >= 0, what: 'a time ≥ 0' } as MetaShape<number>,
  /** A name. */
  text: { is: (value: unknown): value is string => typeof value === 'string', what: 'a string' } as MetaShape<string>,
  /** A flag. */
  flag: { is: (value: unknown): value is boolean => typeof value === 'boolean', what: 'true or false' } as MetaShape<boolean>,
  /** Two or three counts (versions before 6 Dec 2026 wrote two), or null. */
  countsOrNull: {
    is: (value: unknown): value is [number, number, number?] | null =>
      value === null || (Array.isArray(value) && (value.length === 2 || value.length === 3) && value.every(isCount)),
    what: 'two or three whole numbers, or null',
  } as MetaShape<[number, number, number?] | null>,
  /** Anything that decodes (a value whose every shape is read with care where it is used). */
  any: { is: (_value: unknown): _value is unknown => true, what: 'a value' } as MetaShape<unknown>,
  /** Bytes of an id (16). */
  id: { is: (value: unknown): value is Uint8Array => isBytes(value) && value.byteLength === 16, what: '16 bytes' } as MetaShape<Uint8Array>,
  /** A list of ids. */
  idList: {
    is: (value: unknown): value is Uint8Array[] => Array.isArray(value) && value.every((id) => isBytes(id) && id.byteLength === 16),
    what: 'a list of ids of 16 bytes',
  } as MetaShape<Uint8Array[]>,
} as const;
