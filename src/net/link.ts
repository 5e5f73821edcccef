/**
 * The small transport interface the replication logic is written against, so the same session
 * code runs over real libp2p connections and over an in-memory network in tests.
 *
 * Three channels: best-effort broadcast to the swarm (gossip: may be lost, duplicated or
 * reordered); best-effort frames to one neighbour (direct: the replicator's relay and
 * neighbour statuses, dropped when the link is congested or gone); and sessions — reliable,
 * ordered, bidirectional streams of frames with one peer, with back-pressure.
 */

/** Largest frame a session carries; a larger one aborts the session. */
export const MAX_FRAME_BYTES = 4 * 1024 * 1024;

/** A reliable, ordered, bidirectional stream of frames with one remote peer. */
export interface Session {
  readonly peerId: string;
  /** Queues a frame; resolves when the transport has room for more. Rejects once the session is closed. */
  send(frame: Uint8Array): Promise<void>;
  /** Frames from the peer in order; ends when the peer closes, throws when the session is aborted. */
  [Symbol.asyncIterator](): AsyncIterator<Uint8Array>;
  /** Closes our side gracefully (the peer's iteration ends). */
  close(): Promise<void>;
  /** Tears the session down at once; both sides' iterations throw. */
  abort(reason: Error): void;
}

/**
 * What a gossip validator says of a frame: `accept` (deliver it, and relay it where the transport
 * relays), `reject` (drop it: invalid; the transport may hold it against the sender), `ignore`
 * (drop it quietly: valid, but unwanted now).
 */
export type GossipVerdict = 'accept' | 'reject' | 'ignore';

/** Receives direct frames from neighbours (see {@link Link.onDirect}). */
export interface DirectHandler {
  /** A frame from neighbour `from` (not validated: the handler checks it). */
  frame(from: string, frame: Uint8Array): void;
  /** The neighbour broke the direct channel's framing (e.g. a frame over the size limit); the channel is closed. */
  fault(from: string, error: Error): void;
}

/** Largest direct frame; a larger one is a fault of its sender. */
export const MAX_DIRECT_FRAME_BYTES = 1024 * 1024;

/** Which side opened a connection. */
export type ConnectionDirection = 'inbound' | 'outbound';

/** A node's view of the swarm. */
export interface Link {
  readonly peerId: string;
  /** Best-effort broadcast to every peer (gossip). */
  publish(frame: Uint8Array): void;
  /** Gossip from a neighbour (`from`: the peer it came from), once the validator accepted it. */
  onGossip(handler: (from: string, frame: Uint8Array) => void): void;
  /**
   * Checks every gossip frame before handlers see it and before it is relayed, so invalid gossip
   * never travels further than its first hop. Without one, every frame is accepted. A validator
   * may also take a frame itself and say `ignore`: then it goes no further than its first hop
   * (the replicator does that with statuses meant for neighbours only). `from` is the neighbour
   * the frame came from (gossip is unsigned: the peer that relayed it, not necessarily its author).
   */
  setGossipValidator(validate: (from: string, frame: Uint8Array) => GossipVerdict): void;
  /**
   * Sends a frame to a connected neighbour, best effort: frames to one neighbour arrive in the
   * order sent, or not at all (the link is congested, the connection gone, the peer does not
   * speak the protocol). False when it was dropped at once. At most {@link MAX_DIRECT_FRAME_BYTES}.
   */
  sendDirect(peerId: string, frame: Uint8Array): boolean;
  /** Direct frames from neighbours. */
  onDirect(handler: DirectHandler): void;
  /** A peer connected or disconnected. */
  onPeer(handler: (event: 'connect' | 'disconnect', peerId: string) => void): void;
  /** A peer opened a session to us. */
  onSession(handler: (session: Session) => void): void;
  openSession(peerId: string): Promise<Session>;
  /** Drops the connection to a misbehaving peer and refuses it for a while (the link's ban time). */
  disconnect(peerId: string, reason: string): Promise<void>;
  /** Drops the connection to a peer without refusing it (it may connect again). */
  hangUp(peerId: string): Promise<void>;
  /**
   * Decides, for every new connection in either direction, whether it may proceed (after the
   * link's own checks: bans, allow-list). Without one, every peer is admitted.
   */
  setAdmission(admit: (peerId: string, direction: ConnectionDirection) => boolean): void;
  /**
   * Connects to the peer at `address` (a multiaddr for libp2p, where `/p2p/<id>` is optional; a
   * peer id for the in-memory network) and resolves with its peer id; rejects if nobody answers
   * or the peer is refused.
   */
  dial(address: string): Promise<string>;
  /**
   * Throws `INVALID_ARGUMENT` when `peerId` cannot be a peer of this link (over libp2p, a string
   * that is no peer id); a link without it takes any non-empty string.
   */
  checkPeerId?(peerId: string, where: string): void;
  /** Peers a publish is handed to now (neighbours listening to the swarm's gossip; over libp2p, the gossip mesh). */
  gossipPeers(): string[];
  connectedPeers(): string[];
  stop(): Promise<void>;
}
