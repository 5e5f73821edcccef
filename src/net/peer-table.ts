/**
 * The peers a replicator knows of, in a table of bounded size, and what `peers()` reports of them.
 *
 * A record is made for every peer that connects or gossips, and peer ids are free: the table keeps
 * at most {@link MAX_PEER_RECORDS}, forgetting first the disconnected peer heard from longest ago
 * (a Map in order of last contact, so that peer is found from the front). Connected peers, peers
 * in a session and peers someone waits on are never forgotten; the connection limits bound them.
 *
 * It also decides admission: how many connected peers may be strangers (not yet through a
 * session with us) — see {@link DEFAULT_MAX_STRANGERS}.
 */
import type { Backoff } from './backoff.js';
import { MAX_PEER_RECORDS } from './constants.js';

/**
 * How we stand with a peer:
 * - `connected`: connected, no sync yet;
 * - `syncing`: a session runs;
 * - `synced`: the last comparison of statuses found the same events;
 * - `differs`: statuses differ after a session (see `reason`); retried with a backoff;
 * - `clock-drift`: its cutoff is more than a stride from ours, so its clock (or ours) is off; the
 *   ids after the later cutoff are still reconciled, and it is retried with a backoff;
 * - `disconnected`, `refused` (for a fault: see `reason`; it may come back when its ban ends).
 *
 * `clock-mismatch` is the name `clock-drift` had before; it is no longer reported, and kept in
 * the type so code comparing against it still compiles.
 */
export type PeerState = 'connected' | 'syncing' | 'synced' | 'differs' | 'clock-drift' | 'disconnected' | 'refused' | 'clock-mismatch';

/**
 * One peer as `Replicator.peers()` reports it.
 *
 * Counters count events on the wire, so that two honest peers agree: what one reports as `sent`
 * to the other, the other reports as `received` from it (gossip lost on the way aside). An event
 * counts once per transfer: in a session batch, or in a gossip message (counted as sent to every
 * peer the message was handed to, and as received from its author).
 */
export interface PeerInfo {
  readonly peerId: string;
  readonly state: PeerState;
  /** When we last heard from it (ms), or 0. */
  readonly lastSeen: number;
  /** Events it sent us (sessions and gossip), new to us or not. */
  readonly received: number;
  /** Of those, events we did not have and stored. */
  readonly stored: number;
  /** Events we sent it (sessions and gossip). */
  readonly sent: number;
  /** Sessions completed with it, and reconciliation messages and bytes exchanged in them. */
  readonly sessions: number;
  readonly reconcileMessages: number;
  readonly reconcileBytes: number;
  /** Sessions running with it now. */
  readonly running: number;
  /**
   * Events asked of it in the sessions running now that have not arrived yet: what a progress
   * bar of an initial copy counts down. 0 between sessions.
   */
  readonly expecting: number;
  /** Why it is `refused`, `differs` or `clock-drift`, or what failed last on our side. */
  readonly reason?: string;
  /** When the next sync with it may start (ms), while backing off after a difference or a failure. */
  readonly retryAt?: number;
}

/**
 * A pending `syncedWith` call. A neighbour's answer is the end of a session that started after the
 * call (both sides' final statuses are exchanged once the transfer is done), never a status: one
 * sent before the call may still be on its way, and would report a sync that predates the
 * writes the caller is waiting for. A far peer (not a neighbour) has no session with us: its
 * status, asked for through the swarm, answers.
 */
export interface SyncWaiter {
  /** Called with no argument once synced, with an error on stop. */
  readonly settle: (error?: Error) => void;
  /** {@link PeerRecord.sessionsStarted} at the call: only a later session answers it. */
  readonly after: number;
}

/** What the replicator keeps of a peer. */
export interface PeerRecord {
  readonly peerId: string;
  state: PeerState;
  lastSeen: number;
  received: number;
  stored: number;
  sent: number;
  sessions: number;
  reconcileMessages: number;
  reconcileBytes: number;
  expecting: number;
  reason: string | undefined;
  /** Connected now, since when, and when we last admitted a connection from it. */
  connected: boolean;
  connectedAt: number;
  admittedAt: number;
  /** Went through a session with us, is a bootstrap peer, or we dialled it: never a stranger. */
  trusted: boolean;
  /** Sessions running with it. */
  active: number;
  /** The scheduled sync, if any. */
  timer: NodeJS.Timeout | undefined;
  /**
   * The scheduled sync is for a difference in its status (or parents missing from its pushes)
   * only: a status that agrees cancels it, and it waits while pushes still bring news. Since when
   * (ms).
   */
  timerForStatus: boolean;
  statusSince: number;
  /**
   * The scheduled sync waits for the session the peer starts on connect (see
   * `CONNECT_SESSION_GRACE_MS`): once that one left us in sync, it is not needed.
   */
  afterGrace: boolean;
  /** No session is started with it before this time (backoff). */
  retryAt: number;
  /** Delays of resyncs while statuses keep differing. */
  readonly resync: Backoff;
  /** Pending `syncedWith` calls (see {@link SyncWaiter}). */
  waiters: SyncWaiter[];
  /** Sessions with it started so far, either side first: the latest one's number. */
  sessionsStarted: number;
  /** Events it may still be sent in sessions, as of {@link copyBudgetAt} (see `MAX_FULL_COPIES`). */
  copyBudget: number;
  /** When {@link copyBudget} was last spent; 0: never (the budget is full). */
  copyBudgetAt: number;
  /** Events it pushed to us that we knew, since {@link copiesSince} (see `MAX_RELAY_COPIES`). */
  copies: number;
  copiesSince: number;
  /** While refused: when the refusal ends (ms). */
  refusedUntil: number;
}

