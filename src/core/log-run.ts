/**
 * A run: the events of one stretch of the log, stored as one LMDB value keyed by its first id
 * (log format 2; format 3 may store a run packed: see `run-pack.ts`). Writing a batch of events as a few runs instead of one entry per event costs
 * LMDB a put per run, and each event on disk only its envelope and 8 bytes (no key beside it, no
 * node of its own).
 *
 * Layout, little-endian:
 *
 * | field                 | bytes          |
 * |-----------------------|----------------|
 * | count                 | 4              |
 * | per event: ordinal    | 4              |
 * | per event: end        | 4 (where its envelope ends, from the first envelope's start) |
 * | envelopes             | back to back, in id order |
 *
 * An event's id is not stored apart: it is bytes 1–16 of its envelope (see `envelope.ts`).
 */
import { ErrorCode, NoatunError } from '../errors.js';

/** What a run holds of one event: id, ordinal and envelope (views into the run's bytes). */
export interface RunEntry {
  readonly key: Uint8Array;
  readonly ordinal: number;
  readonly envelope: Uint8Array;
}

/**
 * Most bytes a run takes when it holds more than one event: what one LMDB overflow page holds
 * (4096 bytes less its header; measured: lmdb 3.5 stores a value of 4072 bytes in one page and one
 * of 4073 in two), so a full run wastes nothing on disk and reading one event reads at most a
 * page. A larger event makes a run of its own.
 */
export const RUN_BYTES = 4072;

const HEADER_BYTES = 4;
const ENTRY_BYTES = 8;
/** Where an envelope's id starts (after its version byte). */
const ID_OFFSET = 1;
const ID_BYTES = 16;

/** The bytes of a run holding `count` events whose envelopes take `envelopeBytes`. */
export function runSize(count: number, envelopeBytes: number): number {
  return HEADER_BYTES + count * ENTRY_BYTES + envelopeBytes;
}

/** Encodes `entries` (in id order) as one run. */
export function encodeRun(entries: readonly RunEntry[], from = 0, to = entries.length): Buffer {
  let bytes = 0;
  for (let i = from; i < to; i++) bytes += entries[i]!.envelope.byteLength;
  const count = to - from;
  const run = Buffer.allocUnsafe(runSize(count, bytes));
  run.writeUInt32LE(count, 0);
  const dataStart = HEADER_BYTES + count * ENTRY_BYTES;
  let end = 0;
  for (let i = from; i < to; i++) {
    const { ordinal, envelope } = entries[i]!;
    run.set(envelope, dataStart + end);
    end += envelope.byteLength;
    const at = HEADER_BYTES + (i - from) * ENTRY_BYTES;
    run.writeUInt32LE(ordinal >>> 0, at);
    run.writeUInt32LE(end, at + 4);
  }
  return run;
}

/**
 * The runs `runs` (plain, in id order, each a sound run: see {@link RunReader}) as one run:
 * their tables and envelopes copied as they are, no object per event.
 */
export function concatRuns(runs: readonly Uint8Array[]): Buffer {
  let count = 0;
  let bytes = 0;
  for (const run of runs) {
    const n = readCount(run);
    count += n;
    bytes += run.byteLength - HEADER_BYTES - n * ENTRY_BYTES;
  }
  const out = Buffer.allocUnsafe(runSize(count, bytes));
  out.writeUInt32LE(count, 0);
  let entry = HEADER_BYTES;
  let data = HEADER_BYTES + count * ENTRY_BYTES;
  const dataStart = data;
  for (const run of runs) {
    const n = readCount(run);
    const view = new DataView(run.buffer, run.byteOffset, run.byteLength);
    const shift = data - dataStart;
    for (let i = 0; i < n; i++) {
      const at = HEADER_BYTES + i * ENTRY_BYTES;
      out.writeUInt32LE(view.getUint32(at, true), entry);
      out.writeUInt32LE(view.getUint32(at + 4, true) + shift, entry + 4);
      entry += ENTRY_BYTES;
    }
    out.set(run.subarray(HEADER_BYTES + n * ENTRY_BYTES), data);
    data += run.byteLength - HEADER_BYTES - n * ENTRY_BYTES;
  }
  return out;
}

