/**
 * Keeps links up: bootstrap peers, peers dialled by hand and peers that completed a session are
 * re-dialled after they disconnect (or when they cannot be reached at start), with a capped
 * exponential backoff, until they answer. Either side of a broken link redials, so a peer that
 * restarts finds its bootstrap peers again, and its bootstrap peers find it.
 *
 * Bootstrap peers are dialled forever; other peers are forgotten after {@link REDIAL_FORGET_MS}
 * of failed attempts, and at most {@link MAX_REDIAL_PEERS} are remembered (the one heard from
 * longest ago goes first), so peer ids an attacker makes up cannot grow the table or keep this
 * node busy dialling them (and only peers that completed a session are remembered at all).
 */
import { Backoff } from './backoff.js';
import { DEFAULT_REDIAL_MAX_MS, DEFAULT_REDIAL_MIN_MS, MAX_REDIAL_PEERS, REDIAL_FORGET_MS } from './constants.js';

/** Options of a `Redialer`. */
export interface RedialOptions {
  /** First delay before a redial, in ms. @default 250 (`DEFAULT_REDIAL_MIN_MS`) */
  readonly minMs?: number;
  /** Largest delay between redials, in ms. @default 5000 (`DEFAULT_REDIAL_MAX_MS`) */
  readonly maxMs?: number;
  /** Randomness for the jitter (tests inject a seeded one). @default Math.random */
  readonly random?: () => number;
}

interface Target {
  /** What is dialled: a multiaddr, or a peer id (the link then dials the addresses it knows). */
  address: string;
  /** The peer's id, once known. */
  peerId: string | undefined;
  readonly bootstrap: boolean;
  readonly backoff: Backoff;
  timer: NodeJS.Timeout | undefined;
  /** When the current run of failed attempts started (0: not failing). */
  failingSince: number;
  dialling: boolean;
}

/** The peer id in a multiaddr's `/p2p/<id>`, if any (a bare peer id is its own). */
function peerIdIn(address: string): string | undefined {
  if (!address.startsWith('/')) return address;
  const at = address.lastIndexOf('/p2p/');
  return at < 0 ? undefined : address.slice(at + 5).split('/')[0];
}

/** Re-dials the peers worth keeping; see the module comment. */
export class Redialer {
  readonly #dial: (address: string) => Promise<string>;
  readonly #isConnected: (peerId: string) => boolean;
  readonly #minMs: number;
  readonly #maxMs: number;
  readonly #random: () => number;
  readonly #unreachable: (address: string, error: unknown) => void;
  /** Bootstrap targets, by address. */
  readonly #bootstrap = new Map<string, Target>();
  /** Other remembered peers, by peer id, in order of last contact. */
  readonly #recent = new Map<string, Target>();
  #stopped = false;

  /**
   * `dial` connects to an address (resolving with the peer id); `isConnected` says whether a
   * peer is connected now; `unreachable` hears of a bootstrap address that could not be dialled,
   * once per run of failed attempts (the first), so that a wrong address or key is not silent.
   */
  constructor(
    dial: (address: string) => Promise<string>,
    isConnected: (peerId: string) => boolean,
    options: RedialOptions = {},
    unreachable: (address: string, error: unknown) => void = () => {},
  ) {
    this.#dial = dial;
    this.#isConnected = isConnected;
    this.#unreachable = unreachable;
    this.#minMs = options.minMs ?? DEFAULT_REDIAL_MIN_MS;
    this.#maxMs = options.maxMs ?? DEFAULT_REDIAL_MAX_MS;
    this.#random = options.random ?? Math.random;
  }