/** The table; see the module comment. */
export class PeerTable {
  readonly #records = new Map<string, PeerRecord>();
  readonly #max: number;
  readonly #makeBackoff: () => Backoff;
  readonly #now: () => number;

  constructor(makeBackoff: () => Backoff, max = MAX_PEER_RECORDS, now: () => number = Date.now) {
    this.#makeBackoff = makeBackoff;
    this.#max = Math.max(1, max);
    this.#now = now;
  }

  get size(): number {
    return this.#records.size;
  }

  /** The record of `peerId`, if there is one. */
  get(peerId: string): PeerRecord | undefined {
    return this.#records.get(peerId);
  }

  /** The record of `peerId`, made if needed (which may forget another peer). */
  ensure(peerId: string): PeerRecord {
    const found = this.#records.get(peerId);
    if (found !== undefined) return found;
    const record: PeerRecord = {
      peerId,
      // Until its connection comes up (a record is also made for a far peer, one a syncedWith
      // names, or a stranger being admitted): it said `connected` with no link at all.
      state: 'disconnected',
      lastSeen: 0,
      received: 0,
      stored: 0,
      sent: 0,
      sessions: 0,
      reconcileMessages: 0,
      reconcileBytes: 0,
      expecting: 0,
      reason: undefined,
      connected: false,
      connectedAt: 0,
      admittedAt: 0,
      trusted: false,
      active: 0,
      timer: undefined,
      timerForStatus: false,
      statusSince: 0,
      afterGrace: false,
      retryAt: 0,
      resync: this.#makeBackoff(),
      waiters: [],
      sessionsStarted: 0,
      copyBudget: 0,
      copyBudgetAt: 0,
      copies: 0,
      copiesSince: 0,
      refusedUntil: 0,
    };
    this.#records.set(peerId, record);
    if (this.#records.size > this.#max) this.#evict(record);
    return record;
  }

  /** Notes contact with the peer now (it moves to the back of the forgetting order). */
  touch(record: PeerRecord): void {
    record.lastSeen = this.#now();
    this.#records.delete(record.peerId);
    this.#records.set(record.peerId, record);
  }

  values(): IterableIterator<PeerRecord> {
    return this.#records.values();
  }

  /**
   * Whether a new inbound connection from a stranger fits under `maxStrangers`. When the strangers
   * are all there, the one connected longest, if that is longer than `graceMs`, is returned for
   * the caller to hang up (`evict`), making room: a stranger that holds its place without getting
   * through a session (stalling one, or doing nothing) cannot keep newcomers out for long.
   */
  admitStranger(peerId: string, maxStrangers: number, graceMs: number): { admit: boolean; evict?: string } {
    const now = this.#now();
    let strangers = 0;
    let oldest: PeerRecord | undefined;
    for (const record of this.#records.values()) {
      // A refused peer is on its way out and cannot come back: it holds no place.
      if (record.trusted || record.peerId === peerId || (record.state === 'refused' && record.refusedUntil > now)) continue;
      // Admitted a moment ago but not connected yet still holds its place (for the grace time at
      // most, in case the connection never comes up).
      const present = record.connected || now - record.admittedAt < graceMs;
      if (!present) continue;
      strangers++;
      if (record.connected && now - record.connectedAt > graceMs) {
        if (oldest === undefined || record.connectedAt < oldest.connectedAt) oldest = record;
      }
    }
    if (strangers < maxStrangers) return { admit: true };
    if (oldest !== undefined) return { admit: true, evict: oldest.peerId };
    return { admit: false };
  }

  /**
   * Forgets disconnected, idle peers, longest unheard first, until the table is within its size
   * (never `keep`, the record just made).
   */
  #evict(keep: PeerRecord): void {
    for (const record of this.#records.values()) {
      if (this.#records.size <= this.#max) return;
      if (record === keep || record.connected || record.active > 0 || record.waiters.length > 0 || record.timer !== undefined) continue;
      this.#records.delete(record.peerId);
    }
  }
}

/** The public view of a record. */
export function peerInfo(record: PeerRecord, now: number): PeerInfo {
  const info: PeerInfo = {
    peerId: record.peerId,
    state: record.state,
    lastSeen: record.lastSeen,
    received: record.received,
    stored: record.stored,
    sent: record.sent,
    sessions: record.sessions,
    reconcileMessages: record.reconcileMessages,
    reconcileBytes: record.reconcileBytes,
    running: record.active,
    expecting: record.expecting,
  };
  const extra: { reason?: string; retryAt?: number } = {};
  if (record.reason !== undefined) extra.reason = record.reason;
  if (record.retryAt > now) extra.retryAt = record.retryAt;
  return { ...info, ...extra };
}
