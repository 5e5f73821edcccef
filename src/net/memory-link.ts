/**
 * An in-memory swarm for fast, deterministic tests of the replication logic: latency with
 * jitter, gossip loss and reordering, partitions that heal. Sessions stay reliable and ordered
 * (they model streams) with back-pressure from the reader: a sender waits once {@link WINDOW} of its
 * frames are in flight or unread, as a libp2p stream pauses when its reader falls behind. A
 * partition aborts them.
 */
import { ErrorCode, NoatunError } from '../errors.js';
import { type Link, MAX_FRAME_BYTES, type Session } from './link.js';

/** Options of a {@link MemoryNetwork}. */
export interface MemoryNetworkOptions {
  /** Seed of the network's randomness (loss, jitter). */
  readonly seed?: number;
  /** Delivery delay in ms (gossip and session frames). @default 1 */
  readonly latencyMs?: number;
  /** Extra random delay up to this many ms. @default 0 */
  readonly jitterMs?: number;
  /** Probability that a gossip frame to one peer is lost. @default 0 */
  readonly gossipLoss?: number;
  /** Probability that a gossip frame to one peer is delivered twice. @default 0 */
  readonly gossipDuplicate?: number;
}

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Frames in flight or delivered but not yet read, per direction of a session, before `send` waits. */
const WINDOW = 64;

class MemorySession implements Session {
  readonly peerId: string;
  peer!: MemorySession;
  readonly #network: MemoryNetwork;
  readonly #inbox: Uint8Array[] = [];
  #waiting: { resolve: (r: IteratorResult<Uint8Array>) => void; reject: (e: Error) => void } | undefined;
  #ended = false;
  #error: Error | undefined;
  #closed = false;
  /** Our frames the peer has not read yet (in flight or in its inbox). */
  #unread = 0;
  #drained: (() => void)[] = [];

  constructor(network: MemoryNetwork, peerId: string) {
    this.#network = network;
    this.peerId = peerId;
  }

  async send(frame: Uint8Array): Promise<void> {
    if (this.#closed || this.#error !== undefined) throw this.#error ?? new NoatunError(ErrorCode.CLOSED, 'session closed');
    if (frame.length > MAX_FRAME_BYTES) {
      const error = new NoatunError(ErrorCode.BAD_FRAME, `frame of ${frame.length} bytes`);
      this.abort(error);
      throw error;
    }
    const copy = frame.slice();
    this.#unread++;
    // Fixed latency keeps a session's frames in order (timers of equal delay fire in order).
    this.#network.deliverInOrder(() => this.peer.#push(copy));
    if (this.#unread >= WINDOW) await new Promise<void>((resolve) => this.#drained.push(resolve));
  }

  /** The peer read (or dropped) one of our frames. */
  #credit(): void {
    this.#unread--;
    for (const wake of this.#drained.splice(0)) wake();
  }

  #push(frame: Uint8Array): void {
    if (this.#ended || this.#error !== undefined) {
      this.peer.#credit();
      return;
    }
    const waiting = this.#waiting;
    if (waiting !== undefined) {
      this.#waiting = undefined;
      this.peer.#credit();
      waiting.resolve({ value: frame, done: false });
    } else this.#inbox.push(frame);
  }

  #end(): void {
    this.#ended = true;
    const waiting = this.#waiting;
    if (waiting !== undefined && this.#inbox.length === 0) {
      this.#waiting = undefined;
      waiting.resolve({ value: undefined, done: true });
    }
  }

