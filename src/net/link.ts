/**
 * The small transport interface the replication logic is written against, so the same session
 * code runs over real libp2p connections and over an in-memory network in tests.
 *
 * Two channels: best-effort broadcast to the swarm (gossip: may be lost, duplicated or
 * reordered), and sessions — reliable, ordered, bidirectional streams of frames with one peer,
 * with back-pressure.
 */

/** Largest frame a session carries; a larger one aborts the session. */
export const MAX_FRAME_BYTES = 4 * 1024 * 1024;

/** A reliable, ordered, bidirectional stream of frames with one remote peer. */
export interface Session {
  /** The remote peer's id. */
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

/** A node's view of the swarm. */
export interface Link {
  /** This node's own peer id. */
  readonly peerId: string;
  /** Best-effort broadcast to every peer (gossip). */
  publish(frame: Uint8Array): void;
  /** Gossip from a peer (`from` is the peer that published it). */
  onGossip(handler: (from: string, frame: Uint8Array) => void): void;
  /** A peer connected or disconnected. */
  onPeer(handler: (event: 'connect' | 'disconnect', peerId: string) => void): void;
  /** A peer opened a session to us. */
  onSession(handler: (session: Session) => void): void;
  /** Opens a session to a connected peer; rejects when the peer cannot be reached. */
  openSession(peerId: string): Promise<Session>;
  /** Drops the connection to a misbehaving peer and refuses it for a while. */
  disconnect(peerId: string, reason: string): Promise<void>;
  /** The peers connected now. */
  connectedPeers(): string[];
  /** Leaves the swarm: aborts every session and closes every connection. */
  stop(): Promise<void>;
}
