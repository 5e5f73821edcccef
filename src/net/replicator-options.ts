/**
 * The options of a `Replicator`, and their checks: every value in range, every default from
 * src/net/constants.ts. Kept apart from the replicator so its file holds the orchestration only.
 */
import { ErrorCode, NoatunError, refuseUnknownOptions } from '../errors.js';
import { describeValue } from '../view/composite.js';
import {
  DEFAULT_BAN_MS,
  DEFAULT_BATCH_BYTES,
  DEFAULT_GOSSIP_EVENT_BYTES,
  DEFAULT_LARGE_EVENT_BYTES,
  DEFAULT_MAX_SESSIONS,
  DEFAULT_MAX_SESSIONS_PER_PEER,
  DEFAULT_MAX_STRANGERS,
  DEFAULT_RELAY_ANNOUNCE_MS,
  DEFAULT_RELAY_WANT_MS,
  DEFAULT_RESYNC_MAX_MS,
  DEFAULT_RESYNC_MIN_MS,
  DEFAULT_SESSION_DEADLINE_MS,
  DEFAULT_SESSION_IDLE_MS,
  DEFAULT_STATUS_DEBOUNCE_MS,
  DEFAULT_STATUS_INTERVAL_MS,
  DEFAULT_STATUS_SYNC_DELAY_MS,
  DEFAULT_WINDOW,
  MAX_GOSSIP_FRAME_BYTES,
  MIN_RECONCILE_BUDGET,
  STRANGER_GRACE_MS,
} from './constants.js';
import { MAX_FRAME_BYTES } from './link.js';
import type { ReconcileOptions } from './reconcile.js';
import type { RedialOptions } from './redial.js';

/** Tuning of a {@link Replicator}; every limit defaults to a value in src/net/constants.ts. */
export interface ReplicatorOptions {
  /**
   * How often the status is sent to neighbours as a keepalive (and the cutoff moved); a changed
   * status goes at once.
   * @default 15000
   */
  readonly statusIntervalMs?: number;
  /**
   * How long after a change the status is sent (changes within it share one message).
   * @default 50
   */
  readonly statusDebounceMs?: number;
  /**
   * Bytes of envelopes per `EVENTS` batch; a larger envelope is sent in parts of this size.
   * @default 262144
   */
  readonly batchBytes?: number;
  /**
   * Batches (or parts) sent and not yet acknowledged, per session.
   * @default 4
   */
  readonly window?: number;
  /** Tuning of the reconciliation (`maxMessageBytes` at least 64 KiB). */
  readonly reconcile?: ReconcileOptions;
  /**
   * How long ids of events new to us are collected before they are offered to the other
   * neighbours (ms; see src/net/relay.ts).
   * @default 50
   */
  readonly relayAnnounceMs?: number;
  /**
   * How long an event asked of the neighbour that offered it may take before the next one that
   * offered it is asked (ms).
   * @default 2000
   */
  readonly relayWantMs?: number;
  /**
   * How long a neighbour's differing status may stand before a session starts (ms); a status
   * that agrees meanwhile cancels it.
   * @default 1000
   */
  readonly statusSyncDelayMs?: number;
  /**
   * Largest event the relay pushes or offers, and bytes of envelopes per relay frame; larger
   * events reach peers by session. (Named for the gossip that carried events before the relay.)
   * @default 65536 (at most 1 MiB)
   */
  readonly gossipEventBytes?: number;
  /**
   * Sessions at once with all peers together.
   * @default 32
   */
  readonly maxSessions?: number;
  /**
   * Sessions at once with one peer.
   * @default 2
   */
  readonly maxSessionsPerPeer?: number;
  /**
   * How long a session waits for the peer's next frame.
   * @default 30000
   */
  readonly sessionIdleMs?: number;
  /**
   * Longest a session runs.
   * @default 30 minutes
   */
  readonly sessionDeadlineMs?: number;
  /**
   * Bytes of envelopes sent in parts (larger than `batchBytes`) held by all sessions at once.
   * @default 64 MiB
   */
  readonly largeEventBytes?: number;
  /**
   * Connected peers that have not yet completed a session with us.
   * @default 16
   */
  readonly maxStrangers?: number;
  /**
   * How long a stranger keeps its place before a newer one may take it (when all places are taken).
   * @default 10000
   */
  readonly strangerGraceMs?: number;
  /**
   * How long a refused peer stays refused (the link refuses its connections as long).
   * @default 10 minutes
   */
  readonly banMs?: number;
  /**
   * Delays between syncs while a peer's status keeps differing after sessions (or its clock
   * drifts): doubling from `minMs` to `maxMs`.
   * @default { minMs: 100, maxMs: 60000 }
   */
  readonly resync?: { readonly minMs?: number; readonly maxMs?: number };
  /** Delays between redials of peers worth keeping. @default { minMs: 250, maxMs: 5000 } */
  readonly redial?: RedialOptions;
  /**
   * Peers to keep connected: dialled at start and re-dialled whenever they are not (multiaddrs
   * for libp2p; peer ids on the in-memory network). `Replicator.start` passes its `bootstrap`.
   * @default []
   */
  readonly bootstrap?: readonly string[];
}

/** {@link ReplicatorOptions} with every default filled in and every value checked. */
export interface ResolvedReplicatorOptions {
  readonly statusIntervalMs: number;
  readonly statusDebounceMs: number;
  readonly batchBytes: number;
  readonly window: number;
  readonly reconcile: ReconcileOptions;
  readonly gossipEventBytes: number;
  readonly relayAnnounceMs: number;
  readonly relayWantMs: number;
  readonly statusSyncDelayMs: number;
  readonly maxSessions: number;
  readonly maxSessionsPerPeer: number;
  readonly sessionIdleMs: number;
  readonly sessionDeadlineMs: number;
  readonly largeEventBytes: number;
  readonly maxStrangers: number;
  readonly strangerGraceMs: number;
  readonly banMs: number;
  readonly resyncMinMs: number;
  readonly resyncMaxMs: number;
  readonly redial: RedialOptions;
  readonly bootstrap: readonly string[];
}