/** The count of a plain run. */
function readCount(run: Uint8Array): number {
  return (run[0]! | (run[1]! << 8) | (run[2]! << 16) | (run[3]! << 24)) >>> 0;
}

/**
 * Splits `entries` (in id order) into runs of at most {@link RUN_BYTES} (one event may exceed it
 * alone), and hands each to `write` with its first entry's id.
 */
export function writeRuns(entries: readonly RunEntry[], write: (first: Uint8Array, run: Buffer) => void): void {
  let from = 0;
  while (from < entries.length) {
    let to = from + 1;
    let bytes = entries[from]!.envelope.byteLength;
    while (to < entries.length && runSize(to + 1 - from, bytes + entries[to]!.envelope.byteLength) <= RUN_BYTES) {
      bytes += entries[to]!.envelope.byteLength;
      to++;
    }
    write(entries[from]!.key, encodeRun(entries, from, to));
    from = to;
  }
}

/**
 * A stored run, read in place: its header is checked when it is opened, and each event's bounds
 * when it is read (so opening a run costs the same whatever it holds). The views it hands out are
 * into `bytes`, valid as long as those are.
 */
export class RunReader {
  readonly bytes: Uint8Array;
  readonly count: number;
  readonly #view: DataView;
  readonly #dataStart: number;
  readonly #runKey: Uint8Array;

  /**
   * Checks the run's header against its length; a run that does not add up is a damaged file.
   * `runKey` is its LMDB key, for the error.
   */
  constructor(bytes: Uint8Array, runKey: Uint8Array) {
    this.bytes = bytes;
    this.#runKey = runKey;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (bytes.byteLength < HEADER_BYTES) throw this.#damaged('shorter than its header');
    const count = this.#view.getUint32(0, true);
    this.count = count;
    this.#dataStart = HEADER_BYTES + count * ENTRY_BYTES;
    if (count === 0 || this.#dataStart > bytes.byteLength) throw this.#damaged(`${count} events do not fit`);
    if (this.#dataStart + this.#end(count - 1) !== bytes.byteLength) throw this.#damaged('its envelopes do not fill it');
  }

  #damaged(reason: string): NoatunError {
    return new NoatunError(
      ErrorCode.CORRUPT_FILE,
      `the event log's run ${Buffer.from(this.#runKey).toString('hex')} is damaged: ${reason}`,
    );
  }

  #end(i: number): number {
    return this.#view.getUint32(HEADER_BYTES + i * ENTRY_BYTES + 4, true);
  }

