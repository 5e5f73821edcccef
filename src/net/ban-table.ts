/**
 * Peers refused for a while, in a table of bounded size.
 *
 * Peer ids cost nothing to make, so a table that grows with every refused id would be a memory
 * leak an attacker controls. Every ban lasts the same time, so the entry inserted first is the
 * one that expires first: the Map's insertion order is the expiry order, eviction of the oldest
 * is O(1), and expired entries are dropped from the front as they are met.
 */
import { DEFAULT_BAN_MS, MAX_BANS } from './constants.js';

/** Options of a {@link BanTable}. */
export interface BanTableOptions {
  /**
   * How long a ban lasts.
   * @default 10 minutes ({@link DEFAULT_BAN_MS})
   */
  readonly banMs?: number;
  /**
   * Most bans kept; beyond it the oldest is forgotten (that peer may come back early).
   * @default 4096 ({@link MAX_BANS})
   */
  readonly maxEntries?: number;
  /** The clock (tests inject one). @default Date.now */
  readonly now?: () => number;
}

interface Ban {
  readonly until: number;
  readonly reason: string;
}

/** A bounded set of banned peer ids, each with an expiry and a reason. */
export class BanTable {
  readonly #bans = new Map<string, Ban>();
  readonly #banMs: number;
  readonly #maxEntries: number;
  readonly #now: () => number;

  constructor(options: BanTableOptions = {}) {
    this.#banMs = options.banMs ?? DEFAULT_BAN_MS;
    this.#maxEntries = Math.max(1, options.maxEntries ?? MAX_BANS);
    this.#now = options.now ?? Date.now;
  }

  /** How long a ban lasts, in ms. */
  get banMs(): number {
    return this.#banMs;
  }

  /** Bans `peerId` from now for the table's ban time (a second ban restarts it). */
  ban(peerId: string, reason: string): void {
    this.#bans.delete(peerId);
    this.#bans.set(peerId, { until: this.#now() + this.#banMs, reason });
    this.#expire();
    while (this.#bans.size > this.#maxEntries) this.#bans.delete(this.#bans.keys().next().value!);
  }

  /** Whether `peerId` is banned now. */
  has(peerId: string): boolean {
    return this.#current(peerId) !== undefined;
  }

  /** Why `peerId` is banned, or undefined when it is not. */
  reason(peerId: string): string | undefined {
    return this.#current(peerId)?.reason;
  }

  /** When the ban of `peerId` ends (ms), or undefined when it is not banned. */
  until(peerId: string): number | undefined {
    return this.#current(peerId)?.until;
  }

  /** Bans in force (expired ones are dropped first). */
  get size(): number {
    this.#expire();
    return this.#bans.size;
  }

  /** Lifts every ban. */
  clear(): void {
    this.#bans.clear();
  }

  #current(peerId: string): Ban | undefined {
    const ban = this.#bans.get(peerId);
    if (ban === undefined) return undefined;
    if (ban.until > this.#now()) return ban;
    this.#bans.delete(peerId);
    return undefined;
  }

  /** Drops expired bans from the front (the oldest first). */
  #expire(): void {
    const now = this.#now();
    for (const [peerId, ban] of this.#bans) {
      if (ban.until > now) return;
      this.#bans.delete(peerId);
    }
  }
}
