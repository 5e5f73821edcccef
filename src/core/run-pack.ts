/**
 * Packed runs (log format 3): a stretch of the log's runs behind the cutoff, merged into one run
 * and compressed, stored as one LMDB value under the first id. The log packs them in the
 * background (see `EventLog.packBefore`); reading one unpacks it into a plain run (see
 * `log-run.ts`), so everything that reads runs reads packed ones alike.
 *
 * Layout, little-endian:
 *
 * | field        | bytes |
 * |--------------|-------|
 * | zero         | 4 (where a plain run has its count, never 0: this tells the two apart) |
 * | codec        | 1 ({@link Codec}) |
 * | zero         | 3 |
 * | plain length | 4 (the bytes of the run it unpacks to) |
 * | compressed   | the plain run, compressed by the codec |
 *
 * Why: the runs take most of the database's disk (95 bytes per event in the warehouse benchmark),
 * and zstd at level 1 shrinks 32 KiB of them 2.7× (BENCHMARKS.md, run Q). Packing only what is
 * behind the cutoff leaves the write path and recent reads alone: events there are final and
 * rarely read (a rebuild, a peer's initial copy), and a change to one (pruning) unpacks its run.
 */
import * as zlib from 'node:zlib';
import { ErrorCode, NoatunError } from '../errors.js';
import { nativeZstdCompress } from '../view/mapped-file.js';

/** How a packed run is compressed: the codec byte of its header. */
export const Codec = {
  /** zstd (Node ≥ 22.15), level 1, with its checksum of the content. */
  Zstd: 1,
  /** zlib's deflate, level 1, with its checksum: where Node has no zstd. */
  Deflate: 2,
} as const;
/** A codec byte. */
export type Codec = (typeof Codec)[keyof typeof Codec];

/** Bytes before the compressed data. */
export const PACK_HEADER_BYTES = 12;

/** Node's zstd, when it has one (from 22.15 and 23.8). */
const zstd = typeof zlib.zstdCompress === 'function' && typeof zlib.zstdDecompressSync === 'function';

/** The codec new packed runs are written with. */
export const PACK_CODEC: Codec = zstd ? Codec.Zstd : Codec.Deflate;

/** Whether a stored run value is packed (a plain run starts with its count, never 0). */
export function isPacked(value: Uint8Array): boolean {
  return value.byteLength >= 4 && value[0] === 0 && value[1] === 0 && value[2] === 0 && value[3] === 0;
}

/**
 * Compresses the plain run `plain` on the calling thread; returns the packed value, or undefined
 * when compressing failed or saved less than an eighth (the run stays plain).
 *
 * Not on Node's thread pool: a one-shot asynchronous compression makes a compression context per
 * call. Starting one took the main thread about as long (31–46 µs for 32 KiB with zstd) as the
 * whole synchronous compression does (28–38 µs), and the pool then spent 204–233 µs of CPU on it
 * against 33–48 µs in all for the synchronous one (BENCHMARKS.md, run T).
 */
export function pack(plain: Buffer): Buffer | undefined {
  // The packed value may take at most this much, or it stays plain.
  const room = plain.byteLength - (plain.byteLength >>> 3);
  if (PACK_CODEC === Codec.Zstd) {
    native ??= nativeZstdCompress() ?? null;
    if (native !== null) return packNatively(native, plain, room);
  }
  let compressed: Buffer;
  try {
    compressed =
      PACK_CODEC === Codec.Zstd
        ? // The checksum (4 bytes) makes a damaged pack fail to unpack instead of unpacking to other bytes.
          zlib.zstdCompressSync(plain, { params: { [zlib.constants.ZSTD_c_compressionLevel]: 1, [zlib.constants.ZSTD_c_checksumFlag]: 1 } })
        : zlib.deflateSync(plain, { level: 1 });
  } catch {
    return undefined;
  }
  if (PACK_HEADER_BYTES + compressed.byteLength > room) return undefined;
  const packed = Buffer.allocUnsafe(PACK_HEADER_BYTES + compressed.byteLength);
  writeHeader(packed, plain.byteLength);
  packed.set(compressed, PACK_HEADER_BYTES);
  return packed;
}

