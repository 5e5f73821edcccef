/**
 * Limits on sessions: how many run at once (in all, and per peer), how many excess sessions a
 * peer may try before it is refused, how many reconciliation rounds a set of a given size may
 * take, and a byte budget shared by the sessions for envelopes too large for a batch.
 */
import { MAX_SESSION_STRIKES, ROUNDS_BASE, ROUNDS_PER_LEVEL, SESSION_STRIKE_WINDOW_MS } from './constants.js';

/**
 * Reconciliation messages a session accepts from its peer over a range where the two sides hold
 * `n` ids together (see {@link ROUNDS_BASE}).
 */
export function maxReconcileRounds(n: number): number {
  return ROUNDS_BASE + ROUNDS_PER_LEVEL * Math.ceil(Math.log2(Math.max(0, n) + 2));
}

/** Why a session may not start now. */
export type SessionRefusal = 'total' | 'peer' | 'strangers';

/**
 * Counts running sessions against the total and per-peer caps. Sessions with strangers (peers we
 * neither dialled nor finished a session with) may take half of the total at most, so that peers
 * we trust always find room: strangers that held every slot with sessions kept barely alive
 * (one frame every few seconds) kept a peer we had dialled from syncing until they let go.
 */
export class SessionLimits {
  readonly #maxTotal: number;
  readonly #maxPerPeer: number;
  readonly #maxStrangers: number;
  readonly #perPeer = new Map<string, number>();
  #total = 0;
  #strangers = 0;
  /** Excess session attempts per peer: the start of the window and the count in it. */
  readonly #strikes = new Map<string, { since: number; count: number }>();
  readonly #now: () => number;

  constructor(maxTotal: number, maxPerPeer: number, now: () => number = Date.now) {
    this.#maxTotal = maxTotal;
    this.#maxPerPeer = maxPerPeer;
    this.#maxStrangers = Math.ceil(maxTotal / 2);
    this.#now = now;
  }

  /** Sessions running now. */
  get total(): number {
    return this.#total;
  }

  /** Sessions with strangers running now. */
  get strangers(): number {
    return this.#strangers;
  }

  /** Sessions running with `peerId`. */
  of(peerId: string): number {
    return this.#perPeer.get(peerId) ?? 0;
  }

  /**
   * Whether one more session with `peerId` fits (`stranger`: a peer not trusted yet); undefined
   * if it does, else which cap it hits.
   */
  check(peerId: string, stranger = false): SessionRefusal | undefined {
    if (this.#total >= this.#maxTotal) return 'total';
    if (this.of(peerId) >= this.#maxPerPeer) return 'peer';
    if (stranger && this.#strangers >= this.#maxStrangers) return 'strangers';
    return undefined;
  }

  /** Counts a session with `peerId` as running (after {@link check}, with the same `stranger`). */
  open(peerId: string, stranger = false): void {
    this.#total++;
    if (stranger) this.#strangers++;
    this.#perPeer.set(peerId, this.of(peerId) + 1);
  }

  /** A session with `peerId` ended (`stranger` as it was opened). */
  close(peerId: string, stranger = false): void {
    this.#total--;
    if (stranger) this.#strangers--;
    const left = this.of(peerId) - 1;
    if (left > 0) this.#perPeer.set(peerId, left);
    else this.#perPeer.delete(peerId);
  }

  /**
   * Records that `peerId` tried a session over its cap; true once it has done so more than
   * {@link MAX_SESSION_STRIKES} times within {@link SESSION_STRIKE_WINDOW_MS} (refuse it).
   */
  strike(peerId: string): boolean {
    const now = this.#now();
    let record = this.#strikes.get(peerId);
    if (record === undefined || now - record.since > SESSION_STRIKE_WINDOW_MS) {
      record = { since: now, count: 0 };
      // Only peers striking within the window are kept; old records go as new ones come.
      for (const [id, old] of this.#strikes) {
        if (now - old.since <= SESSION_STRIKE_WINDOW_MS) break;
        this.#strikes.delete(id);
      }
      this.#strikes.delete(peerId);
      this.#strikes.set(peerId, record);
    }
    record.count++;
    return record.count > MAX_SESSION_STRIKES;
  }

  /** Forgets the strikes of a peer (it was refused, or its record dropped). */
  forget(peerId: string): void {
    this.#strikes.delete(peerId);
  }
}

/**
 * A budget of bytes shared by sessions (the large envelopes being received or sent). A holder
 * that wants more than the whole budget may take it when nothing else is held, so an envelope
 * larger than the budget still goes through, alone.
 */
export class ByteBudget {
  readonly #max: number;
  #used = 0;
  #waiters: (() => void)[] = [];

  constructor(max: number) {
    this.#max = max;
  }

  /** Bytes held now. */
  get used(): number {
    return this.#used;
  }

  /** Takes `bytes` if they fit now; false (taking nothing) otherwise. */
  tryTake(bytes: number): boolean {
    if (this.#used !== 0 && this.#used + bytes > this.#max) return false;
    this.#used += bytes;
    return true;
  }

  /** Gives back `bytes` taken earlier; wakes the waiters. */
  release(bytes: number): void {
    this.#used = Math.max(0, this.#used - bytes);
    for (const wake of this.#waiters.splice(0)) wake();
  }

  /** Resolves at the next release (then try again). */
  whenReleased(): Promise<void> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }
}
