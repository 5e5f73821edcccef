/**
 * Hashes for map keys, keyed by the view's secret seed (`Arena.hashSeed`, chosen at random when
 * the view file is made and kept in its header). Peers choose map keys (they are in events'
 * payloads): with fixed hashes, anyone could choose keys that share a table position, and every
 * peer applying them would pay the table's size for each insert and lookup (60,000 such keys: 18×
 * slower inserts, 100× slower lookups). A map's bucket layout is not observable (maps iterate in
 * insertion order), so views of the same events may lay their tables out differently.
 * Seed 0 (a view made before the seed) gives the hashes as they were before it.
 */

/**
 * Mixes a 32-bit integer (the murmur3 finalizer): good spread for sequential keys. A key is mixed
 * as `hashU32(key ^ seed)`, a bijection of the key that only the seed's holder can invert.
 */
export function hashU32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

/** Hashes `length` bytes of `bytes` from `start` (FNV-1a from the seed, then mixed). */
export function hashBytes(bytes: Uint8Array, start: number, length: number, seed: number): number {
  let h = 0x811c9dc5 ^ seed;
  const end = start + length;
  for (let i = start; i < end; i++) {
    h ^= bytes[i]!;
    h = Math.imul(h, 0x01000193);
  }
  return hashU32(h ^ length);
}
