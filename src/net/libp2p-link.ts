/**
 * The {@link Link} over a real libp2p 3 node: TCP, Noise, Yamux, Identify, Ping and gossipsub,
 * with bootstrap and (opt-in) mDNS discovery, an optional private network (pre-shared key) and an
 * optional allow-list of peer ids enforced by the connection gater.
 *
 * Sessions are streams of the protocol {@link SYNC_PROTOCOL} carrying varint-length-prefixed
 * frames. Back-pressure runs end to end: when the reader has {@link READ_HIGH_WATER} bytes of
 * frames it has not taken, the stream is paused, Yamux stops granting window, and the sender's
 * `send` waits for drain. libp2p 3 resets a stream whose paused buffer passes
 * `maxReadBufferLength`, so the Yamux window is capped at {@link STREAM_WINDOW} and the buffer
 * limit set above it: a paused stream can never overflow.
 *
 * Direct frames (src/net/direct-channels.ts) go on one long-lived stream of {@link DIRECT_PROTOCOL}
 * per neighbour and direction, opened by the sender with its first frame; best effort (a stream
 * that cannot keep up drops what is beyond its queue).
 *
 * Gossip: unsigned (`StrictNoSign`), with message ids from the content, on a sparse mesh (see
 * the options below): a message is pushed to a few mesh peers and offered by id to others. A peer
 * that connected a moment ago is not known to be subscribed until its subscription arrives (tens
 * of ms on loopback), and gossip published before then does not reach it. The replicator does not
 * depend on it (status is exchanged over a session on connect); {@link Libp2pLink.gossipPeers}
 * tells which peers are subscribed. The replicator's validator runs in gossipsub's topic
 * validator, so a frame it rejects is neither delivered nor relayed, and one it takes and ignores
 * goes no further than its first hop.
 *
 * Limits (all explicit; see src/net/constants.ts): connections in total, per IP address (an IPv6
 * /64) and being set up, new inbound connections per second and address, streams per connection
 * (all protocols, sync streams, direct streams), and bans. Networks named in `trustedNetworks` are exempt from
 * the per-address limits; nothing is exempt by default (loopback used to be: many peers on one
 * machine now ask for it, as the tests that start them do).
 */
import { hash } from 'node:crypto';
import * as fs from 'node:fs';
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys';
import { gossipsub, StrictNoSign } from '@libp2p/gossipsub';
import { identify } from '@libp2p/identify';
import type { PeerId, PrivateKey, Stream, StreamCloseEvent, StreamMessageEvent } from '@libp2p/interface';
import { mdns } from '@libp2p/mdns';
import { noise } from '@libp2p/noise';
import { peerIdFromString } from '@libp2p/peer-id';
import { ping } from '@libp2p/ping';
import { generateKey, preSharedKey } from '@libp2p/pnet';
import { tcp } from '@libp2p/tcp';
import { yamux } from '@libp2p/yamux';
import { multiaddr } from '@multiformats/multiaddr';
import { createLibp2p } from 'libp2p';
import { ErrorCode, NoatunError, quote, systemErrorFrom } from '../errors.js';
import { addressKey, ipOf, TrustedNetworks } from './address.js';
import { BanTable } from './ban-table.js';
import {
  DEFAULT_INBOUND_CONNECTIONS_PER_SECOND,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
  DEFAULT_MAX_PENDING_CONNECTIONS,
  MAX_DIRECT_STREAMS_PER_CONNECTION,
  MAX_GOSSIP_FRAME_BYTES,
  MAX_GOSSIP_OUTBOUND_BYTES,
  MAX_STREAMS_PER_CONNECTION,
  MAX_SYNC_STREAMS_PER_CONNECTION,
} from './constants.js';
import { DIRECT_PROTOCOL, DirectChannels } from './direct-channels.js';
import { FrameType } from './frames.js';
import { type ConnectionDirection, type DirectHandler, type GossipVerdict, type Link, MAX_FRAME_BYTES, type Session } from './link.js';
import { FrameDecoder, prefixed } from './stream-framing.js';
import { describeValue } from '../view/composite.js';

/** The stream protocol of sync sessions. */
export const SYNC_PROTOCOL = '/noatun/sync/1.0.0';

/**
 * The loopback networks (IPv4 and IPv6), for `trustedNetworks` when many peers run on one machine
 * (tests, several processes of one user).
 */
export const LOOPBACK_NETWORKS: readonly string[] = ['/ip4/127.0.0.0/ipcidr/8', '/ip6/::1/ipcidr/128'];

/** Bytes of received frames the reader has not taken yet above which the stream is paused. */
const READ_HIGH_WATER = 1024 * 1024;
/** The stream resumes once the untaken frames fall to this many bytes. */
const READ_LOW_WATER = 256 * 1024;
/** Largest Yamux receive window per stream (libp2p's default, 16 MiB, could overflow a paused stream's 4 MiB buffer). */
const STREAM_WINDOW = 4 * 1024 * 1024;
/** A paused stream buffers at most one window; twice that never resets it. */
const STREAM_READ_BUFFER = 2 * STREAM_WINDOW;
/**
 * How often libp2p pings each connected peer, and the least time it waits for the answer before it
 * drops the connection. A peer busy for seconds (a large ingest, a rebuild) must keep its links; a
 * dead one is found by TCP and Yamux's keepalive as well.
 */
