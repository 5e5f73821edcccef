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
 * Splits received bytes into frames: an unsigned LEB128 (varint) length, then that many bytes.
 * A length over the decoder's limit throws `BAD_FRAME` as soon as the prefix is read.
 */
export class FrameDecoder {
  readonly #maxBytes: number;
  readonly #chunks: Uint8Array[] = [];
  #buffered = 0;
  /** Length of the frame being assembled, once its prefix was read; -1 between frames. */
  #need = -1;

  /** `maxBytes`: the largest frame accepted (a session's {@link MAX_FRAME_BYTES} by default). */
  constructor(maxBytes: number = MAX_FRAME_BYTES) {
    this.#maxBytes = maxBytes;
  }

  /** Bytes of an unfinished frame are buffered (the peer must not end here). */
  get inFrame(): boolean {
    return this.#buffered > 0 || this.#need > 0;
  }

  push(chunk: Uint8Array, emit: (frame: Uint8Array) => void): void {
    if (chunk.length > 0) {
      this.#chunks.push(chunk);
      this.#buffered += chunk.length;
    }
    for (;;) {
      if (this.#need < 0 && !this.#readLength()) return;
      if (this.#buffered < this.#need) return;
      emit(this.#take(this.#need));
      this.#need = -1;
    }
  }

  #readLength(): boolean {
    let value = 0;
    let scale = 1;
    let used = 0;
    for (const chunk of this.#chunks) {
      for (const byte of chunk) {
        used++;
        value += (byte & 0x7f) * scale;
        if (value > this.#maxBytes || used > 5) throw new NoatunError(ErrorCode.BAD_FRAME, `the peer sent a frame over ${this.#maxBytes} bytes`);
        if ((byte & 0x80) === 0) {
          this.#take(used);
          this.#need = value;
          return true;
        }
        scale *= 0x80;
      }
    }
    return false;
  }

  /** Removes and returns the first `n` buffered bytes (a view when they sit in one chunk). */
  #take(n: number): Uint8Array {
    this.#buffered -= n;
    const first = this.#chunks[0];
    if (first !== undefined && first.length >= n) {
      if (first.length === n) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.#chunks[0]!;
      const part = Math.min(chunk.length, n - filled);
      out.set(chunk.subarray(0, part), filled);
      filled += part;
      if (part === chunk.length) this.#chunks.shift();
      else this.#chunks[0] = chunk.subarray(part);
    }
    return out;
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