  fail(error: Error): void {
    if (this.#error !== undefined) return;
    this.#error = error;
    this.#closed = true;
    for (const wake of this.#drained.splice(0)) wake();
    const waiting = this.#waiting;
    if (waiting !== undefined) {
      this.#waiting = undefined;
      waiting.reject(error);
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return {
      next: () => {
        if (this.#error !== undefined) return Promise.reject(this.#error);
        const frame = this.#inbox.shift();
        if (frame !== undefined) {
          this.peer.#credit();
          return Promise.resolve({ value: frame, done: false });
        }
        if (this.#ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => {
          this.#waiting = { resolve, reject };
        });
      },
      return: async () => {
        // The reader left: what is queued and what comes is dropped, and the sender never waits for it.
        this.#ended = true;
        const dropped = this.#inbox.splice(0).length;
        for (let i = 0; i < dropped; i++) this.peer.#credit();
        return { value: undefined, done: true };
      },
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#network.deliverInOrder(() => this.peer.#end());
  }

  abort(reason: Error): void {
    this.fail(reason);
    this.peer.fail(reason);
    this.#network.forget(this);
  }
}

class MemoryLink implements Link {
  readonly peerId: string;
  readonly #network: MemoryNetwork;
  gossipHandlers: ((from: string, frame: Uint8Array) => void)[] = [];
  peerHandlers: ((event: 'connect' | 'disconnect', peerId: string) => void)[] = [];
  sessionHandlers: ((session: Session) => void)[] = [];
  stopped = false;

  constructor(network: MemoryNetwork, peerId: string) {
    this.#network = network;
    this.peerId = peerId;
  }

  publish(frame: Uint8Array): void {
    this.#network.gossip(this.peerId, frame);
  }

  onGossip(handler: (from: string, frame: Uint8Array) => void): void {
    this.gossipHandlers.push(handler);
  }

  onPeer(handler: (event: 'connect' | 'disconnect', peerId: string) => void): void {
    this.peerHandlers.push(handler);
  }

  onSession(handler: (session: Session) => void): void {
    this.sessionHandlers.push(handler);
  }

  async openSession(peerId: string): Promise<Session> {
    return this.#network.open(this.peerId, peerId);
  }

  async disconnect(peerId: string, _reason: string): Promise<void> {
    this.#network.ban(this.peerId, peerId);
  }

  connectedPeers(): string[] {
    return this.#network.neighbours(this.peerId);
  }

  async stop(): Promise<void> {
    this.#network.leave(this.peerId);
  }
}

/** The in-memory swarm. Every pair of joined peers is connected unless partitioned or banned. */
export class MemoryNetwork {
  readonly #links = new Map<string, MemoryLink>();
  readonly #random: () => number;
  readonly #latency: number;
  readonly #jitter: number;
  readonly #loss: number;
  readonly #duplicate: number;
  #groups: string[][] | undefined;
  readonly #banned = new Set<string>();
  readonly #sessions = new Set<MemorySession>();
  /** Gossip frames dropped by loss or partitions (for tests). */
  dropped = 0;

  constructor(options: MemoryNetworkOptions = {}) {
    this.#random = mulberry32(options.seed ?? 1);
    this.#latency = options.latencyMs ?? 1;
    this.#jitter = options.jitterMs ?? 0;
    this.#loss = options.gossipLoss ?? 0;
    this.#duplicate = options.gossipDuplicate ?? 0;
  }

  /** Adds a peer; it connects to every reachable peer. */
  join(peerId: string): Link {
    const link = new MemoryLink(this, peerId);
    this.#links.set(peerId, link);
    for (const other of this.#links.values()) {
      if (other !== link && this.#reachable(peerId, other.peerId)) this.#connect(link, other);
    }
    return link;
  }

  /** Splits the swarm into groups that cannot reach each other (peers not named are isolated). */
  partition(...groups: string[][]): void {
    const before = this.#pairs();
    this.#groups = groups;
    this.#update(before);
  }

  /** Ends the partition. */
  heal(): void {
    const before = this.#pairs();
    this.#groups = undefined;
    this.#update(before);
  }

  /** @internal Runs `fn` after the network's latency (and jitter): how every frame travels. */
  deliver(fn: () => void): void {
    const delay = this.#latency + (this.#jitter === 0 ? 0 : this.#random() * this.#jitter);
    setTimeout(fn, delay);
  }

  /** Delivers after the base latency only, so calls are delivered in the order made. */
  deliverInOrder(fn: () => void): void {
    setTimeout(fn, this.#latency);
  }

  /** @internal Broadcasts `frame` from `from` to the peers it reaches, with loss and duplicates. */
  gossip(from: string, frame: Uint8Array): void {
    for (const link of this.#links.values()) {
      if (link.peerId === from || !this.#connected(from, link.peerId)) continue;
      if (this.#random() < this.#loss) {
        this.dropped++;
        continue;
      }
      const copy = frame.slice();
      const copies = this.#random() < this.#duplicate ? 2 : 1;
      for (let i = 0; i < copies; i++) {
        this.deliver(() => {
          if (!link.stopped && this.#connected(from, link.peerId)) for (const handler of link.gossipHandlers) handler(from, copy);
        });
      }
    }
  }

  /** @internal Opens a session from `from` to `to`: {@link Link.openSession} of a memory link. */
  async open(from: string, to: string): Promise<Session> {
    const target = this.#links.get(to);
    if (target === undefined || !this.#connected(from, to)) throw new NoatunError(ErrorCode.CLOSED, `${to} is not reachable from ${from}`);
    const mine = new MemorySession(this, to);
    const theirs = new MemorySession(this, from);
    mine.peer = theirs;
    theirs.peer = mine;
    this.#sessions.add(mine);
    this.#sessions.add(theirs);
    this.deliver(() => {
      if (this.#connected(from, to)) for (const handler of target.sessionHandlers) handler(theirs);
      else mine.abort(new NoatunError(ErrorCode.CLOSED, 'connection lost'));
    });
    return mine;
  }

  /** @internal Called by a session as it ends, so the network stops counting it. */
  forget(session: MemorySession): void {
    this.#sessions.delete(session);
    this.#sessions.delete(session.peer);
  }

  /** @internal Cuts `by` off from `peer` for good: {@link Link.disconnect} of a memory link. */
  ban(by: string, peer: string): void {
    const before = this.#pairs();
    this.#banned.add(`${by}\0${peer}`);
    this.#update(before);
  }

  /** @internal Removes a peer from the swarm: {@link Link.stop} of a memory link. */
  leave(peerId: string): void {
    const before = this.#pairs();
    const link = this.#links.get(peerId);
    if (link !== undefined) link.stopped = true;
    this.#links.delete(peerId);
    this.#update(before);
  }

  /** @internal The peers `peerId` is connected to: {@link Link.connectedPeers} of a memory link. */
  neighbours(peerId: string): string[] {
    return [...this.#links.keys()].filter((other) => other !== peerId && this.#connected(peerId, other));
  }

  #reachable(a: string, b: string): boolean {
    if (this.#banned.has(`${a}\0${b}`) || this.#banned.has(`${b}\0${a}`)) return false;
    if (this.#groups === undefined) return true;
    return this.#groups.some((group) => group.includes(a) && group.includes(b));
  }

  #connected(a: string, b: string): boolean {
    return this.#links.has(a) && this.#links.has(b) && this.#reachable(a, b);
  }

  #pairs(): Set<string> {
    const pairs = new Set<string>();
    const ids = [...this.#links.keys()];
    for (const a of ids) for (const b of ids) if (a < b && this.#connected(a, b)) pairs.add(`${a}\0${b}`);
    return pairs;
  }

  /** Fires connect/disconnect for pairs that changed; aborts sessions across broken pairs. */
  #update(before: Set<string>): void {
    const after = this.#pairs();
    for (const pair of before) {
      if (after.has(pair)) continue;
      const [a, b] = pair.split('\0') as [string, string];
      for (const session of [...this.#sessions]) {
        if ((session.peerId === a && session.peer.peerId === b) || (session.peerId === b && session.peer.peerId === a)) {
          session.abort(new NoatunError(ErrorCode.CLOSED, 'connection lost'));
        }
      }
      this.#notify(a, 'disconnect', b);
      this.#notify(b, 'disconnect', a);
    }
    for (const pair of after) {
      if (before.has(pair)) continue;
      const [a, b] = pair.split('\0') as [string, string];
      this.#notify(a, 'connect', b);
      this.#notify(b, 'connect', a);
    }
  }

  #connect(a: MemoryLink, b: MemoryLink): void {
    this.deliver(() => {
      if (!this.#connected(a.peerId, b.peerId)) return;
      for (const handler of a.peerHandlers) handler('connect', b.peerId);
      for (const handler of b.peerHandlers) handler('connect', a.peerId);
    });
  }

  #notify(peerId: string, event: 'connect' | 'disconnect', other: string): void {
    const link = this.#links.get(peerId);
    if (link === undefined) return;
    this.deliver(() => {
      for (const handler of link.peerHandlers) handler(event, other);
    });
  }
}