const PING_INTERVAL_MS = 30_000;
const PING_MIN_TIMEOUT_MS = 30_000;
/** Room for gossipsub's own framing around the largest gossip frame we accept. */
const GOSSIP_RPC_OVERHEAD = 64 * 1024;
/** Inbound sessions kept while no `onSession` handler is registered yet; more are refused. */
const MAX_PENDING_SESSIONS = 16;

/** Options of {@link Libp2pLink.start}. */
export interface Libp2pLinkOptions {
  /** Multiaddrs to listen on, e.g. `/ip4/127.0.0.1/tcp/0`. */
  readonly listen: readonly string[];
  /** Multiaddrs (with `/p2p/<id>`) of peers to connect to. */
  readonly bootstrap?: readonly string[];
  /** Discover peers on the LAN by multicast DNS. @default false */
  readonly mdns?: boolean;
  /** Name of the swarm: the gossip topic is `noatun/2/<topic>` (2: unsigned gossip, see the module comment). */
  readonly topic: string;
  /** A private network key (see {@link createSwarmKey}): only peers with the same key connect. */
  readonly psk?: Uint8Array;
  /** Only these peer ids may connect or be dialled. */
  readonly allowPeers?: readonly string[];
  /** The node's identity; a fresh one each start when omitted (see {@link loadOrCreatePrivateKey}). */
  readonly privateKey?: PrivateKey;
  /**
   * Most connections; inbound ones beyond it are refused before any handshake.
   * @default 128 (`DEFAULT_MAX_CONNECTIONS`)
   */
  readonly maxConnections?: number;
  /**
   * Most inbound connections from one IP address (IPv6: one /64) at once.
   * @default 8 (`DEFAULT_MAX_CONNECTIONS_PER_ADDRESS`)
   */
  readonly maxConnectionsPerAddress?: number;
  /**
   * Most inbound connections in their handshake at once.
   * @default 16 (`DEFAULT_MAX_PENDING_CONNECTIONS`)
   */
  readonly maxPendingConnections?: number;
  /**
   * New inbound connections accepted per second from one IP address.
   * @default 5 (`DEFAULT_INBOUND_CONNECTIONS_PER_SECOND`)
   */
  readonly inboundConnectionsPerSecond?: number;
  /**
   * Networks exempt from the per-address limits and from `maxConnections`, as
   * `/ip4/<net>/ipcidr/<bits>` multiaddrs (e.g. {@link LOOPBACK_NETWORKS}).
   * @default [] (none)
   */
  readonly trustedNetworks?: readonly string[];
  /**
   * How long a peer refused for a fault (`disconnect`) stays refused.
   * @default 10 minutes
   */
  readonly banMs?: number;
}

/** A new private-network key in the swarm.key format (keep it secret; share it with the swarm). */
export function createSwarmKey(): Uint8Array {
  const key = new Uint8Array(95);
  generateKey(key);
  return key;
}

/** The text of a swarm key: the format's two header lines, then 32 bytes in hex. */
const SWARM_KEY = /^\/key\/swarm\/psk\/1\.0\.0\/\r?\n\/base16\/\r?\n[0-9a-fA-F]{64}\s*$/;

/**
 * Checks that `psk` is a private network key in the swarm.key format (what {@link createSwarmKey}
 * makes and `ipfs`/`libp2p` tools write). Throws `KEY_INVALID` otherwise: a key that libp2p would
 * silently misread would only show later as peers that never connect.
 */
export function checkSwarmKey(psk: Uint8Array): void {
  const text = new TextDecoder('utf-8', { fatal: false }).decode(psk);
  if (!SWARM_KEY.test(text)) {
    throw new NoatunError(
      ErrorCode.KEY_INVALID,
      'not a private swarm key: expected "/key/swarm/psk/1.0.0/", "/base16/" and 64 hex digits on three lines',
    );
  }
}

/**
 * The node identity stored in `file`, created (Ed25519) on first use, so the peer id survives
 * restarts. A file that holds something else, or a directory in its place, is `KEY_INVALID`,
 * never overwritten; a file that cannot be read or written (no permission, a missing parent
 * directory) is `SYSTEM_CALL_FAILED`.
 */
