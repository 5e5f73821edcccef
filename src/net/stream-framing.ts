/**
 * Frames on a byte stream: each an unsigned LEB128 (varint) length, then that many bytes. Used by
 * the libp2p link's sessions and direct channels.
 */
import { ErrorCode, NoatunError } from '../errors.js';
import { MAX_FRAME_BYTES } from './link.js';

/** `frame` with its varint length prefix, in one new buffer (the caller may reuse `frame`). */
export function prefixed(frame: Uint8Array): Uint8Array {
  const prefixLength = varintLength(frame.length);
  const bytes = new Uint8Array(prefixLength + frame.length);
  writeVarint(frame.length, bytes);
  bytes.set(frame, prefixLength);
  return bytes;
}

/**
 * Pieces of one frame beyond which their average size is checked (see {@link MIN_PIECE_BYTES}).
 * An honest sender writes each frame whole, and Yamux splits it into pieces of its window or
 * message size (kilobytes): a frame of 4 MiB comes in 64 pieces or so.
 */
const CHECKED_PIECES = 256;
/**
 * Smallest average piece of a frame in more than {@link CHECKED_PIECES} pieces: a peer that sends
 * a frame a byte at a time costs Yamux a frame and a window update each (a core's time on one
 * stream, with event-loop stalls of 1–2 s), and is refused.
 */
const MIN_PIECE_BYTES = 64;

/**
 * Splits received bytes into frames: an unsigned LEB128 (varint) length, then that many bytes.
 * A length over the decoder's limit throws `BAD_FRAME` as soon as the prefix is read.
 *
 * A frame that arrives in pieces is copied into one buffer as they come, grown by doubling up to
 * the frame's length: what a peer makes it hold is at most twice what it sent, however small the
 * pieces. (It kept every piece as it came: a frame sent one byte per write cost about 130 bytes of
 * memory per byte, 550 MiB for a 4 MiB frame, until the frame was complete.)
 */
export class FrameDecoder {
  readonly #maxBytes: number;
  /** Length of the frame being assembled, once its prefix was read; -1 while reading a prefix. */
  #need = -1;
  /** The prefix read so far: its value, and how many of its bytes. */
  #prefix = 0;
  #prefixBytes = 0;
  /** The frame's bytes received so far (its first {@link #filled}); undefined before any arrive. */
  #partial: Uint8Array | undefined;
  #filled = 0;
  /** Pieces the frame came in so far. */
  #pieces = 0;

  /** `maxBytes`: the largest frame accepted (a session's {@link MAX_FRAME_BYTES} by default). */
  constructor(maxBytes: number = MAX_FRAME_BYTES) {
    this.#maxBytes = maxBytes;
  }

  /** Bytes of an unfinished frame are buffered (the peer must not end here). */
  get inFrame(): boolean {
    return this.#prefixBytes > 0 || this.#need > 0;
  }

  /** Bytes held for the unfinished frame (its buffer's size). */
  get heldBytes(): number {
    return this.#partial?.length ?? 0;
  }

  push(chunk: Uint8Array, emit: (frame: Uint8Array) => void): void {
    let at = 0;
    for (;;) {
      if (this.#need < 0) {
        at = this.#readLength(chunk, at);
        if (this.#need < 0) return;
      }
      const need = this.#need;
      if (this.#partial === undefined && chunk.length - at >= need) {
        // The whole frame is in this chunk: a view of it, no copy.
        this.#need = -1;
        emit(chunk.subarray(at, at + need));
        at += need;
        continue;
      }
      if (at === chunk.length) return;
      const take = Math.min(need - this.#filled, chunk.length - at);
      const partial = this.#room(this.#filled + take);
      partial.set(chunk.subarray(at, at + take), this.#filled);
      this.#filled += take;
      at += take;
      if (++this.#pieces > CHECKED_PIECES && this.#filled < this.#pieces * MIN_PIECE_BYTES) {
        throw new NoatunError(ErrorCode.BAD_FRAME, `the peer sent a frame in ${this.#pieces} pieces of ${Math.floor(this.#filled / this.#pieces)} bytes on average`);
      }
      if (this.#filled < need) return;
      this.#need = -1;
      this.#partial = undefined;
      this.#filled = 0;
      this.#pieces = 0;
      emit(partial.length === need ? partial : partial.subarray(0, need));
    }
  }

  /** Reads prefix bytes from `chunk` at `at`; sets {@link #need} once the prefix ends. Returns where it stopped. */
  #readLength(chunk: Uint8Array, at: number): number {
    while (at < chunk.length) {
      const byte = chunk[at++]!;
      this.#prefix += (byte & 0x7f) * 0x80 ** this.#prefixBytes;
      this.#prefixBytes++;
      if (this.#prefix > this.#maxBytes || this.#prefixBytes > 5) {
        throw new NoatunError(ErrorCode.BAD_FRAME, `the peer sent a frame over ${this.#maxBytes} bytes`);
      }
      if ((byte & 0x80) === 0) {
        this.#need = this.#prefix;
        this.#prefix = 0;
        this.#prefixBytes = 0;
        return at;
      }
    }
    return at;
  }

  /** The frame's buffer with room for `bytes`, grown by doubling (at most to the frame's length). */
  #room(bytes: number): Uint8Array {
    const partial = this.#partial;
    if (partial !== undefined && partial.length >= bytes) return partial;
    const grown = new Uint8Array(Math.min(this.#need, Math.max(bytes, 2 * (partial?.length ?? 0), 256)));
    if (partial !== undefined) grown.set(partial.subarray(0, this.#filled));
    this.#partial = grown;
    return grown;
  }
}

export function varintLength(value: number): number {
  let length = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 0x80);
    length++;
  }
  return length;
}

export function writeVarint(value: number, into: Uint8Array): void {
  let i = 0;
  while (value >= 0x80) {
    into[i++] = (value & 0x7f) | 0x80;
    value = Math.floor(value / 0x80);
  }
  into[i] = value;
}

