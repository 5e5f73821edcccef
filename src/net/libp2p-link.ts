/**
 * The {@link Link} over a real libp2p 3 node: TCP, Noise, Yamux, Identify, Ping and gossipsub,
 * with bootstrap and (opt-in) mDNS discovery, an optional private network (pre-shared key) and an
 * optional allow-list of peer ids enforced by the connection gater.
 *
 * Sessions are streams of the protocol {@link SYNC_PROTOCOL} carrying length-prefixed frames.
 * libp2p 3 aborts a stream whose reader falls 4 MiB behind; the replicator keeps at most a few
 * acknowledged batches in flight, far below that.
 */
import * as fs from 'node:fs';
import { bootstrap } from '@libp2p/bootstrap';
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys';
import { gossipsub } from '@libp2p/gossipsub';
import { identify } from '@libp2p/identify';
import type { PeerId, PrivateKey, Stream } from '@libp2p/interface';
import { mdns } from '@libp2p/mdns';
import { noise } from '@libp2p/noise';
import { peerIdFromString } from '@libp2p/peer-id';
import { ping } from '@libp2p/ping';
import { generateKey, preSharedKey } from '@libp2p/pnet';
import { tcp } from '@libp2p/tcp';
import { lpStream } from '@libp2p/utils';
import { yamux } from '@libp2p/yamux';
import { multiaddr } from '@multiformats/multiaddr';
import { createLibp2p } from 'libp2p';
import { ErrorCode, NoatunError } from '../errors.js';
import { type Link, MAX_FRAME_BYTES, type Session } from './link.js';

/** The stream protocol of sync sessions. */
export const SYNC_PROTOCOL = '/noatun/sync/1.0.0';

/** How long a peer refused for misbehaving stays refused. */
const BAN_MS = 10 * 60_000;

/** Options of {@link Libp2pLink.start}. */
export interface Libp2pLinkOptions {
  /** Multiaddrs to listen on, e.g. `/ip4/127.0.0.1/tcp/0`. */
  readonly listen: readonly string[];
  /** Multiaddrs (with `/p2p/<id>`) of peers to connect to. */
  readonly bootstrap?: readonly string[];
  /** Discover peers on the LAN by multicast DNS. @default false */
  readonly mdns?: boolean;
  /** Name of the swarm: the gossip topic is `noatun/<topic>`. */
  readonly topic: string;
  /** A private network key (see {@link createSwarmKey}): only peers with the same key connect. */
  readonly psk?: Uint8Array;
  /** Only these peer ids may connect or be dialled. */
  readonly allowPeers?: readonly string[];
  /** The node's identity; a fresh one each start when omitted (see {@link loadOrCreatePrivateKey}). */
  readonly privateKey?: PrivateKey;
}

/** A new private-network key in the swarm.key format (keep it secret; share it with the swarm). */
export function createSwarmKey(): Uint8Array {
  const key = new Uint8Array(95);
  generateKey(key);
  return key;
}

