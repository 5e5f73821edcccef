/**
 * The length-prefixed framing of libp2p streams (`src/net/stream-framing.ts`): frames come out
 * exactly as they went in however the bytes are cut, and a peer that sends a frame in tiny pieces
 * cannot make the decoder hold much more than it sent.
 */
import test from 'ava';
import { FrameDecoder, prefixed } from '../../src/net/stream-framing.js';
import { prng } from '../helpers/temp.js';

test('frames come out whole and in order however the stream is cut (seeded)', (t) => {
  for (let round = 0; round < 40; round++) {
    const seed = 0x5eed + round;
    const random = prng(seed);
    const frames: Uint8Array[] = [];
    for (let i = 0; i < 30; i++) {
      // Empty frames, frames around the 1- and 2-byte prefix boundaries, and larger ones.
      const sizes = [0, 1, 127, 128, 129, 16_383, 16_384, Math.floor(random() * 70_000)];
      const frame = new Uint8Array(sizes[Math.floor(random() * sizes.length)]!);
      for (let j = 0; j < frame.length; j++) frame[j] = Math.floor(random() * 256);
      frames.push(frame);
    }
    const stream = Buffer.concat(frames.map((frame) => prefixed(frame)));
    const decoder = new FrameDecoder(100_000);
    const out: Uint8Array[] = [];
    for (let at = 0; at < stream.length; ) {
      // Pieces of 1 byte up to a few frames' worth.
      const size = random() < 0.3 ? 1 + Math.floor(random() * 4) : 1 + Math.floor(random() * 90_000);
      decoder.push(stream.subarray(at, at + size), (frame) => out.push(frame.slice()));
      at += size;
    }
    t.false(decoder.inFrame, `seed ${seed}: nothing left over`);
    t.is(out.length, frames.length, `seed ${seed}`);
    for (let i = 0; i < frames.length; i++) {
      if (Buffer.compare(out[i]!, frames[i]!) !== 0) {
        t.fail(`seed ${seed}: frame ${i} differs`);
        return;
      }
    }
  }
  t.pass();
});

test('a frame sent in small pieces is held in one buffer of at most twice the bytes received (256 at first)', (t) => {
  const frame = new Uint8Array(1_000_000).fill(7);
  const stream = prefixed(frame);
  const decoder = new FrameDecoder();
  let received = 0;
  let out: Uint8Array | undefined;
  let worst = 0;
  // Pieces of 100 bytes (a frame in many pieces must average 64 at least).
  for (let at = 0; at < stream.length; at += 100) {
    const piece = stream.subarray(at, at + 100);
    decoder.push(piece, (whole) => {
      out = whole;
    });
    received += piece.length;
    worst = Math.max(worst, decoder.heldBytes / Math.max(received, 256));
  }
  t.true(worst <= 2, `held ${worst.toFixed(2)} bytes per byte received`);
  t.is(decoder.heldBytes, 0, 'the buffer is let go with the frame');
  t.is(out?.length, frame.length);
  t.is(Buffer.compare(out!, frame), 0);
});

test('a frame sent a byte at a time is refused once it has come in hundreds of pieces', (t) => {
  const stream = prefixed(new Uint8Array(100_000));
  const decoder = new FrameDecoder();
  let pushed = 0;
  const error = t.throws(() => {
    for (; pushed < stream.length; pushed++) decoder.push(stream.subarray(pushed, pushed + 1), () => {});
  });
  t.is((error as { code?: string }).code, 'BAD_FRAME');
  t.regex(error!.message, /in 257 pieces of 1 bytes on average/);
  t.true(pushed < 300, `refused after ${pushed} bytes`);
  // Small frames that each come whole are never counted, however many.
  const small = new FrameDecoder();
  let frames = 0;
  for (let i = 0; i < 10_000; i++) small.push(prefixed(Uint8Array.of(i & 0xff)), () => frames++);
  t.is(frames, 10_000);
});

test('a length over the limit is refused as soon as the prefix says so', (t) => {
  const decoder = new FrameDecoder(1000);
  t.throws(() => decoder.push(Uint8Array.of(0xe9, 0x07), () => {}), { code: 'BAD_FRAME' });
  // A prefix of more than five bytes is refused even if its value is small.
  t.throws(() => new FrameDecoder(1000).push(Uint8Array.of(0x80, 0x80, 0x80, 0x80, 0x80, 0x00), () => {}), { code: 'BAD_FRAME' });
  // Split across pushes, the same.
  const split = new FrameDecoder(1000);
  split.push(Uint8Array.of(0xe9), () => {});
  t.true(split.inFrame);
  t.throws(() => split.push(Uint8Array.of(0x07), () => {}), { code: 'BAD_FRAME' });
});
