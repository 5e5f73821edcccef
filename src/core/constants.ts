/**
 * Defaults and limits of the engine, documented once.
 */

/**
 * How late an event may arrive before the past is considered final (spec: at least 2 minutes).
 * @default 15 minutes
 */
export const DEFAULT_CUTOFF_INTERVAL_MS = 15 * 60 * 1000;

/**
 * How far ahead of this peer's clock an event may be dated: later ones are refused (their sender
 * offers them again once they are due). Clocks kept by NTP agree within a second; a minute leaves
 * room for devices that are not, and is shorter than a cutoff stride (at least a minute), so a
 * refused event is never needed for agreeing on the cutoff.
 * @default 60000
 */
export const DEFAULT_MAX_CLOCK_SKEW_MS = 60_000;

/**
 * Events kept in memory, in total, while waiting for their parents; beyond this new ones are
 * refused (the sender offers them again).
 * @default 100000
 */
export const DEFAULT_MAX_PARKED_EVENTS = 100_000;

/**
 * Bytes of envelopes kept in memory, in total, while waiting for their parents.
 * @default 128 MiB
 */
export const DEFAULT_MAX_PARKED_BYTES = 128 * 2 ** 20;

/**
 * Events one sender may have waiting for their parents (an honest sender sends parents first, so
 * little of its traffic ever waits).
 * @default 20000
 */
export const DEFAULT_MAX_PARKED_EVENTS_PER_SOURCE = 20_000;

/**
 * Bytes of envelopes one sender may have waiting for their parents (two of the largest events).
 * @default 32 MiB
 */
export const DEFAULT_MAX_PARKED_BYTES_PER_SOURCE = 32 * 2 ** 20;

/**
 * How long an event waits for its parents before it is dropped (its sender offers it again).
 * @default 600000 (ten minutes)
 */
export const DEFAULT_PARKED_TTL_MS = 10 * 60 * 1000;

/**
 * Events behind the cutoff that may wait in memory for their turn to be stored (re-applying
 * history is budgeted, see `Database.ingest`); beyond this they are refused (their senders offer
 * them again).
 * @default 100000
 */
export const DEFAULT_MAX_LATE_EVENTS = 100_000;

/**
 * Bytes of envelopes behind the cutoff that may wait in memory for their turn to be stored.
 * @default 64 MiB
 */
export const DEFAULT_MAX_LATE_BYTES = 64 * 2 ** 20;

/**
 * Undo history kept at most (beyond it the oldest is dropped, even inside the cutoff interval):
 * a late event older than the history is applied by rebuilding the view from the log instead.
 * @default 256 MiB
 */
export const DEFAULT_MAX_UNDO_HISTORY_BYTES = 256 * 2 ** 20;

/**
 * The share of time that storing events behind the cutoff may take (a rewind through the undo
 * history, or a rebuild): after such a batch took t, the next may start t × (1 / share − 1) later.
 * The default of `DatabaseOptions.lateWorkShare`.
 */
export const REBUILD_DUTY_CYCLE = 0.1;
