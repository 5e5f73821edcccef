/**
 * Defaults and limits of replication, documented once. Every limit a peer can run into is here,
 * with the reason for its value; docs/SECURITY.md lists them for operators.
 *
 * Limits fall in two kinds. Protocol limits are the same on every peer (a peer that goes over
 * one is refused), so they are constants, not options. Local limits (how much this node is
 * willing to spend) are options of `Replicator` or `Libp2pLink` with these defaults.
 */

// ------------------------------------------------------------------ status and gossip

/**
 * How often the status is sent to neighbours as a keepalive (and the cutoff moved). A changed
 * status goes at once (after {@link DEFAULT_STATUS_DEBOUNCE_MS}); the keepalive only covers a
 * status that was lost, so it can be slow, and an idle peer sends little.
 * @default 15000
 */
export const DEFAULT_STATUS_INTERVAL_MS = 15_000;

/**
 * How long after a change the status is sent: commits within it share one status.
 * @default 50
 */
export const DEFAULT_STATUS_DEBOUNCE_MS = 50;

/**
 * How long ids of events new to us are collected before they are offered (`IHAVE`) to the other
 * neighbours (src/net/relay.ts): one frame carries the ids of this long, so an offer costs a few
 * bytes more than its id. Each hop after the author's costs this long plus a round trip.
 * @default 50
 */
export const DEFAULT_RELAY_ANNOUNCE_MS = 50;

/**
 * How long an event asked of the neighbour that offered it may take before the next neighbour
 * that offered it is asked. A neighbour of a busy peer answers late rather than never, and asking
 * a second one brings a second copy; a neighbour gone is noticed by the link first.
 * @default 2000
 */
export const DEFAULT_RELAY_WANT_MS = 2000;

/**
 * How long a difference in a neighbour's status may stand before a session starts (ms). While
 * events are being pushed, statuses of neighbours differ by what is in flight, and a session then
 * would only send copies of events the push brings anyway; a status that agrees meanwhile cancels
 * it. Missing parents wait the same way (they usually arrive by another way); sessions asked for
 * by `syncedWith`, on connect and to go on after a session that was cut start at once.
 * @default 1000
 */
export const DEFAULT_STATUS_SYNC_DELAY_MS = 1000;

/**
 * How long the peer with the larger id waits, after a connection, for the session the other side
 * starts on connect before it starts one of its own (ms). Two sessions started at once (one asked
 * for by `syncedWith` as the other side's arrived) both send the whole difference: an initial copy
 * went over the wire twice.
 */
export const CONNECT_SESSION_GRACE_MS = 1000;

/**
 * Largest envelope the relay pushes or offers, and bytes of envelopes per relay frame; a larger
 * event reaches peers in a session (its author's status changes at once, so peers start one).
 * The relay keeps recent envelopes in memory to answer `WANT`s, so large ones would crowd it.
 * @default 65536
 */
export const DEFAULT_GOSSIP_EVENT_BYTES = 64 * 1024;

/**
 * Largest gossip frame accepted (protocol limit): a larger one is refused and not relayed.
 * `gossipEventBytes` may not exceed it.
 * @default 1 MiB
 */
export const MAX_GOSSIP_FRAME_BYTES = 1024 * 1024;

/**
 * Most bytes waiting to be written to one neighbour's gossip stream: beyond it the stream is
 * aborted (the neighbour gets no gossip from us until it reconnects; sessions still run). A
 * neighbour that stops reading its stream made gossipsub buffer what we relay to it without bound
 * (16 MiB of frames and 70 MiB of heap after 12 MiB of relayed statuses, never let go).
 */
export const MAX_GOSSIP_OUTBOUND_BYTES = 4 * 1024 * 1024;

/**
 * Gossiped envelopes waiting to be ingested, per sender (count). Beyond it newer ones are dropped:
 * gossip is best-effort, and the next status comparison brings the rest by a session.
 * @default 1024
 */
export const MAX_GOSSIP_QUEUE_EVENTS = 1024;

/**
 * Bytes of gossiped envelopes waiting to be ingested, all senders together.
 * @default 16 MiB
 */
export const MAX_GOSSIP_QUEUE_BYTES = 16 * 1024 * 1024;

// ------------------------------------------------------------------ sessions

/**
 * Bytes of envelopes per `EVENTS` batch, and of each part of an envelope larger than that.
 * @default 262144
 */
export const DEFAULT_BATCH_BYTES = 256 * 1024;

/**
 * Frames (batches or parts) sent and not yet acknowledged, per session.
 * @default 4
 */
