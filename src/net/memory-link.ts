/**
 * An in-memory swarm for fast, deterministic tests of the replication logic: latency with
 * jitter, gossip loss and reordering, partitions that heal. Sessions stay reliable and ordered
 * (they model streams) with back-pressure from the reader: a sender waits once {@link WINDOW} of its
 * frames are in flight or unread, as a libp2p stream pauses when its reader falls behind. A
 * partition aborts them. Direct frames to a neighbour are ordered too, and lost with the gossip
 * loss probability (a congested link drops them).
 *
 * Connections are explicit, as over TCP: by default a joining peer connects to every peer it can
 * reach and a healed partition reconnects (a LAN with discovery); with `autoConnect: false` only
 * `dial` connects, so a peer that restarts (leaves and joins again) stays alone until someone
 * dials it, which is what the redial logic is tested against. Each link applies its bans, its
 * admission check and its gossip validator like the libp2p link.
 */
import { ErrorCode, NoatunError } from '../errors.js';
import { BanTable } from './ban-table.js';
import { type ConnectionDirection, type DirectHandler, type GossipVerdict, type Link, MAX_DIRECT_FRAME_BYTES, MAX_FRAME_BYTES, type Session } from './link.js';

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
  /**
   * Whether peers connect on their own to every peer they can reach, when they join and when a
   * partition heals; when false, only {@link Link.dial} connects.
   * @default true
   */
  readonly autoConnect?: boolean;
  /**
   * How long a peer that a link disconnected (`Link.disconnect`) stays refused by it.
   * @default 10 minutes
   */
  readonly banMs?: number;
  /**
   * Whether a peer that accepts a gossip frame relays it to its other neighbours, once (as
   * gossipsub does; a frame a validator ignores is not relayed). Without it gossip goes one hop.
   * @default false
   */
  readonly relayGossip?: boolean;
}

/** Frames a relaying link remembers having seen (oldest forgotten first). */
const SEEN_FRAMES = 100_000;

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
    // The peer sees the stream reset, as over libp2p, not our reason: our verdict on it (or our
    // own failure) is not its error.
    this.peer.fail(new NoatunError(ErrorCode.CLOSED, `the peer aborted the session: ${reason.message}`));
    this.#network.forget(this);
  }
}

class MemoryLink implements Link {
  readonly peerId: string;
  readonly #network: MemoryNetwork;
  readonly bans: BanTable;
  gossipHandlers: ((from: string, frame: Uint8Array) => void)[] = [];
  directHandlers: DirectHandler[] = [];
  peerHandlers: ((event: 'connect' | 'disconnect', peerId: string) => void)[] = [];
  sessionHandlers: ((session: Session) => void)[] = [];
  validator: ((from: string, frame: Uint8Array) => GossipVerdict) | undefined;
  admission: ((peerId: string, direction: ConnectionDirection) => boolean) | undefined;
  stopped = false;

  constructor(network: MemoryNetwork, peerId: string, banMs: number | undefined) {
    this.#network = network;
    this.peerId = peerId;
    this.bans = new BanTable(banMs === undefined ? {} : { banMs });
  }

  /** Frames seen (when the network relays gossip), by content, oldest first. */
  readonly #seen = new Set<string>();