const MAX_MS = 2 ** 31 - 1;

function integerOption(name: string, value: number | undefined, fallback: number, min: number, max: number): number {
  const chosen = value ?? fallback;
  if (!Number.isInteger(chosen) || chosen < min || chosen > max) {
    throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `${name} must be an integer in ${min}..${max}, not ${chosen}`);
  }
  return chosen;
}

/** Every option of `reconcile` (the compiler keeps this equal to {@link ReconcileOptions}'s). */
const RECONCILE_OPTION_NAMES: Record<keyof ReconcileOptions, true> = { range: true, branching: true, idListThreshold: true, maxMessageBytes: true };
/** Every option of `resync`. */
const RESYNC_OPTION_NAMES: Record<keyof NonNullable<ReplicatorOptions['resync']>, true> = { minMs: true, maxMs: true };
/** Every option of `redial` (the compiler keeps this equal to {@link RedialOptions}'s). */
const REDIAL_OPTION_NAMES: Record<keyof RedialOptions, true> = { minMs: true, maxMs: true, random: true };

/**
 * Refuses a nested options object (`reconcile`, `resync`, `redial`) that is not an object or has
 * an option it does not know, as the top level's are: `resync: { min: 5 }` left the default in
 * force without a word.
 */
function checkNested(name: string, value: unknown, known: Readonly<Record<string, true>>): void {
  if (value === undefined) return;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `${name} must be an object of options, got ${describeValue(value)}`);
  refuseUnknownOptions(value, known, name);
}

/** Fills in the defaults and checks every value; throws `INVALID_ARGUMENT` on one out of range. */
export function resolveReplicatorOptions(options: ReplicatorOptions): ResolvedReplicatorOptions {
  checkNested('reconcile', options.reconcile, RECONCILE_OPTION_NAMES);
  checkNested('resync', options.resync, RESYNC_OPTION_NAMES);
  checkNested('redial', options.redial, REDIAL_OPTION_NAMES);
  const reconcile = options.reconcile ?? {};
  if (reconcile.maxMessageBytes !== undefined && reconcile.maxMessageBytes < MIN_RECONCILE_BUDGET) {
    throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `reconcile.maxMessageBytes must be at least ${MIN_RECONCILE_BUDGET}`);
  }
  const resyncMinMs = integerOption('resync.minMs', options.resync?.minMs, DEFAULT_RESYNC_MIN_MS, 1, MAX_MS);
  return {
    statusIntervalMs: integerOption('statusIntervalMs', options.statusIntervalMs, DEFAULT_STATUS_INTERVAL_MS, 1, MAX_MS),
    statusDebounceMs: integerOption('statusDebounceMs', options.statusDebounceMs, DEFAULT_STATUS_DEBOUNCE_MS, 0, 60_000),
    batchBytes: integerOption('batchBytes', options.batchBytes, DEFAULT_BATCH_BYTES, 1024, MAX_FRAME_BYTES / 2),
    window: integerOption('window', options.window, DEFAULT_WINDOW, 1, 1024),
    reconcile,
    gossipEventBytes: integerOption('gossipEventBytes', options.gossipEventBytes, DEFAULT_GOSSIP_EVENT_BYTES, 0, MAX_GOSSIP_FRAME_BYTES - 1),
    relayAnnounceMs: integerOption('relayAnnounceMs', options.relayAnnounceMs, DEFAULT_RELAY_ANNOUNCE_MS, 0, 60_000),
    relayWantMs: integerOption('relayWantMs', options.relayWantMs, DEFAULT_RELAY_WANT_MS, 1, MAX_MS),
    statusSyncDelayMs: integerOption('statusSyncDelayMs', options.statusSyncDelayMs, DEFAULT_STATUS_SYNC_DELAY_MS, 0, MAX_MS),
    maxSessions: integerOption('maxSessions', options.maxSessions, DEFAULT_MAX_SESSIONS, 1, 1 << 20),
    maxSessionsPerPeer: integerOption('maxSessionsPerPeer', options.maxSessionsPerPeer, DEFAULT_MAX_SESSIONS_PER_PEER, 1, 1 << 20),
    sessionIdleMs: integerOption('sessionIdleMs', options.sessionIdleMs, DEFAULT_SESSION_IDLE_MS, 1, MAX_MS),
    sessionDeadlineMs: integerOption('sessionDeadlineMs', options.sessionDeadlineMs, DEFAULT_SESSION_DEADLINE_MS, 1, MAX_MS),
    largeEventBytes: integerOption('largeEventBytes', options.largeEventBytes, DEFAULT_LARGE_EVENT_BYTES, 1, 2 ** 40),
    maxStrangers: integerOption('maxStrangers', options.maxStrangers, DEFAULT_MAX_STRANGERS, 0, 1 << 20),
    strangerGraceMs: integerOption('strangerGraceMs', options.strangerGraceMs, STRANGER_GRACE_MS, 0, MAX_MS),
    banMs: integerOption('banMs', options.banMs, DEFAULT_BAN_MS, 0, MAX_MS),
    resyncMinMs,
    resyncMaxMs: integerOption('resync.maxMs', options.resync?.maxMs, DEFAULT_RESYNC_MAX_MS, resyncMinMs, MAX_MS),
    redial: options.redial ?? {},
    bootstrap: options.bootstrap ?? [],
  };
}
