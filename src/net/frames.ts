/**
 * The replication protocol's frames, in one canonical binary form, and their validation. Every
 * frame from the wire goes through {@link decodeFrame} before anything acts on it; a malformed
 * one throws `BAD_FRAME` (and the peer that sent it is disconnected).
 *
 * Gossip frames: `PEER_STATUS` (a peer's status — its finalized past and a fingerprint of the rest
 * — with the peer's id and a sequence number; for neighbours only, or relayed through the swarm,
 * and it may ask every peer for theirs), `EVENT` (a new local event's envelope) and `EVENTS`
 * (several). Direct frames (to one neighbour; see src/net/relay.ts): `PEER_STATUS` (the
 * neighbour's own), `EVENT` and `EVENTS` (pushed by their author, or asked for), `IHAVE` (ids of
 * events new to the sender, offered) and `WANT` (offered ids the sender lacks). `STATUS` is the status alone, as the first version's gossip carried it. Session frames: `HELLO` (status), `RECONCILE` (a reconciliation
 * message; empty when the sender has nothing left to resolve), `WANT` (ids to send), `EVENTS` (a
 * batch of envelopes, in id order), `EVENT_PART` (a piece of one envelope too large for a batch:
 * its total size, the offset of the piece, the bytes), `ACK` (a batch was stored, or a part
 * received), `END` (nothing more to send; carries the sender's status at that moment).
 *
 * Every number is range-checked here, so nothing downstream meets a value it cannot handle (a
 * status whose cutoff time could not be an id's 48-bit timestamp once killed the process).
 */
import { ErrorCode, NoatunError } from '../errors.js';
import { FINGERPRINT_BYTES, ID_BYTES } from './fingerprint-index.js';
import { MAX_FRAME_BYTES } from './link.js';

/** Frame type bytes. */
export const FrameType = {
  STATUS: 1,
  EVENT: 2,
  HELLO: 3,
  RECONCILE: 4,
  WANT: 5,
  EVENTS: 6,
  ACK: 7,
  END: 8,
  EVENT_PART: 9,
  PEER_STATUS: 10,
  IHAVE: 11,
} as const;

/** Longest peer id a `PEER_STATUS` frame may name (libp2p's are 52 characters). */
export const MAX_PEER_ID_LENGTH = 128;

/** Times in a status must fit an id's 48-bit timestamp (what `timeBound` and the engine take). */
const MAX_TIME = 2 ** 48;

/** Most ids in one WANT frame, and most events in one EVENTS frame. */
export const MAX_IDS_PER_FRAME = 16_384;

/** A peer's sync status. */
export interface Status {
  /** Cutoff time (ms) and the XOR hash of stored ids before it. */
  readonly cutoffTime: number;
  readonly cutoffHash: Uint8Array;
  /** The same one stride earlier. */
  readonly previousTime: number;
  readonly previousHash: Uint8Array;
  /** Stored events at or after the cutoff, and their fingerprint (see `FingerprintIndex.fingerprint`). */
  readonly count: number;
  readonly fingerprint: Uint8Array;
}

/** A decoded frame. */
export type Frame =
  | { readonly type: typeof FrameType.STATUS | typeof FrameType.HELLO | typeof FrameType.END; readonly status: Status }
  | { readonly type: typeof FrameType.EVENT; readonly envelope: Uint8Array }
  | { readonly type: typeof FrameType.RECONCILE; readonly message: Uint8Array }
  | { readonly type: typeof FrameType.WANT | typeof FrameType.IHAVE; readonly ids: Uint8Array[] }
  | { readonly type: typeof FrameType.EVENTS; readonly envelopes: Uint8Array[] }
  | { readonly type: typeof FrameType.EVENT_PART; readonly total: number; readonly offset: number; readonly bytes: Uint8Array }
  | { readonly type: typeof FrameType.ACK; readonly count: number }
  | { readonly type: typeof FrameType.PEER_STATUS; readonly peerStatus: PeerStatus };

/** A peer's status as gossiped (see {@link peerStatusFrame}). */
export interface PeerStatus {
  /** The peer whose status it is. */
  readonly origin: string;
  /** Counts up with each one its origin sends (so that equal statuses are not taken for copies). */
  readonly sequence: number;
  /** Whether peers relay it through the swarm; if not, it is for the origin's neighbours only. */
  readonly relay: boolean;
  /** Whether the origin asks every peer that receives it to send their status (relayed) soon. */
  readonly replyWanted: boolean;
  readonly status: Status;
}

const FLAG_REPLY_WANTED = 1;
const FLAG_RELAY = 2;

/** Bytes of an `EVENT_PART` frame before its piece: type, total size, offset. */
export const EVENT_PART_HEADER_BYTES = 9;

const STATUS_BYTES = 8 + 16 + 8 + 16 + 4 + FINGERPRINT_BYTES;

