/**
 * `noatun/net`: replication over libp2p.
 *
 * @example
 * import { Replicator } from 'noatun/net';
 * const node = await Replicator.start(db, { listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [], topic: 'company' });
 * await node.syncedWith(otherPeerId);
 * await node.stop();
 */

export { DIRECT_PROTOCOL } from './direct-channels.js';
export type { IdBound } from './fingerprint-index.js';
export { FINGERPRINT_BYTES, FingerprintIndex, ID_BYTES, timeBound } from './fingerprint-index.js';
export type { Libp2pLinkOptions } from './libp2p-link.js';
export { checkSwarmKey, createSwarmKey, Libp2pLink, LOOPBACK_NETWORKS, loadOrCreatePrivateKey, SYNC_PROTOCOL } from './libp2p-link.js';
export type { ConnectionDirection, DirectHandler, GossipVerdict, Link, Session } from './link.js';
export { MAX_DIRECT_FRAME_BYTES, MAX_FRAME_BYTES } from './link.js';
export type { MemoryNetworkOptions } from './memory-link.js';
export { MemoryNetwork } from './memory-link.js';
export type { ReconcileOptions, ReconcileStats, ReconcileStep } from './reconcile.js';
export { MAX_RECONCILE_MESSAGE_BYTES, MAX_RECONCILE_RANGES, ReconcileError, Reconciler } from './reconcile.js';
export type { RedialOptions } from './redial.js';
export type {
  BootstrapUnreachable,
  PeerInfo,
  PeerState,
  ReplicatedDatabase,
  ReplicatedIngestOptions,
  ReplicatedIngestResult,
  ReplicatedMessage,
  ReplicatorEvent,
  ReplicatorFailure,
  ReplicatorOptions,
} from './replicator.js';
export { Replicator } from './replicator.js';
