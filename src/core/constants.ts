/**
 * Defaults and limits of the engine, documented once.
 */

/**
 * How late an event may arrive before the past is considered final (spec: at least 2 minutes).
 * @default 15 minutes
 */
export const DEFAULT_CUTOFF_INTERVAL_MS = 15 * 60 * 1000;

/**
 * Events kept in memory while waiting for their parents; beyond this new ones are dropped (the
 * sender offers them again).
 * @default 100000
 */
export const MAX_PARKED_EVENTS = 100_000;