/** A protocol violation by the peer. */
export class ProtocolError extends NoatunError {
  constructor(message: string) {
    super(ErrorCode.BAD_FRAME, message);
    this.name = 'ProtocolError';
  }
}

function writeStatus(type: number, status: Status): Uint8Array {
  const out = new Uint8Array(1 + STATUS_BYTES);
  const view = new DataView(out.buffer);
  out[0] = type;
  view.setFloat64(1, status.cutoffTime);
  out.set(status.cutoffHash, 9);
  view.setFloat64(25, status.previousTime);
  out.set(status.previousHash, 33);
  view.setUint32(49, status.count);
  out.set(status.fingerprint, 53);
  return out;
}

/**
 * A `PEER_STATUS` frame: type, flags (bit 0: reply wanted, bit 1: relay), u32 sequence, u8 origin
 * length, the origin's peer id (UTF-8), then the status as in `STATUS`.
 */
export function peerStatusFrame(peerStatus: PeerStatus): Uint8Array {
  const origin = new TextEncoder().encode(peerStatus.origin);
  if (origin.length === 0 || origin.length > MAX_PEER_ID_LENGTH) throw new ProtocolError(`a peer id of ${origin.length} bytes`);
  const head = 1 + 1 + 4 + 1 + origin.length;
  const status = writeStatus(FrameType.PEER_STATUS, peerStatus.status);
  const out = new Uint8Array(head + STATUS_BYTES);
  const view = new DataView(out.buffer);
  out[0] = FrameType.PEER_STATUS;
  out[1] = (peerStatus.replyWanted ? FLAG_REPLY_WANTED : 0) | (peerStatus.relay ? FLAG_RELAY : 0);
  view.setUint32(2, peerStatus.sequence);
  out[6] = origin.length;
  out.set(origin, 7);
  out.set(status.subarray(1), head);
  return out;
}

/** Encodes a status-carrying frame (`STATUS`, `HELLO` or `END`). */
export function statusFrame(type: typeof FrameType.STATUS | typeof FrameType.HELLO | typeof FrameType.END, status: Status): Uint8Array {
  return writeStatus(type, status);
}

/** A frame of `type` followed by `payload`. */
export function bytesFrame(type: typeof FrameType.EVENT | typeof FrameType.RECONCILE, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + payload.length);
  out[0] = type;
  out.set(payload, 1);
  return out;
}

/** A `WANT` frame. */
export function wantFrame(ids: readonly Uint8Array[]): Uint8Array {
  return idsFrame(FrameType.WANT, ids);
}

/** A frame of ids (`WANT`, `IHAVE`): the type, then the 16-byte ids. */
export function idsFrame(type: typeof FrameType.WANT | typeof FrameType.IHAVE, ids: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(1 + ids.length * ID_BYTES);
  out[0] = type;
  for (let i = 0; i < ids.length; i++) out.set(ids[i]!, 1 + i * ID_BYTES);
  return out;
}

/** An `EVENTS` frame: u32 count, then u32 length and bytes per envelope. */
export function eventsFrame(envelopes: readonly Uint8Array[]): Uint8Array {
  let size = 5;
  for (const e of envelopes) size += 4 + e.length;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  out[0] = FrameType.EVENTS;
  view.setUint32(1, envelopes.length);
  let at = 5;
  for (const e of envelopes) {
    view.setUint32(at, e.length);
    out.set(e, at + 4);
    at += 4 + e.length;
  }
  return out;
}

/** Where each of `envelopes` starts in their {@link eventsFrame}. */
export function eventsFrameStarts(envelopes: readonly Uint8Array[]): number[] {
  const starts = new Array<number>(envelopes.length);
  let at = 5;
  for (let i = 0; i < envelopes.length; i++) {
    starts[i] = at + 4;
    at += 4 + envelopes[i]!.length;
  }
  return starts;
}

/** An `EVENT_PART` frame: the piece `bytes` at `offset` of an envelope of `total` bytes. */
export function eventPartFrame(total: number, offset: number, bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(EVENT_PART_HEADER_BYTES + bytes.length);
  const view = new DataView(out.buffer);
  out[0] = FrameType.EVENT_PART;
  view.setUint32(1, total);
  view.setUint32(5, offset);
  out.set(bytes, EVENT_PART_HEADER_BYTES);
  return out;
}

/** An `ACK` frame for `count` events. */
export function ackFrame(count: number): Uint8Array {
  const out = new Uint8Array(5);
  out[0] = FrameType.ACK;
  new DataView(out.buffer).setUint32(1, count);
  return out;
}