  /** Marks a gossip frame seen; false if it was already. */
  seen(frame: Uint8Array): boolean {
    const key = Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength).toString('latin1');
    if (this.#seen.has(key)) return false;
    this.#seen.add(key);
    if (this.#seen.size > SEEN_FRAMES) this.#seen.delete(this.#seen.values().next().value!);
    return true;
  }

  /** Whether this link lets `peerId` connect (or be connected to) now. */
  admits(peerId: string, direction: ConnectionDirection): boolean {
    if (this.stopped || this.bans.has(peerId)) return false;
    return this.admission === undefined || this.admission(peerId, direction);
  }

  publish(frame: Uint8Array): void {
    this.#network.gossip(this.peerId, frame);
  }

  onGossip(handler: (from: string, frame: Uint8Array) => void): void {
    this.gossipHandlers.push(handler);
  }

  sendDirect(peerId: string, frame: Uint8Array): boolean {
    if (this.stopped || frame.length > MAX_DIRECT_FRAME_BYTES) return false;
    return this.#network.direct(this.peerId, peerId, frame);
  }

  onDirect(handler: DirectHandler): void {
    this.directHandlers.push(handler);
  }

  setGossipValidator(validate: (from: string, frame: Uint8Array) => GossipVerdict): void {
    this.validator = validate;
  }

  onPeer(handler: (event: 'connect' | 'disconnect', peerId: string) => void): void {
    this.peerHandlers.push(handler);
  }

  onSession(handler: (session: Session) => void): void {
    this.sessionHandlers.push(handler);
  }

  setAdmission(admit: (peerId: string, direction: ConnectionDirection) => boolean): void {
    this.admission = admit;
  }

  async openSession(peerId: string): Promise<Session> {
    return this.#network.open(this.peerId, peerId);
  }

  async disconnect(peerId: string, reason: string): Promise<void> {
    this.bans.ban(peerId, reason);
    this.#network.hangUp(this.peerId, peerId);
  }

  async hangUp(peerId: string): Promise<void> {
    this.#network.hangUp(this.peerId, peerId);
  }

  async dial(address: string): Promise<string> {
    return this.#network.dial(this.peerId, address);
  }

  gossipPeers(): string[] {
    return this.#network.neighbours(this.peerId);
  }

  connectedPeers(): string[] {
    return this.#network.neighbours(this.peerId);
  }

  async stop(): Promise<void> {
    this.#network.leave(this.peerId, this);
  }
}

/** The key of an unordered pair of peers. */
function pairKey(a: string, b: string): string {
  return a < b ? `${a}\0${b}` : `${b}\0${a}`;
}

/** The in-memory swarm. Peers are connected in pairs; see the module comment for how pairs form. */
export class MemoryNetwork {
  readonly #links = new Map<string, MemoryLink>();
  readonly #random: () => number;
  readonly #latency: number;
  readonly #jitter: number;
  readonly #loss: number;
  readonly #duplicate: number;
  readonly #autoConnect: boolean;
  readonly #banMs: number | undefined;
  readonly #relay: boolean;
  #groups: string[][] | undefined;
  /** Connected pairs ({@link pairKey}). */
  readonly #connections = new Set<string>();
  readonly #sessions = new Set<MemorySession>();
  /** Gossip frames dropped by loss or partitions (for tests). */
  dropped = 0;
  /** Gossip frames a receiver's validator rejected (for tests). */
  rejected = 0;
  /** Gossip frames delivered to each peer's validator, by peer id (for tests). */
  readonly gossipReceived = new Map<string, number>();
  /** Direct frames delivered to each peer, by peer id (for tests). */
  readonly directReceived = new Map<string, number>();
  /** Direct frames dropped by loss or a lost connection (for tests). */
  directDropped = 0;

  constructor(options: MemoryNetworkOptions = {}) {
    this.#random = mulberry32(options.seed ?? 1);
    this.#latency = options.latencyMs ?? 1;
    this.#jitter = options.jitterMs ?? 0;
    this.#loss = options.gossipLoss ?? 0;
    this.#duplicate = options.gossipDuplicate ?? 0;
    this.#autoConnect = options.autoConnect ?? true;
    this.#banMs = options.banMs;
    this.#relay = options.relayGossip ?? false;
  }