/** The addon's zstd (see `zstdCompress` in native/mmap.c); null where there is none (resolved at the first pack). */
let native: ((input: Uint8Array, output: Uint8Array, at: number) => number) | null | undefined;
/** Where {@link packNatively} compresses to before the packed value is copied out at its size. */
let scratch = Buffer.allocUnsafeSlow(0);

/**
 * {@link pack} with the addon's zstd: the same frame (level 1, with its checksum), from a context
 * the thread keeps, where `node:zlib` makes one for each call: its making cost as much as the
 * compression of a 32 KiB run (BENCHMARKS.md, run AC). Compressed into a reused buffer with room
 * for `room` bytes at most: a run that would not save an eighth does not fit there.
 */
function packNatively(compress: (input: Uint8Array, output: Uint8Array, at: number) => number, plain: Buffer, room: number): Buffer | undefined {
  if (room <= PACK_HEADER_BYTES) return undefined;
  if (scratch.byteLength < room) scratch = Buffer.allocUnsafeSlow(Math.max(room, 64 * 1024));
  let length: number;
  try {
    length = compress(plain, scratch.subarray(0, room), PACK_HEADER_BYTES);
  } catch {
    return undefined;
  }
  if (length < 0) return undefined;
  const packed = Buffer.allocUnsafe(PACK_HEADER_BYTES + length);
  writeHeader(packed, plain.byteLength);
  scratch.copy(packed, PACK_HEADER_BYTES, PACK_HEADER_BYTES, PACK_HEADER_BYTES + length);
  return packed;
}

/**
 * Chooses how zstd packs are compressed: `'native'` (the addon's, the default where it has one) or
 * `'zlib'` (`node:zlib`). For tests, which try both; returns whether the addon has one.
 */
export function choosePackCompressor(kind: 'native' | 'zlib'): boolean {
  const found = nativeZstdCompress();
  native = kind === 'native' ? (found ?? null) : null;
  return found !== undefined;
}

/** Writes a packed value's header (see the layout above) for a plain run of `plainBytes`. */
function writeHeader(packed: Buffer, plainBytes: number): void {
  packed.writeUInt32LE(0, 0);
  packed.writeUInt32LE(PACK_CODEC, 4);
  packed.writeUInt32LE(plainBytes, 8);
}

/**
 * The plain run a packed value holds. Throws `CORRUPT_FILE` (naming `runKey`) when the value is
 * damaged or does not unpack to its recorded length, and when it was packed with zstd and this
 * Node has none (the message says which Node reads it).
 */
export function unpack(value: Uint8Array, runKey: Uint8Array): Uint8Array {
  const damaged = (reason: string): NoatunError =>
    new NoatunError(ErrorCode.CORRUPT_FILE, `the event log's packed run ${Buffer.from(runKey).toString('hex')} is damaged: ${reason}`);
  if (value.byteLength < PACK_HEADER_BYTES) throw damaged('shorter than its header');
  const view = new DataView(value.buffer, value.byteOffset, value.byteLength);
  const codec = view.getUint32(4, true);
  const length = view.getUint32(8, true);
  const compressed = value.subarray(PACK_HEADER_BYTES);
  let plain: Buffer;
  try {
    if (codec === Codec.Zstd) {
      if (!zstd) {
        throw new NoatunError(
          ErrorCode.CORRUPT_FILE,
          'the event log holds runs packed with zstd, which this Node lacks: open it with Node 22.15 or later',
        );
      }
      plain = zlib.zstdDecompressSync(compressed, { maxOutputLength: Math.max(length, 1) });
    } else if (codec === Codec.Deflate) {
      plain = zlib.inflateSync(compressed, { maxOutputLength: Math.max(length, 1) });
    } else {
      throw damaged(`unknown codec ${codec}`);
    }
  } catch (error) {
    if (error instanceof NoatunError) throw error;
    throw damaged(`it does not decompress (${(error as Error).message})`);
  }
  if (plain.byteLength !== length) throw damaged(`it unpacks to ${plain.byteLength} bytes, not ${length}`);
  return new Uint8Array(plain.buffer, plain.byteOffset, plain.byteLength);
}