/** Reads and range-checks a status at `at`. */
function readStatus(frame: Uint8Array, view: DataView, at: number): Status {
  // `+ 0` turns a negative zero into zero: the same time, one representation.
  const cutoffTime = view.getFloat64(at) + 0;
  const previousTime = view.getFloat64(at + 24) + 0;
  for (const t of [cutoffTime, previousTime]) {
    if (!Number.isInteger(t) || t < 0 || t >= MAX_TIME) throw new ProtocolError(`cutoff time ${t} is not a 48-bit ms timestamp`);
  }
  if (previousTime > cutoffTime) throw new ProtocolError(`previous cutoff ${previousTime} after the cutoff ${cutoffTime}`);
  return {
    cutoffTime,
    cutoffHash: frame.slice(at + 8, at + 24),
    previousTime,
    previousHash: frame.slice(at + 32, at + 48),
    count: view.getUint32(at + 48),
    fingerprint: frame.slice(at + 52, at + 52 + FINGERPRINT_BYTES),
  };
}

/** Decodes and validates a frame; throws {@link ProtocolError} if it is malformed. */
export function decodeFrame(frame: Uint8Array): Frame {
  if (!(frame instanceof Uint8Array) || frame.length === 0) throw new ProtocolError('empty frame');
  if (frame.length > MAX_FRAME_BYTES) throw new ProtocolError(`frame of ${frame.length} bytes`);
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const type = frame[0]!;
  switch (type) {
    case FrameType.STATUS:
    case FrameType.HELLO:
    case FrameType.END: {
      if (frame.length !== 1 + STATUS_BYTES) throw new ProtocolError(`status frame of ${frame.length} bytes`);
      return { type, status: readStatus(frame, view, 1) };
    }
    case FrameType.PEER_STATUS: {
      if (frame.length < 8) throw new ProtocolError('truncated PEER_STATUS frame');
      const flags = frame[1]!;
      if ((flags & ~(FLAG_REPLY_WANTED | FLAG_RELAY)) !== 0) throw new ProtocolError(`PEER_STATUS flags ${flags}`);
      const length = frame[6]!;
      if (length === 0 || length > MAX_PEER_ID_LENGTH) throw new ProtocolError(`a peer id of ${length} bytes`);
      if (frame.length !== 7 + length + STATUS_BYTES) throw new ProtocolError(`PEER_STATUS frame of ${frame.length} bytes`);
      let origin: string;
      try {
        origin = new TextDecoder('utf-8', { fatal: true }).decode(frame.subarray(7, 7 + length));
      } catch {
        throw new ProtocolError('a peer id that is not UTF-8');
      }
      const peerStatus: PeerStatus = {
        origin,
        sequence: view.getUint32(2),
        relay: (flags & FLAG_RELAY) !== 0,
        replyWanted: (flags & FLAG_REPLY_WANTED) !== 0,
        status: readStatus(frame, view, 7 + length),
      };
      return { type, peerStatus };
    }
    case FrameType.EVENT:
      return { type, envelope: frame.subarray(1) };
    case FrameType.RECONCILE:
      return { type, message: frame.subarray(1) };
    case FrameType.WANT:
    case FrameType.IHAVE: {
      const n = (frame.length - 1) / ID_BYTES;
      if (!Number.isInteger(n) || n > MAX_IDS_PER_FRAME) throw new ProtocolError(`frame of type ${type} of ${frame.length} bytes`);
      const ids: Uint8Array[] = [];
      for (let i = 0; i < n; i++) ids.push(frame.slice(1 + i * ID_BYTES, 1 + (i + 1) * ID_BYTES));
      return { type, ids };
    }
    case FrameType.EVENTS: {
      if (frame.length < 5) throw new ProtocolError('truncated EVENTS frame');
      const n = view.getUint32(1);
      if (n > MAX_IDS_PER_FRAME) throw new ProtocolError(`EVENTS frame with ${n} events`);
      const envelopes: Uint8Array[] = [];
      let at = 5;
      for (let i = 0; i < n; i++) {
        if (at + 4 > frame.length) throw new ProtocolError('truncated EVENTS frame');
        const length = view.getUint32(at);
        if (at + 4 + length > frame.length) throw new ProtocolError('truncated EVENTS frame');
        envelopes.push(frame.subarray(at + 4, at + 4 + length));
        at += 4 + length;
      }
      if (at !== frame.length) throw new ProtocolError('bytes after the last event');
      return { type, envelopes };
    }
    case FrameType.EVENT_PART: {
      if (frame.length <= EVENT_PART_HEADER_BYTES) throw new ProtocolError('EVENT_PART frame without a piece');
      const total = view.getUint32(1);
      const offset = view.getUint32(5);
      const bytes = frame.subarray(EVENT_PART_HEADER_BYTES);
      if (offset + bytes.length > total) throw new ProtocolError(`EVENT_PART piece at ${offset} of ${bytes.length} bytes runs past ${total}`);
      return { type, total, offset, bytes };
    }
    case FrameType.ACK: {
      if (frame.length !== 5) throw new ProtocolError('ACK frame of the wrong size');
      const count = view.getUint32(1);
      if (count > MAX_IDS_PER_FRAME) throw new ProtocolError(`ACK of ${count} events`);
      return { type, count };
    }
    default:
      throw new ProtocolError(`unknown frame type ${type}`);
  }
}