/** The node identity stored in `file`, created (Ed25519) on first use, so the peer id survives restarts. */
export async function loadOrCreatePrivateKey(file: string): Promise<PrivateKey> {
  try {
    return privateKeyFromProtobuf(fs.readFileSync(file));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const key = await generateKeyPair('Ed25519');
  fs.writeFileSync(file, privateKeyToProtobuf(key), { mode: 0o600 });
  return key;
}

/** A session over one libp2p stream. */
class StreamSession implements Session {
  readonly peerId: string;
  readonly #stream: Stream;
  readonly #lp: ReturnType<typeof lpStream<Stream>>;
  #closed = false;

  constructor(stream: Stream, peerId: string) {
    this.#stream = stream;
    this.peerId = peerId;
    this.#lp = lpStream(stream, { maxDataLength: MAX_FRAME_BYTES });
  }

  async send(frame: Uint8Array): Promise<void> {
    if (this.#closed) throw new NoatunError(ErrorCode.CLOSED, 'session closed');
    if (frame.length > MAX_FRAME_BYTES) throw new NoatunError(ErrorCode.BAD_FRAME, `frame of ${frame.length} bytes`);
    await this.#lp.write(frame);
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return {
      next: async () => {
        try {
          const list = await this.#lp.read();
          return { value: list.subarray(), done: false };
        } catch (error) {
          // The peer closed its side: the end of the frames.
          if ((error as Error).name === 'UnexpectedEOFError' && this.#stream.status !== 'aborted') {
            return { value: undefined, done: true };
          }
          if ((error as Error).name === 'InvalidDataLengthError') {
            throw new NoatunError(ErrorCode.BAD_FRAME, `the peer sent a frame over ${MAX_FRAME_BYTES} bytes`, { cause: error });
          }
          throw error;
        }
      },
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#stream.close().catch(() => {});
  }

  abort(reason: Error): void {
    this.#closed = true;
    this.#stream.abort(reason);
  }
}

type Node = Awaited<ReturnType<typeof createNode>>;

function createNode(options: Libp2pLinkOptions, gate: (peer: PeerId) => boolean) {
  const discovery = [];
  if (options.bootstrap !== undefined && options.bootstrap.length > 0) {
    discovery.push(bootstrap({ list: [...options.bootstrap], timeout: 10 }));
  }
  if (options.mdns === true) discovery.push(mdns({ serviceTag: `_noatun-${options.topic}._udp.local` }));
  return createLibp2p({
    ...(options.privateKey === undefined ? {} : { privateKey: options.privateKey }),
    addresses: { listen: [...options.listen] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    ...(options.psk === undefined ? {} : { connectionProtector: preSharedKey({ psk: options.psk }) }),
    connectionGater: {
      // Loopback and private addresses are what this project's swarms use.
      denyDialMultiaddr: () => false,
      denyDialPeer: (peer: PeerId) => !gate(peer),
      denyInboundEncryptedConnection: (peer: PeerId) => !gate(peer),
      denyOutboundEncryptedConnection: (peer: PeerId) => !gate(peer),
    },
    peerDiscovery: discovery,
    services: {
      identify: identify(),
      ping: ping(),
      pubsub: gossipsub({ allowPublishToZeroTopicPeers: true, emitSelf: false }),
    },
  });
}

/** The libp2p link. */
export class Libp2pLink implements Link {
  readonly #node: Node;
  readonly #topic: string;
  readonly #banned: Map<string, number>;
  readonly #peerHandlers: ((event: 'connect' | 'disconnect', peerId: string) => void)[] = [];

  private constructor(node: Node, topic: string, banned: Map<string, number>) {
    this.#node = node;
    this.#topic = topic;
    this.#banned = banned;
    node.addEventListener('peer:connect', (event) => {
      for (const handler of this.#peerHandlers) handler('connect', event.detail.toString());
    });
    node.addEventListener('peer:disconnect', (event) => {
      for (const handler of this.#peerHandlers) handler('disconnect', event.detail.toString());
    });
    node.addEventListener('peer:discovery', (event) => {
      // mDNS finds peers but does not dial them.
      void node.dial(event.detail.id).catch(() => {});
    });
    node.services.pubsub.subscribe(topic);
  }

  /** Starts a node. */
  static async start(options: Libp2pLinkOptions): Promise<Libp2pLink> {
    if (typeof options.topic !== 'string' || options.topic === '') {
      throw new NoatunError(ErrorCode.INVALID_ARGUMENT, 'topic must name the swarm');
    }
    const allowed = options.allowPeers === undefined ? undefined : new Set(options.allowPeers);
    const banned = new Map<string, number>();
    const gate = (peer: PeerId): boolean => {
      const id = peer.toString();
      const until = banned.get(id);
      if (until !== undefined && until > Date.now()) return false;
      return allowed === undefined || allowed.has(id);
    };
    const node = await createNode(options, gate);
    return new Libp2pLink(node, `noatun/${options.topic}`, banned);
  }

  get peerId(): string {
    return this.#node.peerId.toString();
  }

  /** The addresses this node listens on, with `/p2p/<peerId>`. */
  get multiaddrs(): string[] {
    return this.#node.getMultiaddrs().map((address) => address.toString());
  }

  publish(frame: Uint8Array): void {
    void this.#node.services.pubsub.publish(this.#topic, frame).catch(() => {});
  }

  onGossip(handler: (from: string, frame: Uint8Array) => void): void {
    this.#node.services.pubsub.addEventListener('message', (event) => {
      const message = event.detail;
      if (message.topic !== this.#topic || message.type !== 'signed') return;
      handler(message.from.toString(), message.data);
    });
  }

  onPeer(handler: (event: 'connect' | 'disconnect', peerId: string) => void): void {
    this.#peerHandlers.push(handler);
  }

  onSession(handler: (session: Session) => void): void {
    void this.#node.handle(SYNC_PROTOCOL, (stream, connection) => {
      handler(new StreamSession(stream, connection.remotePeer.toString()));
    });
  }

  async openSession(peerId: string): Promise<Session> {
    const stream = await this.#node.dialProtocol(peerIdFromString(peerId), SYNC_PROTOCOL);
    return new StreamSession(stream, peerId);
  }

  /** Connects to a peer at `address` (a multiaddr with `/p2p/<id>`); rejects if it is refused. */
  async dial(address: string): Promise<void> {
    await this.#node.dial(multiaddr(address));
  }

  async disconnect(peerId: string, _reason: string): Promise<void> {
    this.#banned.set(peerId, Date.now() + BAN_MS);
    await this.#node.hangUp(peerIdFromString(peerId)).catch(() => {});
  }

  connectedPeers(): string[] {
    return this.#node.getPeers().map((peer) => peer.toString());
  }

  /** Round-trip time to a connected peer, in ms. */
  async ping(peerId: string): Promise<number> {
    return this.#node.services.ping.ping(peerIdFromString(peerId));
  }

  async stop(): Promise<void> {
    await this.#node.stop();
  }
}