export async function loadOrCreatePrivateKey(file: string): Promise<PrivateKey> {
  let bytes: Uint8Array | undefined;
  try {
    bytes = fs.readFileSync(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    // (Node's raw EISDIR came out of `noatun peer` as a stack trace.)
    if (code === 'EISDIR') throw new NoatunError(ErrorCode.KEY_INVALID, `${file} is a directory, not a libp2p private key`);
    if (code !== 'ENOENT') throw systemErrorFrom(error, 'read', file);
  }
  if (bytes !== undefined) {
    try {
      return privateKeyFromProtobuf(bytes);
    } catch (error) {
      throw new NoatunError(ErrorCode.KEY_INVALID, `${file} is not a libp2p private key (${(error as Error).message})`);
    }
  }
  const key = await generateKeyPair('Ed25519');
  try {
    fs.writeFileSync(file, privateKeyToProtobuf(key), { mode: 0o600 });
  } catch (error) {
    throw systemErrorFrom(error, 'write', file);
  }
  return key;
}

/** A session over one libp2p stream. */
class StreamSession implements Session {
  readonly peerId: string;
  readonly #stream: Stream;
  readonly #decoder = new FrameDecoder();
  readonly #frames: Uint8Array[] = [];
  #queuedBytes = 0;
  #waiting: { resolve: (r: IteratorResult<Uint8Array>) => void; reject: (e: Error) => void } | undefined;
  /** The peer closed its side and every frame was decoded. */
  #ended = false;
  /** Our reader stopped iterating: later frames are dropped. */
  #discard = false;
  #writeClosed = false;
  #failure: Error | undefined;
  /** Inside `stream.resume()`, which re-dispatches buffered data to {@link #receive}. */
  #resuming = false;
  readonly #onFinished: (session: StreamSession) => void;

  constructor(stream: Stream, peerId: string, onFinished: (session: StreamSession) => void) {
    this.#stream = stream;
    this.peerId = peerId;
    this.#onFinished = onFinished;
    stream.addEventListener('message', (event) => this.#receive(event.data));
    stream.addEventListener('end', () => {
      // A reset or abort also ends the readable side, just before its 'close' event carries the error.
      if (stream.status === 'reset' || stream.status === 'aborted') return;
      if (this.#decoder.inFrame) {
        this.#fail(new NoatunError(ErrorCode.BAD_FRAME, 'the peer closed the session inside a frame'));
        return;
      }
      // Told to the reader a turn later: when the connection goes (the peer hung up on us), its
      // streams may end as if finished before the reset, or the disconnect that aborts them, is
      // seen; then the reader gets that error instead of a session that looks complete.
      setImmediate(() => {
        if (this.#failure !== undefined) return;
        this.#ended = true;
        this.#wake();
      });
    });
    stream.addEventListener('close', (event) => {
      if (event.error !== undefined) this.#fail(new NoatunError(ErrorCode.CLOSED, `session aborted: ${event.error.message}`, { cause: event.error }));
      this.#onFinished(this);
    });
  }

  #receive(data: StreamMessageEvent['data']): void {
    if (this.#failure !== undefined || this.#discard) return;
    try {
      for (const chunk of data instanceof Uint8Array ? [data] : data) {
        this.#decoder.push(chunk, (frame) => {
          this.#frames.push(frame);
          this.#queuedBytes += frame.length;
        });
      }
    } catch (error) {
      this.abort(error as NoatunError);
      return;
    }
    this.#maybePause();
    this.#wake();
  }

  #maybePause(): void {
    // Not from inside resume(): it re-enables Yamux window updates after dispatching, which
    // would undo a pause made during that dispatch while the stream still reports 'paused'.
    if (!this.#resuming && this.#queuedBytes > READ_HIGH_WATER && this.#stream.readStatus === 'readable') this.#stream.pause();
  }

  #resume(): void {
    if (this.#stream.readStatus !== 'paused') return;
    this.#resuming = true;
    try {
      this.#stream.resume();
    } finally {
      this.#resuming = false;
    }
    this.#maybePause();
  }

  #wake(): void {
    const waiting = this.#waiting;
    if (waiting === undefined) return;
    if (this.#failure !== undefined) {
      this.#waiting = undefined;
      waiting.reject(this.#failure);
      return;
    }
    const frame = this.#take();
    if (frame !== undefined) {
      this.#waiting = undefined;
      waiting.resolve({ value: frame, done: false });
    } else if (this.#ended) {
      this.#waiting = undefined;
      waiting.resolve({ value: undefined, done: true });
    }
  }

  #take(): Uint8Array | undefined {
    const frame = this.#frames.shift();
    if (frame === undefined) return undefined;
    this.#queuedBytes -= frame.length;
    if (this.#queuedBytes <= READ_LOW_WATER) this.#resume();
    return frame;
  }

  #fail(error: Error): void {
    if (this.#failure !== undefined) return;
    this.#failure = error;
    this.#frames.length = 0;
    this.#queuedBytes = 0;
    this.#wake();
  }

  async send(frame: Uint8Array): Promise<void> {
    if (this.#failure !== undefined) throw this.#failure;
    if (this.#writeClosed) throw new NoatunError(ErrorCode.CLOSED, 'session closed');
    if (frame.length > MAX_FRAME_BYTES) throw new NoatunError(ErrorCode.BAD_FRAME, `frame of ${frame.length} bytes`);
    // One buffer per frame (prefix + copy): the caller may reuse its frame once send resolves.
    const bytes = prefixed(frame);
    try {
      if (!this.#stream.send(bytes)) await drained(this.#stream);
    } catch (cause) {
      throw this.#failure ?? new NoatunError(ErrorCode.CLOSED, 'session closed', { cause });
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return {
      next: () => {
        if (this.#failure !== undefined) return Promise.reject(this.#failure);
        const frame = this.#take();
        if (frame !== undefined) return Promise.resolve({ value: frame, done: false });
        if (this.#ended || this.#discard) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => {
          this.#waiting = { resolve, reject };
        });
      },
      return: async () => {
        // The reader left: drop what is queued and what comes, never pause for it again.
        this.#discard = true;
        this.#frames.length = 0;
        this.#queuedBytes = 0;
        this.#resume();
        return { value: undefined, done: true };
      },
    };
  }

  /** Closes our side once everything sent has been handed to the transport; the peer's iteration then ends. */
  async close(): Promise<void> {
    if (this.#writeClosed || this.#failure !== undefined) return;
    this.#writeClosed = true;
    await this.#stream.close().catch(() => {});
  }

  abort(reason: Error): void {
    this.#writeClosed = true;
    this.#fail(reason);
    if (this.#stream.status === 'open' || this.#stream.status === 'closing') this.#stream.abort(reason);
  }
}

/**
 * Resolves at the stream's next 'drain' event; rejects if it closes first. (`stream.onDrain()` of
 * @libp2p/utils 7.4 keeps its first promise once resolved, so after the first drain it resolves
 * at once: a sender awaiting it is never held back again and, looping on microtasks alone,
 * starves the event loop while the write buffer grows without bound.)
 */
function drained(stream: Stream): Promise<void> {
  return new Promise((resolve, reject) => {
    const onDrain = (): void => {
      stream.removeEventListener('close', onClose);
      resolve();
    };
    const onClose = (event: StreamCloseEvent): void => {
      stream.removeEventListener('drain', onDrain);
      reject(event.error ?? new NoatunError(ErrorCode.CLOSED, 'session closed'));
    };
    stream.addEventListener('drain', onDrain, { once: true });
    stream.addEventListener('close', onClose, { once: true });
  });
}

type Node = Awaited<ReturnType<typeof createNode>>;

/**
 * Refuses link options that cannot work (`INVALID_ARGUMENT`; a swarm key that is not one,
 * `KEY_INVALID`): what {@link Libp2pLink.start} checks before a node starts, for a caller that
 * has more to set up first and must not leave it half done (the CLI opens a database).
 */
export function checkLinkOptions(options: Libp2pLinkOptions): void {
  if (options === null || typeof options !== 'object') {
    throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `the link takes an options object, got ${String(options)}`);
  }
  if (typeof options.topic !== 'string' || options.topic === '') {
    throw new NoatunError(ErrorCode.INVALID_ARGUMENT, 'topic must name the swarm');
  }
  if (options.topic.length > MAX_TOPIC_LENGTH) {
    throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `topic must be at most ${MAX_TOPIC_LENGTH} characters, got ${options.topic.length}`);
  }
  checkLinkOptionKinds(options);
  // A peer id that does not parse would admit nobody, without a word: refused here.
  if (options.allowPeers !== undefined) for (const id of options.allowPeers) checkPeerId(id, 'allowPeers');
  for (const address of [...options.listen, ...(options.bootstrap ?? [])]) checkAddress(address);
  // A bootstrap address no dial can use (UDP, a /p2p/ part that is no peer id) was dialled again
  // and again for as long as the node ran.
  for (const address of options.bootstrap ?? []) checkDialAddress(address, 'bootstrap');
  // libp2p's own errors for these came out raw (no code), after a database was made.
  const listening = new Set<string>();
  for (const address of options.listen) {
    const names = multiaddr(address)
      .getComponents()
      .map((component) => component.name);
    if (names.length !== 2 || !['ip4', 'ip6', 'dns4', 'dns6', 'dns'].includes(names[0]!) || names[1] !== 'tcp') {
      throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `cannot listen on ${address}: peers listen on TCP only (/ip4/<address>/tcp/<port>, or /ip6/…)`);
    }
    if (listening.has(address)) throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `${address} is given twice to listen on`);
    listening.add(address);
  }
  if (options.psk !== undefined) checkSwarmKey(options.psk);
}

/**
 * Refuses options of the wrong kind with `INVALID_ARGUMENT` before libp2p meets them: a string
 * where a list is wanted was walked letter by letter (`listen: '/ip4/…'` gave "not a multiaddr:
 * "/""), a missing `listen`, a key that is not one, or a limit given as a string, came out as
 * libp2p's or the language's own errors, and `mdns: 'no'` was taken as true.
 */
function checkLinkOptionKinds(options: Libp2pLinkOptions): void {
  const fail = (message: string) => {
    throw new NoatunError(ErrorCode.INVALID_ARGUMENT, message);
  };
  const given = options as unknown as Record<string, unknown>;
  for (const name of ['listen', 'bootstrap', 'allowPeers', 'trustedNetworks']) {
    const value = given[name];
    if (value === undefined && name !== 'listen') continue;
    if (!Array.isArray(value)) fail(`${name} must be a list of strings${name === 'listen' ? ' (multiaddrs to listen on; [] for none)' : ''}, got ${describeValue(value)}`);
    if ((value as unknown[]).some((item) => typeof item !== 'string')) fail(`${name} must be a list of strings`);
  }
  if (given.mdns !== undefined && typeof given.mdns !== 'boolean') fail(`mdns must be true or false, got ${describeValue(given.mdns)}`);
  if (given.psk !== undefined && !(given.psk instanceof Uint8Array)) fail(`psk must be the bytes of a swarm key file (see createSwarmKey), got ${describeValue(given.psk)}`);
  const key = given.privateKey as { type?: unknown; raw?: unknown } | undefined;
  if (key !== undefined && (key === null || typeof key !== 'object' || typeof key.type !== 'string' || !(key.raw instanceof Uint8Array))) {
    fail('privateKey must be a libp2p private key (see loadOrCreatePrivateKey)');
  }
  for (const name of ['maxConnections', 'maxConnectionsPerAddress', 'maxPendingConnections', 'inboundConnectionsPerSecond', 'banMs']) {
    const value = given[name];
    if (value !== undefined && !(Number.isSafeInteger(value) && (value as number) > 0)) fail(`${name} must be a whole number greater than 0, got ${describeValue(value)}`);
  }
}

/** Throws `INVALID_ARGUMENT` for a value that is not a libp2p peer id (`12D3Koo…`), naming where it was given. */
function checkPeerId(id: unknown, where: string): void {
  try {
    if (typeof id !== 'string') throw new Error(`a ${typeof id}`);
    peerIdFromString(id);
  } catch (error) {
    throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `${where}: not a peer id: ${quote(String(id))} (${(error as Error).message})`);
  }
}

/** The longest topic (it names the swarm's gossip topic and protocols, which every message carries). */
const MAX_TOPIC_LENGTH = 200;

/** Throws `INVALID_ARGUMENT` for a string that is not a multiaddr, naming it (libp2p's own error does not). */
export function checkAddress(address: string): void {
  try {
    multiaddr(address);
  } catch (error) {
    throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `not a multiaddr: ${quote(address)} (${(error as Error).message})`);
  }
}

/** What names the host of a TCP address (an `ip6zone` may come before an `ip6`). */
const TCP_HOSTS = ['ip4', 'ip6', 'dns4', 'dns6', 'dns'];

/**
 * Throws `INVALID_ARGUMENT` for a multiaddr that no dial of this node can use, naming `where` it
 * was given: anything but a host and a TCP port (`/ip4/<address>/tcp/<port>`, or `/ip6`, `/dns4`,
 * `/dns6`, `/dns`) or a `/dnsaddr/<name>` (which libp2p resolves to such addresses), each with an
 * optional `/p2p/<peer id>` that must be one. The node has only the TCP transport, and libp2p's
 * own refusals of such an address came without a code, after every retry.
 */
export function checkDialAddress(address: string, where: string): void {
  checkAddress(address);
  const components = multiaddr(address).getComponents();
  const last = components.at(-1);
  if (last?.name === 'p2p') {
    try {
      peerIdFromString(String(last.value));
    } catch (error) {
      throw new NoatunError(
        ErrorCode.INVALID_ARGUMENT,
        `${where}: ${quote(address)} ends in /p2p/ and something that is not a peer id: ${quote(String(last.value))} (${(error as Error).message})`,
      );
    }
    components.pop();
  }
  const names = components.map((component) => component.name);
  if (names[0] === 'ip6zone' && names[1] === 'ip6') names.shift();
  const tcp = names.length === 2 && TCP_HOSTS.includes(names[0]!) && names[1] === 'tcp';
  const dnsaddr = names.length === 1 && names[0] === 'dnsaddr';
  if (!tcp && !dnsaddr) {
    throw new NoatunError(
      ErrorCode.INVALID_ARGUMENT,
      `${where}: cannot dial ${quote(address)}: peers are reached over TCP only (/ip4/<address>/tcp/<port>, or /ip6/…, /dns4/…, /dnsaddr/<name>; then /p2p/<peer id> if known)`,
    );
  }
}

/** The checks the connection gater asks of the link. */
interface Gate {
  /** Whether the peer may connect in this direction (bans, allow-list, the replicator's admission). */
  admits(peer: PeerId, direction: ConnectionDirection): boolean;
  /** Whether one more inbound connection from this address is within the per-address limit. */
  admitsAddress(address: Parameters<typeof ipOf>[0]): boolean;
}

function createNode(options: Libp2pLinkOptions, gate: Gate) {
  const discovery = [];
  // Bootstrap addresses are dialled by the link itself (and re-dialled by the replicator), with or
  // without a peer id; the bootstrap module dials once and needs the id.
  if (options.mdns === true) discovery.push(mdns({ serviceTag: `_noatun-${options.topic}._udp.local` }));
  const streams = { maxInboundStreams: MAX_STREAMS_PER_CONNECTION, maxOutboundStreams: MAX_STREAMS_PER_CONNECTION };
  return createLibp2p({
    ...(options.privateKey === undefined ? {} : { privateKey: options.privateKey }),
    addresses: { listen: [...options.listen] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux({ ...streams, streamOptions: { maxStreamWindowSize: STREAM_WINDOW, maxReadBufferLength: STREAM_READ_BUFFER } })],
    ...(options.psk === undefined ? {} : { connectionProtector: preSharedKey({ psk: options.psk }) }),
    connectionManager: {
      maxConnections: options.maxConnections ?? DEFAULT_MAX_CONNECTIONS,
      maxIncomingPendingConnections: options.maxPendingConnections ?? DEFAULT_MAX_PENDING_CONNECTIONS,
      inboundConnectionThreshold: options.inboundConnectionsPerSecond ?? DEFAULT_INBOUND_CONNECTIONS_PER_SECOND,
      allow: [...(options.trustedNetworks ?? [])],
    },
    connectionGater: {
      // Loopback and private addresses are what this project's swarms use.
      denyDialMultiaddr: () => false,
      denyInboundConnection: (connection) => !gate.admitsAddress(connection.remoteAddr),
      denyDialPeer: (peer: PeerId) => !gate.admits(peer, 'outbound'),
      denyInboundEncryptedConnection: (peer: PeerId) => !gate.admits(peer, 'inbound'),
      denyOutboundEncryptedConnection: (peer: PeerId) => !gate.admits(peer, 'outbound'),
    },
    peerDiscovery: discovery,
    services: {
      identify: identify(),
      ping: ping(),
      pubsub: gossipsub({
        allowPublishToZeroTopicPeers: true,
        emitSelf: false,
        allowedTopics: [gossipTopic(options.topic)],
        maxInboundDataLength: MAX_GOSSIP_FRAME_BYTES + GOSSIP_RPC_OVERHEAD,
        maxOutboundBufferSize: MAX_GOSSIP_OUTBOUND_BYTES,
        // Events are content-addressed and verified by every receiver; who relayed a frame is known
        // from the connection. A signature, key, sender and sequence number per message would more
        // than double a small event on the wire.
        globalSignaturePolicy: StrictNoSign,
        msgIdFn: gossipMessageId,
        // A sparse mesh: each message is pushed to 1–3 mesh peers (gossipsub's defaults are 4–12)
        // and offered by id (IHAVE) to others, and publishing goes to the mesh, not to every
        // subscribed peer. Swarms here are sparse (a few connections per peer), where the defaults
        // made the mesh every connection, so every event crossed every link, often both ways: 6.1
        // copies of the envelope's bytes per delivered event at 8 peers, against 3.4 with these
        // (bench/swarm.ts). Sessions repair what gossip misses (statuses differ, peers sync).
        D: 2,
        Dlo: 1,
        Dhi: 3,
        Dout: 0,
        floodPublish: false,
      }),
    },
    // A peer whose event loop is busy (a large ingest, a rebuild) answers pings late: that must
    // not cost it its connections. Yamux's keepalive and TCP find dead links; the ping is a check.
    connectionMonitor: { pingInterval: PING_INTERVAL_MS, pingTimeout: { minTimeout: PING_MIN_TIMEOUT_MS, maxTimeout: 2 * PING_MIN_TIMEOUT_MS } },
  });
}

/** The gossip topic of swarm `topic`; 2 is the gossip version (unsigned since issue 17). */
function gossipTopic(topic: string): string {
  return `noatun/2/${topic}`;
}

/**
 * A gossip message's id, from its content: an event's own id (so a copy of the same event is the
 * same message wherever it comes from), else a hash of the frame.
 */
function gossipMessageId(message: { data: Uint8Array }): Uint8Array {
  const data = message.data;
  // An EVENT frame: the type byte, then the envelope (version byte, 16-byte id, ...).
  if (data.length >= 18 && data[0] === FrameType.EVENT) return data.slice(2, 18);
  return hash('sha256', data, 'buffer').subarray(0, 20);
}

/** The libp2p link. */
export class Libp2pLink implements Link {
  readonly #node: Node;
  readonly #topic: string;
  readonly #bans: BanTable;
  readonly #peerHandlers: ((event: 'connect' | 'disconnect', peerId: string) => void)[] = [];
  readonly #sessionHandlers: ((session: Session) => void)[] = [];
  /** Inbound sessions that arrived before the first `onSession` handler. */
  readonly #pending: StreamSession[] = [];
  /** Open sessions, so a disconnect or stop can abort them (a graceful hang-up would end them cleanly). */
  readonly #sessions = new Set<StreamSession>();
  readonly #forget = (session: StreamSession): void => void this.#sessions.delete(session);
  /** Direct frames to and from neighbours (see {@link Link.sendDirect}). */
  readonly #direct: DirectChannels;

  private constructor(node: Node, topic: string, bans: BanTable) {
    this.#node = node;
    this.#topic = topic;
    this.#bans = bans;
    // On the connection there is: a direct frame never dials (a frame sent as a peer leaves must
    // not bring it back).
    this.#direct = new DirectChannels(async (peerId) => {
      const connection = node.getConnections(peerIdFromString(peerId)).find((c) => c.status === 'open');
      if (connection === undefined) throw new NoatunError(ErrorCode.CLOSED, `not connected to ${peerId}`);
      return connection.newStream(DIRECT_PROTOCOL);
    });
    node.addEventListener('peer:connect', (event) => {
      // A new connection: direct frames try again at once, whatever failed before.
      this.#direct.forget(event.detail.toString());
      for (const handler of this.#peerHandlers) handler('connect', event.detail.toString());
    });
    node.addEventListener('peer:disconnect', (event) => {
      const peerId = event.detail.toString();
      this.#abortSessions(peerId, 'connection lost');
      this.#direct.forget(peerId);
      for (const handler of this.#peerHandlers) handler('disconnect', peerId);
    });
    node.addEventListener('peer:discovery', (event) => {
      // mDNS finds peers but does not dial them.
      void node.dial(event.detail.id).catch(() => {});
    });
    node.services.pubsub.subscribe(topic);
  }

  /** Starts a node. */
  static async start(options: Libp2pLinkOptions): Promise<Libp2pLink> {
    checkLinkOptions(options);
    const allowed = options.allowPeers === undefined ? undefined : new Set(options.allowPeers);
    const bans = new BanTable(options.banMs === undefined ? {} : { banMs: options.banMs });
    const trusted = new TrustedNetworks(options.trustedNetworks ?? []);
    const perAddress = options.maxConnectionsPerAddress ?? DEFAULT_MAX_CONNECTIONS_PER_ADDRESS;
    let link: Libp2pLink | undefined;
    const gate: Gate = {
      admits: (peer, direction) => {
        const id = peer.toString();
        if (bans.has(id) || (allowed !== undefined && !allowed.has(id))) return false;
        const admission = link === undefined ? undefined : link.#admission;
        return admission === undefined || admission(id, direction);
      },
      admitsAddress: (address) => {
        const ip = ipOf(address);
        if (ip === undefined || trusted.has(ip.ip, ip.family) || link === undefined) return true;
        const key = addressKey(ip.ip, ip.family);
        let count = 0;
        for (const connection of link.#node.getConnections()) {
          const other = ipOf(connection.remoteAddr);
          if (other !== undefined && addressKey(other.ip, other.family) === key) count++;
        }
        return count < perAddress;
      },
    };
    let node: Node;
    try {
      node = await createNode(options, gate);
    } catch (error) {
      const message = String((error as Error)?.message);
      if (/EADDRINUSE|address already in use/i.test(message)) {
        throw new NoatunError(ErrorCode.ADDRESS_IN_USE, `cannot listen on ${options.listen.join(', ')}: the address is in use`);
      }
      // (libp2p's own error, with no code: an address of another machine was a stack trace.)
      if (/EADDRNOTAVAIL|address not available/i.test(message)) {
        throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `cannot listen on ${options.listen.join(', ')}: no such address on this machine`, { cause: error });
      }
      throw error;
    }
    link = new Libp2pLink(node, gossipTopic(options.topic), bans);
    const created = link;
    // Registered at once, so a peer's session is never refused for arriving before `onSession`.
    await node.handle(SYNC_PROTOCOL, (stream, connection) => created.#accept(stream, connection.remotePeer.toString()), {
      maxInboundStreams: MAX_SYNC_STREAMS_PER_CONNECTION,
      maxOutboundStreams: MAX_SYNC_STREAMS_PER_CONNECTION,
    });
    await node.handle(DIRECT_PROTOCOL, (stream, connection) => created.#direct.accept(stream, connection.remotePeer.toString()), {
      maxInboundStreams: MAX_DIRECT_STREAMS_PER_CONNECTION,
      maxOutboundStreams: MAX_DIRECT_STREAMS_PER_CONNECTION,
    });
    // A peer that is not up is not an error (it may dial us later; the replicator re-dials it).
    for (const address of options.bootstrap ?? []) void created.dial(address).catch(() => {});
    return created;
  }

  /** The replicator's admission check (see {@link Link.setAdmission}). */
  #admission: ((peerId: string, direction: ConnectionDirection) => boolean) | undefined;

  #accept(stream: Stream, peerId: string): void {
    const session = this.#track(new StreamSession(stream, peerId, this.#forget));
    if (this.#sessionHandlers.length > 0) for (const handler of this.#sessionHandlers) handler(session);
    else if (this.#pending.length < MAX_PENDING_SESSIONS) this.#pending.push(session);
    else session.abort(new NoatunError(ErrorCode.CLOSED, 'not accepting sessions yet'));
  }

  #track(session: StreamSession): StreamSession {
    this.#sessions.add(session);
    return session;
  }

  #abortSessions(peerId: string | undefined, why: string): void {
    for (const session of [...this.#sessions]) {
      if (peerId === undefined || session.peerId === peerId) {
        this.#sessions.delete(session);
        session.abort(new NoatunError(ErrorCode.CLOSED, why));
      }
    }
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

  sendDirect(peerId: string, frame: Uint8Array): boolean {
    return this.#direct.send(peerId, frame);
  }

  onDirect(handler: DirectHandler): void {
    this.#direct.onFrame(handler);
  }

  setGossipValidator(validate: (from: string, frame: Uint8Array) => GossipVerdict): void {
    // gossipsub's verdicts are the same three strings.
    // Gossip is unsigned: the peer it came from (the one that relayed it) answers for it. Each peer
    // validates before relaying, so an invalid frame never gets past the peer that made it.
    this.#node.services.pubsub.topicValidators.set(this.#topic, (peer, message) =>
      (message.type === 'unsigned' ? validate(peer.toString(), message.data) : 'reject') as never,
    );
  }

  setAdmission(admit: (peerId: string, direction: ConnectionDirection) => boolean): void {
    this.#admission = admit;
  }

  onGossip(handler: (from: string, frame: Uint8Array) => void): void {
    this.#node.services.pubsub.addEventListener('gossipsub:message', (event) => {
      const { msg, propagationSource } = event.detail;
      if (msg.topic !== this.#topic || msg.type !== 'unsigned') return;
      handler(propagationSource.toString(), msg.data);
    });
  }

  onPeer(handler: (event: 'connect' | 'disconnect', peerId: string) => void): void {
    this.#peerHandlers.push(handler);
  }

  /** Every handler sees every inbound session; sessions that arrived before the first handler are handed to it. */
  onSession(handler: (session: Session) => void): void {
    this.#sessionHandlers.push(handler);
    for (const session of this.#pending.splice(0)) handler(session);
  }

  async openSession(peerId: string): Promise<Session> {
    let stream: Stream;
    try {
      stream = await this.#node.dialProtocol(peerIdFromString(peerId), SYNC_PROTOCOL);
    } catch (error) {
      // The link went away while the stream was negotiated (libp2p's UnexpectedEOFError, or an
      // abort whose reason is a bare Event): nobody's fault, so the session is retried after a
      // backoff like any lost link, not reported as a failure of ours ("[object Event]").
      const why = error instanceof Error ? `${error.name}: ${error.message}` : error instanceof Event ? `${error.type} event` : String(error);
      throw new NoatunError(ErrorCode.CLOSED, `could not open a session with ${peerId}: ${why}`, { cause: error });
    }
    return this.#track(new StreamSession(stream, peerId, this.#forget));
  }

  /**
   * Peers a publish is handed to now: our gossip mesh peers, or (no mesh yet) the peers known to be
   * subscribed, some of which gossipsub picks. Others of the swarm get it relayed, or by id.
   */
  gossipPeers(): string[] {
    const pubsub = this.#node.services.pubsub;
    // The implementation has it; the service's public type does not list it.
    const mesh = (pubsub as unknown as { getMeshPeers?(topic: string): string[] }).getMeshPeers?.(this.#topic) ?? [];
    return mesh.length !== 0 ? mesh : pubsub.getSubscribers(this.#topic).map((peer) => peer.toString());
  }

  /** See {@link Link.checkPeerId}: `INVALID_ARGUMENT` for a string that is no libp2p peer id. */
  checkPeerId(peerId: string, where: string): void {
    checkPeerId(peerId, where);
  }

  /**
   * Connects to a peer at `address` and resolves with its peer id; rejects if no peer answers or
   * it is refused (`CLOSED`). With `/p2p/<id>` the peer must have that id; without, whoever
   * answers is taken (the Noise handshake still authenticates the id it claims). A bare peer id
   * (no `/`) dials the addresses the node has learned for it (from identify, or an earlier dial).
   * An address no dial can use (see `checkDialAddress`) is `INVALID_ARGUMENT`.
   */
  async dial(address: string): Promise<string> {
    if (typeof address !== 'string') throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `dial takes a multiaddr or a peer id, got ${describeValue(address)}`);
    let target: ReturnType<typeof multiaddr> | PeerId;
    try {
      target = address.startsWith('/') ? multiaddr(address) : peerIdFromString(address);
    } catch (error) {
      throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `not a multiaddr or a peer id: ${quote(address)}`, { cause: error });
    }
    if (address.startsWith('/')) checkDialAddress(address, 'dial');
    const self = this.#node.peerId.toString();
    if (target.toString() === self || (address.startsWith('/') && address.endsWith(`/p2p/${self}`))) {
      throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `${address} is this node itself`);
    }
    try {
      const connection = await this.#node.dial(target);
      return connection.remotePeer.toString();
    } catch (error) {
      // libp2p's own errors carry no code of ours: a stopped node, a refused or unreachable peer.
      if (this.#node.status !== 'started') throw new NoatunError(ErrorCode.CLOSED, 'the node is stopped', { cause: error });
      throw new NoatunError(ErrorCode.CLOSED, `could not connect to ${address}: ${(error as Error)?.message ?? String(error)}`, { cause: error });
    }
  }

  /** Refuses the peer for the ban time (`banMs`), aborts its sessions (the peer's side throws) and hangs up. */
  async disconnect(peerId: string, reason: string): Promise<void> {
    this.#bans.ban(peerId, reason);
    await this.#hangUp(peerId, `disconnected: ${reason}`);
  }

  /** Aborts the peer's sessions and closes the connection; the peer may connect again. */
  async hangUp(peerId: string): Promise<void> {
    await this.#hangUp(peerId, 'hung up');
  }

  async #hangUp(peerId: string, why: string): Promise<void> {
    this.#abortSessions(peerId, why);
    await this.#node.hangUp(peerIdFromString(peerId)).catch(() => {});
  }

  connectedPeers(): string[] {
    return this.#node.getPeers().map((peer) => peer.toString());
  }

  /** Round-trip time to a connected peer, in ms. */
  async ping(peerId: string): Promise<number> {
    return this.#node.services.ping.ping(peerIdFromString(peerId));
  }

  /** Aborts open sessions (peers' iterations throw rather than end as if complete), then stops the node. */
  async stop(): Promise<void> {
    this.#abortSessions(undefined, 'stopped');
    for (const session of this.#pending.splice(0)) session.abort(new NoatunError(ErrorCode.CLOSED, 'stopped'));
    // Two timers libp2p leaves behind its stop kept every process alive up to a second longer:
    // gossipsub's next heartbeat (its stop drops the handle without clearing it), and the address
    // manager's update of our addresses, debounced by 1 s on each transport's close during the
    // stop and never cancelled. Both are reached through libp2p's internals, if they are there.
    const heartbeat = (this.#node.services.pubsub as unknown as { status?: { heartbeatTimeout?: ReturnType<typeof setTimeout> } }).status?.heartbeatTimeout;
    await this.#node.stop();
    clearTimeout(heartbeat);
    const components = (this.#node as unknown as { components?: { addressManager?: { _updatePeerStoreAddresses?: { stop?: () => void } } } }).components;
    components?.addressManager?._updatePeerStoreAddresses?.stop?.();
  }
}