export const DEFAULT_WINDOW = 4;

/**
 * Sessions running at once with all peers together; an inbound session over it is turned away
 * (not the peer's fault) and the peer tries again later.
 * @default 32
 */
export const DEFAULT_MAX_SESSIONS = 32;

/**
 * Sessions running at once with one peer. An honest peer starts at most one at a time; while
 * its previous one is still closing on our side it may briefly have two.
 * @default 2
 */
export const DEFAULT_MAX_SESSIONS_PER_PEER = 2;

/**
 * Inbound sessions a peer may start over {@link DEFAULT_MAX_SESSIONS_PER_PEER} (each one turned
 * away) within {@link SESSION_STRIKE_WINDOW_MS} before it is refused.
 * @default 16
 */
export const MAX_SESSION_STRIKES = 16;

/**
 * Copies of what we hold that sessions may send one peer within {@link FULL_COPY_WINDOW_MS} (a
 * budget of events, refilled evenly over the window, at least {@link MIN_COPY_EVENTS} a copy):
 * beyond it a session ends (`CLOSED`, nobody's fault: the peer may ask again later). A new peer
 * needs one copy, or a few when its connection drops; one that asked for everything and hung up at
 * the end, again and again, had us send 781 MiB in 30 s for 58 KB of its own (claiming to hold
 * nothing, or one made-up event).
 * @default 3
 */
export const MAX_FULL_COPIES = 3;

/** The window of {@link MAX_FULL_COPIES}. */
export const FULL_COPY_WINDOW_MS = 3 * 60_000;

/** The least events one copy of {@link MAX_FULL_COPIES} counts, however few we hold. */
export const MIN_COPY_EVENTS = 1000;

/**
 * Events a neighbour may push to us that we held already within {@link RELAY_COPY_WINDOW_MS};
 * more is a `LIMIT_EXCEEDED` fault (the relay sends each event over a link once: copies are rare).
 * @default 10000
 */
export const MAX_RELAY_COPIES = 10_000;

/** The window of {@link MAX_RELAY_COPIES}. */
export const RELAY_COPY_WINDOW_MS = 10_000;

/** The window in which excess sessions are counted (see {@link MAX_SESSION_STRIKES}). */
export const SESSION_STRIKE_WINDOW_MS = 60_000;

/**
 * How long a session waits for its peer's next frame before it ends (the peer is not refused:
 * links stall; it is tried again after a backoff).
 * @default 30000
 */
export const DEFAULT_SESSION_IDLE_MS = 30_000;

/**
 * Longest a session may run, however busy. What it moved is kept; the next session continues.
 * @default 30 minutes
 */
export const DEFAULT_SESSION_DEADLINE_MS = 30 * 60_000;

/**
 * Most ids one session learns in reconciliation in each direction (ids we lack, ids the peer
 * lacks), and most ids the peer may ask for with `WANT` (protocol limit). On reaching it a side
 * ends the reconciliation; statuses still differ at `END`, so another session continues at once.
 * This bounds a session's queues to 1 MiB of ids each, whatever the sets.
 * @default 65536
 */
export const MAX_SESSION_IDS = 65_536;

/**
 * Bytes of reconciliation messages one session accepts from its peer. Reached with something
 * learned, the reconciliation ends (the next session continues); reached with nothing learned,
 * the peer is refused: an honest exchange learns its first difference within a few messages.
 * @default 32 MiB
 */
export const MAX_RECONCILE_BYTES = 32 * 1024 * 1024;

/**
 * Smallest reconciliation message that may end in `DEFER` (protocol limit). An honest side
 * defers only when its message budget is full, and the replicator's budget is at least
 * {@link MIN_RECONCILE_BUDGET}: a small message that defers is a peer stalling the exchange.
 * @default 16 KiB
 */
export const MIN_DEFER_MESSAGE_BYTES = 16 * 1024;

/**
 * Smallest reconciliation message budget a replicator accepts (`reconcile.maxMessageBytes`), so
 * that its own deferring messages are never under {@link MIN_DEFER_MESSAGE_BYTES}.
 * @default 64 KiB
 */
export const MIN_RECONCILE_BUDGET = 64 * 1024;

/**
 * Reconciliation messages received in one session before the exchange ends (or, with nothing
 * learned, the peer is refused): `ROUNDS_BASE + ROUNDS_PER_LEVEL × ⌈log2(n + 2)⌉`, n being both
 * sides' id counts in the reconciled range. An honest exchange takes about one message per level
 * of its split tree (log16 n with the default branching, log2 n at worst) plus one per full
 * message of deferred answers.
 */
