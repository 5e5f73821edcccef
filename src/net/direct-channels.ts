/**
 * The libp2p link's direct channel ({@link Link.sendDirect}): one long-lived stream per neighbour
 * and direction (protocol {@link DIRECT_PROTOCOL}), opened by the sender on its first frame and
 * carrying varint-framed frames. The receiver only reads; each side writes on its own stream.
 *
 * Best effort, by design: a frame waits (in order) while its stream opens or the transport asks
 * us to wait for it to drain, up to {@link MAX_QUEUED_BYTES} per neighbour; beyond that, or when
 * the stream cannot be opened (the peer does not speak the protocol, the connection went), frames
 * are dropped. What is lost this way the replicator repairs: its relay asks another neighbour that
 * offered the event, and statuses that differ start a session.
 */
import type { Stream, StreamMessageEvent } from '@libp2p/interface';
import type { DirectHandler } from './link.js';
import { MAX_DIRECT_FRAME_BYTES } from './link.js';
import { FrameDecoder, prefixed } from './stream-framing.js';

/** The stream protocol of direct frames. */
export const DIRECT_PROTOCOL = '/noatun/direct/1.0.0';

/** Bytes waiting for one neighbour's stream (opening or draining); frames beyond are dropped. */
export const MAX_QUEUED_BYTES = 4 * 1024 * 1024;

/** After a stream could not be opened, frames to that neighbour are dropped this long before the next try. */
export const REOPEN_DELAY_MS = 10_000;

/** Our stream to one neighbour. */
interface Outbound {
  stream: Stream | undefined;
  /** Frames (prefixed) waiting for the stream to open or drain. */
  readonly queue: Uint8Array[];
  queuedBytes: number;
  /** Opening failed (the peer does not take direct frames, or the connection went): no new try before then (ms). */
  refusedUntil: number;
}

/** Every neighbour's direct streams, both ways. */
export class DirectChannels {
  readonly #open: (peerId: string) => Promise<Stream>;
  readonly #outbound = new Map<string, Outbound>();
  readonly #handlers: DirectHandler[] = [];
  /** Frames dropped (congestion, no stream), for tests and diagnostics. */
  dropped = 0;

  /** `open` opens a stream of {@link DIRECT_PROTOCOL} to a connected peer. */
  constructor(open: (peerId: string) => Promise<Stream>) {
    this.#open = open;
  }

  onFrame(handler: DirectHandler): void {
    this.#handlers.push(handler);
  }

  /**
   * Queues `frame` for `peerId` (see the module comment); false if it was dropped at once. Never
   * throws: a stream that closes under us (a hang-up marks its streams closing before their
   * `close` event) drops the frame and is replaced on the next one.
   */
  send(peerId: string, frame: Uint8Array): boolean {
    if (frame.length > MAX_DIRECT_FRAME_BYTES) return false;
    let out = this.#outbound.get(peerId);
    if (out !== undefined && out.refusedUntil !== 0) {
      if (out.refusedUntil > Date.now()) {
        this.dropped++;
        return false;
      }
      this.#outbound.delete(peerId);
      out = undefined;
    }
    if (out === undefined) {
      out = { stream: undefined, queue: [], queuedBytes: 0, refusedUntil: 0 };
      this.#outbound.set(peerId, out);
      this.#start(peerId, out);
    }
    const bytes = prefixed(frame);
    const stream = out.stream;
    if (stream !== undefined && out.queue.length === 0 && !stream.writableNeedsDrain) return this.#write(peerId, out, stream, bytes);
    if (out.queuedBytes + bytes.length > MAX_QUEUED_BYTES) {
      this.dropped++;
      return false;
    }
    out.queue.push(bytes);
    out.queuedBytes += bytes.length;
    return true;
  }

  /** The connection to `peerId` is gone: its stream with it (the next connection opens a new one). */
  forget(peerId: string): void {
    const out = this.#outbound.get(peerId);
    if (out === undefined) return;
    this.#drop(peerId, out);
    if (out.stream !== undefined && out.stream.status === 'open') out.stream.abort(new Error('connection lost'));
  }

  /** A neighbour's stream to us: every frame it carries goes to the handlers. */
  accept(stream: Stream, peerId: string): void {
    const decoder = new FrameDecoder(MAX_DIRECT_FRAME_BYTES);
    stream.addEventListener('message', (event: StreamMessageEvent) => {
      try {
        for (const chunk of event.data instanceof Uint8Array ? [event.data] : event.data) {
          decoder.push(chunk, (frame) => {
            for (const handler of this.#handlers) handler.frame(peerId, frame);
          });
        }
      } catch (error) {
        stream.abort(error as Error);
        for (const handler of this.#handlers) handler.fault(peerId, error as Error);
      }
    });
  }

  #start(peerId: string, out: Outbound): void {
    this.#open(peerId).then(
      (stream) => {
        if (this.#outbound.get(peerId) !== out || stream.status !== 'open' || stream.writeStatus !== 'writable') {
          // Forgotten meanwhile (the connection went), or closed already.
          if (stream.status === 'open') stream.abort(new Error('connection lost'));
          if (this.#outbound.get(peerId) === out) this.#drop(peerId, out);
          return;
        }
        out.stream = stream;
        stream.addEventListener('drain', () => this.#flush(peerId, out));
        // Gone (closed by the peer, reset, the connection lost): the next frame opens another.
        stream.addEventListener('close', () => this.#drop(peerId, out));
        this.#flush(peerId, out);
      },
      () => {
        // The peer does not take direct frames (an older version) or the connection went: drop
        // what waits, and what comes for a while.
        out.refusedUntil = Date.now() + REOPEN_DELAY_MS;
        this.dropped += out.queue.length;
        out.queue.length = 0;
        out.queuedBytes = 0;
      },
    );
  }

  /** Sends what waits, until the transport asks us to wait for its drain. */
  #flush(peerId: string, out: Outbound): void {
    const stream = out.stream;
    if (stream === undefined) return;
    while (out.queue.length !== 0 && !stream.writableNeedsDrain) {
      const bytes = out.queue.shift()!;
      out.queuedBytes -= bytes.length;
      if (!this.#write(peerId, out, stream, bytes)) return;
    }
  }

  /** Writes one prefixed frame; a stream that is no longer writable is dropped with what waits. */
  #write(peerId: string, out: Outbound, stream: Stream, bytes: Uint8Array): boolean {
    if (stream.status === 'open' && stream.writeStatus === 'writable') {
      try {
        stream.send(bytes);
        return true;
      } catch {
        // Closed between the check and the write: as below.
      }
    }
    this.dropped++;
    this.#drop(peerId, out);
    return false;
  }

  /** Forgets a neighbour's stream (if it is still the current one) and what waits for it. */
  #drop(peerId: string, out: Outbound): void {
    if (this.#outbound.get(peerId) === out) this.#outbound.delete(peerId);
    this.dropped += out.queue.length;
    out.queue.length = 0;
    out.queuedBytes = 0;
  }
}