  /**
   * Adds a peer (a peer id that left may join again: a restart). With `autoConnect` it connects
   * to every peer it can reach, as the dialling side.
   */
  join(peerId: string): Link {
    const link = new MemoryLink(this, peerId, this.#banMs);
    this.#links.get(peerId)?.stop();
    this.#links.set(peerId, link);
    if (this.#autoConnect) for (const other of this.#links.values()) if (other !== link) this.#tryConnect(link, other);
    return link;
  }

  /** Splits the swarm into groups that cannot reach each other (peers not named are isolated). */
  partition(...groups: string[][]): void {
    this.#groups = groups;
    for (const key of [...this.#connections]) {
      const [a, b] = key.split('\0') as [string, string];
      if (!this.#reachable(a, b)) this.#drop(a, b);
    }
  }

  /** Ends the partition; with `autoConnect`, every pair that can reach each other connects again. */
  heal(): void {
    this.#groups = undefined;
    if (!this.#autoConnect) return;
    const links = [...this.#links.values()];
    for (const a of links) for (const b of links) if (a.peerId < b.peerId) this.#tryConnect(a, b);
  }

  deliver(fn: () => void): void {
    const delay = this.#latency + (this.#jitter === 0 ? 0 : this.#random() * this.#jitter);
    setTimeout(fn, delay);
  }

  /** Delivers after the base latency only, so calls are delivered in the order made. */
  deliverInOrder(fn: () => void): void {
    setTimeout(fn, this.#latency);
  }

  gossip(from: string, frame: Uint8Array, except?: string): void {
    if (this.#relay) this.#links.get(from)?.seen(frame);
    for (const link of this.#links.values()) {
      if (link.peerId === from || link.peerId === except || !this.#connected(from, link.peerId)) continue;
      if (this.#random() < this.#loss) {
        this.dropped++;
        continue;
      }
      const copy = frame.slice();
      const copies = this.#random() < this.#duplicate ? 2 : 1;
      for (let i = 0; i < copies; i++) {
        this.deliver(() => {
          if (link.stopped || !this.#connected(from, link.peerId)) return;
          this.gossipReceived.set(link.peerId, (this.gossipReceived.get(link.peerId) ?? 0) + 1);
          // A relaying peer drops a frame it has seen, before its validator (as gossipsub does).
          if (this.#relay && !link.seen(copy)) return;
          const verdict = link.validator?.(from, copy) ?? 'accept';
          if (verdict !== 'accept') {
            if (verdict === 'reject') this.rejected++;
            return;
          }
          for (const handler of link.gossipHandlers) handler(from, copy);
          if (this.#relay) this.gossip(link.peerId, copy, from);
        });
      }
    }
  }

  /**
   * A direct frame from `from` to its neighbour `to`: lost with the gossip loss probability (a
   * congested link drops direct frames), never duplicated, delivered after the base latency in
   * the order sent (a stream, as over libp2p).
   */
  direct(from: string, to: string, frame: Uint8Array): boolean {
    const link = this.#links.get(to);
    if (link === undefined || !this.#connected(from, to)) return false;
    if (this.#random() < this.#loss) {
      this.directDropped++;
      return true;
    }
    const copy = frame.slice();
    this.deliverInOrder(() => {
      if (link.stopped || !this.#connected(from, to)) {
        this.directDropped++;
        return;
      }
      this.directReceived.set(to, (this.directReceived.get(to) ?? 0) + 1);
      for (const handler of link.directHandlers) handler.frame(from, copy);
    });
    return true;
  }

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
      if (this.#connected(from, to) && !target.stopped) for (const handler of target.sessionHandlers) handler(theirs);
      else mine.abort(new NoatunError(ErrorCode.CLOSED, 'connection lost'));
    });
    return mine;
  }

  /** Connects `from` to `to` (a peer id), as `from` dialling; resolves with `to`. */
  async dial(from: string, to: string): Promise<string> {
    const a = this.#links.get(from);
    const b = this.#links.get(to);
    if (a === undefined || b === undefined || !this.#reachable(from, to)) throw new NoatunError(ErrorCode.CLOSED, `${to} is not reachable from ${from}`);
    if (!this.#connected(from, to) && !this.#tryConnect(a, b)) throw new NoatunError(ErrorCode.CLOSED, `${to} refused the connection from ${from}`);
    return to;
  }

  forget(session: MemorySession): void {
    this.#sessions.delete(session);
    this.#sessions.delete(session.peer);
  }

  /** Drops the connection between `a` and `b`, if any. */
  hangUp(a: string, b: string): void {
    if (this.#connections.has(pairKey(a, b))) this.#drop(a, b);
  }

  /** Removes a peer (`link`, if it is still the one joined under that id) and its connections. */
  leave(peerId: string, link?: MemoryLink): void {
    const current = this.#links.get(peerId);
    if (current === undefined || (link !== undefined && current !== link)) {
      if (link !== undefined) link.stopped = true;
      return;
    }
    for (const other of this.neighbours(peerId)) this.#drop(peerId, other);
    current.stopped = true;
    this.#links.delete(peerId);
  }

  neighbours(peerId: string): string[] {
    return [...this.#links.keys()].filter((other) => other !== peerId && this.#connected(peerId, other));
  }

  #reachable(a: string, b: string): boolean {
    if (this.#groups === undefined) return true;
    return this.#groups.some((group) => group.includes(a) && group.includes(b));
  }

  #connected(a: string, b: string): boolean {
    return this.#connections.has(pairKey(a, b));
  }

  /** Connects `dialer` to `listener` if they can reach each other and both admit it. */
  #tryConnect(dialer: MemoryLink, listener: MemoryLink): boolean {
    const key = pairKey(dialer.peerId, listener.peerId);
    if (this.#connections.has(key)) return true;
    if (!this.#reachable(dialer.peerId, listener.peerId)) return false;
    if (!dialer.admits(listener.peerId, 'outbound') || !listener.admits(dialer.peerId, 'inbound')) return false;
    this.#connections.add(key);
    this.#notify(dialer, 'connect', listener.peerId);
    this.#notify(listener, 'connect', dialer.peerId);
    return true;
  }

  /** Disconnects a pair: aborts the sessions between them and tells both. */
  #drop(a: string, b: string): void {
    this.#connections.delete(pairKey(a, b));
    for (const session of [...this.#sessions]) {
      if ((session.peerId === a && session.peer.peerId === b) || (session.peerId === b && session.peer.peerId === a)) {
        session.abort(new NoatunError(ErrorCode.CLOSED, 'connection lost'));
      }
    }
    const linkA = this.#links.get(a);
    const linkB = this.#links.get(b);
    if (linkA !== undefined) this.#notify(linkA, 'disconnect', b);
    if (linkB !== undefined) this.#notify(linkB, 'disconnect', a);
  }

  /** Tells `link` of a connect or disconnect, after the latency and in the order they happened. */
  #notify(link: MemoryLink, event: 'connect' | 'disconnect', other: string): void {
    this.deliverInOrder(() => {
      if (link.stopped) return;
      for (const handler of link.peerHandlers) handler(event, other);
    });
  }
}