export const ROUNDS_BASE = 32;
/** See {@link ROUNDS_BASE}. */
export const ROUNDS_PER_LEVEL = 4;

/**
 * Bytes of large envelopes (those sent in parts) held at once by all sessions together, received
 * or being sent. A session waits for room, and ends (no fault) if none frees within the idle time.
 * @default 64 MiB
 */
export const DEFAULT_LARGE_EVENT_BYTES = 64 * 1024 * 1024;

// ------------------------------------------------------------------ peers and bans

/**
 * How long a peer refused for a fault stays refused.
 * @default 10 minutes
 */
export const DEFAULT_BAN_MS = 10 * 60_000;

/**
 * Refused peers remembered at once; the ban closest to expiry goes first. Peer ids are free, so
 * this only bounds memory: fresh ids are held off by the admission limits below.
 * @default 4096
 */
export const MAX_BANS = 4096;

/**
 * Peers kept in `peers()`; a disconnected peer seen longest ago is forgotten first.
 * @default 1024
 */
export const MAX_PEER_RECORDS = 1024;

/**
 * Connected peers that have not yet completed a session with us ("strangers"). Beyond it a new
 * stranger is turned away, unless the stranger connected longest has been so for more than
 * {@link STRANGER_GRACE_MS}: it is hung up to make room. Peers that completed a session,
 * bootstrap peers and peers we dialled are not counted (nor refused peers on their way out), so
 * fresh peer ids cannot crowd them out, nor keep newcomers out for long.
 * @default 16
 */
export const DEFAULT_MAX_STRANGERS = 16;

/**
 * How long a stranger may stay connected without completing a session before a newer one may
 * take its place (when all places are taken). An honest newcomer gets through its first session
 * in that time unless it is copying a large database, and even then it keeps what it copied.
 * @default 10000
 */
export const STRANGER_GRACE_MS = 10_000;

/**
 * Status differences after a completed session, and clock drift, are retried after a delay
 * doubling from this one...
 * @default 100
 */
export const DEFAULT_RESYNC_MIN_MS = 100;

/**
 * ...up to this one, until the peer is synced again.
 * @default 60000
 */
export const DEFAULT_RESYNC_MAX_MS = 60_000;

// ------------------------------------------------------------------ redial

/**
 * Bootstrap peers, peers dialled with `Replicator.dial` and peers that completed a session are
 * re-dialled after a disconnect, first after this delay...
 * @default 250
 */
export const DEFAULT_REDIAL_MIN_MS = 250;

/**
 * ...doubling up to this one (with ±20% jitter, so peers that lost one another do not redial in
 * step). Small, because a failed dial to a peer that is down costs one refused TCP connection,
 * and a restarted peer should be found again within seconds.
 * @default 5000
 */
export const DEFAULT_REDIAL_MAX_MS = 5000;

/**
 * Peers (other than bootstrap peers) remembered for redialling; the one seen longest ago goes
 * first.
 * @default 64
 */
export const MAX_REDIAL_PEERS = 64;

/**
 * A remembered peer (not a bootstrap peer) that stays unreachable this long is forgotten.
 * @default 1 hour
 */
export const REDIAL_FORGET_MS = 60 * 60_000;

// ------------------------------------------------------------------ libp2p connections and streams

/**
 * Connections of the libp2p node (libp2p refuses inbound ones beyond it before any handshake).
 * @default 128
 */
export const DEFAULT_MAX_CONNECTIONS = 128;

/**
 * Connections from one IP address (IPv6: one /64) at once, inbound.
 * @default 8
 */
export const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 8;

/**
 * Inbound connections being set up (handshakes) at once.
 * @default 16
 */
export const DEFAULT_MAX_PENDING_CONNECTIONS = 16;

/**
 * New inbound connections accepted per second from one IP address.
 * @default 5
 */
export const DEFAULT_INBOUND_CONNECTIONS_PER_SECOND = 5;

/**
 * Sync streams per connection and direction (libp2p resets the stream beyond it).
 * @default 4
 */
export const MAX_SYNC_STREAMS_PER_CONNECTION = 4;

/**
 * Streams of all protocols per connection and direction (Yamux refuses beyond it).
 * @default 32
 */
export const MAX_STREAMS_PER_CONNECTION = 32;

/**
 * Direct-frame streams (the relay, neighbour statuses) per connection and direction: one, and one
 * more while a replaced one closes.
 */
export const MAX_DIRECT_STREAMS_PER_CONNECTION = 2;