  /** Where event `i`'s envelope starts in `bytes`, its bounds checked. */
  #start(i: number): number {
    const start = i === 0 ? 0 : this.#end(i - 1);
    const end = this.#end(i);
    if (start + ID_OFFSET + ID_BYTES > end || this.#dataStart + end > this.bytes.byteLength) {
      throw this.#damaged(`event ${i} does not fit`);
    }
    return this.#dataStart + start;
  }

  /**
   * Checks the whole table, beyond what opening checks: every event fits, its envelope holds an
   * id, the ids increase, and the first is the run's key (lookups find runs by it). A rebuild
   * reads every run so, before it trusts an envelope check: an envelope whose bytes fail their id
   * is dropped alone, but one whose bounds are wrong would drop bytes of its neighbours under an
   * id that is not stored.
   */
  checkAll(): void {
    const bytes = this.bytes;
    for (let i = 0; i < this.count; i++) {
      const at = this.#start(i) + ID_OFFSET;
      if (i === 0) {
        for (let b = 0; b < ID_BYTES; b++) {
          if (bytes[at + b] !== this.#runKey[b]) throw this.#damaged('its first id is not its key');
        }
      } else if (this.compareKey(i - 1, bytes.subarray(at, at + ID_BYTES)) >= 0) {
        throw this.#damaged(`its ids are out of order at event ${i}`);
      }
    }
  }

  /** The id of event `i` (a view). */
  key(i: number): Uint8Array {
    const at = this.#start(i) + ID_OFFSET;
    return this.bytes.subarray(at, at + ID_BYTES);
  }

  /** Whether event `i`'s id starts with `prefix`, without a view. */
  keyStartsWith(i: number, prefix: Uint8Array): boolean {
    const bytes = this.bytes;
    const at = this.#start(i) + ID_OFFSET;
    for (let b = 0; b < prefix.length; b++) if (bytes[at + b] !== prefix[b]) return false;
    return true;
  }

  /** Orders event `i`'s id against `key` (negative, 0, positive), without a view. */
  compareKey(i: number, key: Uint8Array): number {
    const bytes = this.bytes;
    const at = this.#start(i) + ID_OFFSET;
    for (let b = 0; b < ID_BYTES; b++) {
      const d = bytes[at + b]! - key[b]!;
      if (d !== 0) return d;
    }
    return 0;
  }

  /** The ordinal of event `i`. */
  ordinal(i: number): number {
    return this.#view.getUint32(HEADER_BYTES + i * ENTRY_BYTES, true);
  }

  /** The envelope of event `i` (a view). */
  envelope(i: number): Uint8Array {
    return this.bytes.subarray(this.#start(i), this.#dataStart + this.#end(i));
  }

  /** Event `i` as views into the run. */
  entry(i: number): RunEntry {
    return { key: this.key(i), ordinal: this.ordinal(i), envelope: this.envelope(i) };
  }

  /**
   * This run without the events `i` for which `drop[i]` is not 0, encoded as {@link encodeRun}
   * encodes them (a run only shrinks), or undefined when none is left. Copies the bytes of the
   * events kept, with no object per event: pruning rewrites a run this way for each event it
   * removes.
   */
  without(drop: Uint8Array): Buffer | undefined {
    let count = 0;
    let bytes = 0;
    for (let i = 0; i < this.count; i++) {
      if (drop[i] !== 0) continue;
      count++;
      bytes += this.#dataStart + this.#end(i) - this.#start(i);
    }
    if (count === 0) return undefined;
    const run = Buffer.allocUnsafe(runSize(count, bytes));
    run.writeUInt32LE(count, 0);
    const dataStart = HEADER_BYTES + count * ENTRY_BYTES;
    let end = 0;
    let k = 0;
    // The envelopes kept are copied in stretches between the dropped ones.
    let stretch = -1;
    let stretchEnd = 0;
    for (let i = 0; i <= this.count; i++) {
      if (i === this.count || drop[i] !== 0) {
        if (stretch >= 0) run.set(this.bytes.subarray(stretch, stretchEnd), dataStart + end - (stretchEnd - stretch));
        stretch = -1;
        continue;
      }
      const start = this.#start(i);
      const stop = this.#dataStart + this.#end(i);
      if (stretch < 0) stretch = start;
      stretchEnd = stop;
      end += stop - start;
      const at = HEADER_BYTES + k * ENTRY_BYTES;
      run.writeUInt32LE(this.ordinal(i), at);
      run.writeUInt32LE(end, at + 4);
      k++;
    }
    return run;
  }

  /** The index of the first event whose id is ≥ `key` (`count` when none is). */
  lowerBound(key: Uint8Array): number {
    let low = 0;
    let high = this.count;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.compareKey(middle, key) < 0) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  /** The index of the event with this id, or -1. */
  indexOf(key: Uint8Array): number {
    const i = this.lowerBound(key);
    return i < this.count && this.compareKey(i, key) === 0 ? i : -1;
  }
}
