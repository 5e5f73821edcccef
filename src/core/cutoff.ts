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