  #target(address: string, peerId: string | undefined, bootstrap: boolean): Target {
    return {
      address,
      peerId,
      bootstrap,
      backoff: new Backoff({ minMs: this.#minMs, maxMs: this.#maxMs, random: this.#random }),
      timer: undefined,
      failingSince: 0,
      dialling: false,
    };
  }

  /**
   * Adds a bootstrap peer (a multiaddr, or a peer id on the in-memory link) and dials it after the
   * first delay, unless it is connected by then: a link usually dials its bootstrap list as it
   * starts, and a second dial racing the first would open a second connection.
   */
  addBootstrap(address: string): void {
    if (this.#stopped || this.#bootstrap.has(address)) return;
    const target = this.#target(address, peerIdIn(address), true);
    this.#bootstrap.set(address, target);
    this.#schedule(target, target.backoff.next());
  }

  /**
   * Remembers a peer worth redialling (it completed a session, or was dialled by hand at
   * `address`). Its redials dial `address` if given, else the peer id.
   */
  remember(peerId: string, address?: string): void {
    if (this.#stopped || this.#isBootstrap(peerId)) return;
    const found = this.#recent.get(peerId);
    this.#recent.delete(peerId);
    const target = found ?? this.#target(address ?? peerId, peerId, false);
    if (address !== undefined) target.address = address;
    this.#recent.set(peerId, target);
    while (this.#recent.size > MAX_REDIAL_PEERS) {
      const [oldest, old] = this.#recent.entries().next().value!;
      clearTimeout(old.timer);
      this.#recent.delete(oldest);
    }
  }

  /** The peer connected: nothing to redial, and the next failure starts from the first delay. */
  connected(peerId: string): void {
    for (const target of this.#targetsOf(peerId)) {
      clearTimeout(target.timer);
      target.timer = undefined;
      target.backoff.reset();
      target.failingSince = 0;
    }
  }

  /** The peer disconnected: redial it, if it is worth it, after the first delay. */
  disconnected(peerId: string): void {
    for (const target of this.#targetsOf(peerId)) if (target.timer === undefined) this.#schedule(target, target.backoff.next());
  }

  /** Never redial this peer (it was refused); bootstrap addresses stay, but wait for its ban. */
  forget(peerId: string): void {
    const target = this.#recent.get(peerId);
    if (target !== undefined) {
      clearTimeout(target.timer);
      this.#recent.delete(peerId);
    }
  }

  /** Peers remembered for redialling (bootstrap addresses and recent peers). */
  get size(): number {
    return this.#bootstrap.size + this.#recent.size;
  }

  /** Stops every timer; nothing is dialled any more. */
  stop(): void {
    this.#stopped = true;
    for (const target of [...this.#bootstrap.values(), ...this.#recent.values()]) clearTimeout(target.timer);
    this.#bootstrap.clear();
    this.#recent.clear();
  }

  #isBootstrap(peerId: string): boolean {
    for (const target of this.#bootstrap.values()) if (target.peerId === peerId) return true;
    return false;
  }

  #targetsOf(peerId: string): Target[] {
    const targets = [...this.#bootstrap.values()].filter((target) => target.peerId === peerId);
    const recent = this.#recent.get(peerId);
    if (recent !== undefined) targets.push(recent);
    return targets;
  }

  #schedule(target: Target, delayMs: number): void {
    if (this.#stopped) return;
    clearTimeout(target.timer);
    target.timer = setTimeout(() => {
      target.timer = undefined;
      this.#attempt(target);
    }, delayMs);
    target.timer.unref();
  }

  #attempt(target: Target): void {
    if (this.#stopped || target.dialling) return;
    if (target.peerId !== undefined && this.#isConnected(target.peerId)) {
      target.backoff.reset();
      target.failingSince = 0;
      return;
    }
    target.dialling = true;
    this.#dial(target.address).then(
      (peerId) => {
        target.dialling = false;
        target.peerId ??= peerId;
        target.backoff.reset();
        target.failingSince = 0;
      },
      (error: unknown) => {
        target.dialling = false;
        if (this.#stopped) return;
        const now = Date.now();
        if (target.failingSince === 0) {
          target.failingSince = now;
          if (target.bootstrap) this.#unreachable(target.address, error);
        }
        if (!target.bootstrap && now - target.failingSince > REDIAL_FORGET_MS) {
          if (target.peerId !== undefined) this.#recent.delete(target.peerId);
          return;
        }
        this.#schedule(target, target.backoff.next());
      },
    );
  }
}
