/**
 * The cutoff: the time before which the past is final. Events older than the cutoff may no longer
 * gain parents, are never update heads, and (with pruning) their overwritten data can go.
 *
 * The cutoff moves in whole strides of minutes (a tenth of the interval, at least one minute), so
 * peers whose clocks differ by less than a stride agree on it, and it never moves backwards.
 */

const MINUTE_MS = 60_000;

/** The stride, in ms, of a cutoff interval: a tenth of it in whole minutes, at least a minute. */
export function cutoffStrideMs(intervalMs: number): number {
  return Math.max(1, Math.floor(Math.ceil(intervalMs / MINUTE_MS) / 10)) * MINUTE_MS;
}

/**
 * The nominal cutoff at `now`: `now` floored to the minute, minus the interval and one stride,
 * rounded up to a multiple of the stride. It lies between `now - interval - stride` and
 * `now - interval`.
 */
export function nominalCutoff(now: number, intervalMs: number): number {
  const interval = Math.ceil(intervalMs / MINUTE_MS) * MINUTE_MS;
  const stride = cutoffStrideMs(intervalMs);
  const base = Math.floor(now / MINUTE_MS) * MINUTE_MS - interval - stride;
  if (base <= 0) return 0;
  return Math.ceil(base / stride) * stride;
}

/** Bytes of a cutoff hash: the XOR of 16-byte ids. */
export const CUTOFF_HASH_BYTES = 16;

/**
 * What a peer knows of its finalized past: the cutoff, the XOR of the ids of the events it stores
 * from before it, and the same for the cutoff one stride earlier (so that two peers whose clocks
 * straddle a stride boundary can still compare).
 */
export interface CutoffState {
  /** The cutoff time in ms (0: none yet). */
  readonly time: number;
  /** XOR of the ids of stored events with timestamp < `time`. */
  readonly hash: Uint8Array;
  /** `time` minus one stride. */
  readonly previousTime: number;
  /** XOR of the ids of stored events with timestamp < `previousTime`. */
  readonly previousHash: Uint8Array;
}

/** XORs the 16 bytes of `id` into `hash`. */
export function xorInto(hash: Uint8Array, id: Uint8Array): void {
  for (let i = 0; i < CUTOFF_HASH_BYTES; i++) hash[i]! ^= id[i]!;
}

/**
 * How a peer's finalized past relates to ours:
 * - `same`: equal cutoff and hash, or one peer is a stride ahead and its previous era matches.
 * - `differ`: same era (or adjacent) but different events before the cutoff: reconcile all ids.
 * - `peer-ahead`: the peer's cutoff is more than a stride ahead of ours: its clock runs fast
 *   (or ours slow); comparing finalized pasts is meaningless until the clocks agree.
 * - `peer-behind`: the reverse.
 */
export type CutoffComparison = 'same' | 'differ' | 'peer-ahead' | 'peer-behind';

/** Compares our cutoff state with a peer's (see {@link CutoffComparison}). */
export function compareCutoffs(ours: CutoffState, theirs: CutoffState, strideMs: number): CutoffComparison {
  if (theirs.time > ours.time + strideMs) return 'peer-ahead';
  if (ours.time > theirs.time + strideMs) return 'peer-behind';
  if (ours.time === theirs.time) return equalBytes(ours.hash, theirs.hash) ? 'same' : 'differ';
  if (theirs.time > ours.time) {
    return theirs.previousTime === ours.time && equalBytes(theirs.previousHash, ours.hash) ? 'same' : 'differ';
  }
  return ours.previousTime === theirs.time && equalBytes(ours.previousHash, theirs.hash) ? 'same' : 'differ';
}

/** Whether two hashes (or any byte strings) are equal. */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
