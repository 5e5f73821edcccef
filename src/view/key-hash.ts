/**
 * Deterministic hashes for map keys. Never randomized: a map's bucket layout is part of the view
 * file and must mean the same thing after a restart and on every peer.
 */

/** Mixes a 32-bit integer (the murmur3 finalizer): good spread for sequential keys. */
export function hashU32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

/** Hashes `length` bytes of `bytes` from `start` (FNV-1a, then mixed). */
export function hashBytes(bytes: Uint8Array, start: number, length: number): number {
  let h = 0x811c9dc5;
  const end = start + length;
  for (let i = start; i < end; i++) {
    h ^= bytes[i]!;
    h = Math.imul(h, 0x01000193);
  }
  return hashU32(h ^ length);
}
