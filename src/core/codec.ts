/**
 * Payload codecs: how an application's events become the bytes inside an envelope.
 */
import { Packr } from 'msgpackr';

/** Turns events into bytes and back. `decode(encode(e))` must give an equal event. */
export interface Codec<E> {
  encode(event: E): Uint8Array;
  decode(bytes: Uint8Array): E;
}

/**
 * The default codec: MessagePack (msgpackr) without records or structured cloning, so the bytes
 * are plain MessagePack that any implementation can read.
 */
export function messagePackCodec<E>(): Codec<E> {
  const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: 'bigint' });
  return {
    encode: (event) => packr.pack(event),
    decode: (bytes) => packr.unpack(bytes) as E,
  };
}
