/**
 * An in-memory ordered set of 16-byte event ids that answers "how many ids, and what fingerprint,
 * between these two bounds?" in O(log n), for range-based set reconciliation.
 *
 * Structure: sorted blocks of at most {@link BLOCK_CAPACITY} ids (16 bytes each, packed in one
 * `Uint8Array` per block), each block keeping its count and the sum of its ids, plus a Fenwick tree
 * over the blocks holding those counts and sums. A query finds the block of each bound by binary
 * search over the blocks' first ids, takes the Fenwick prefix of the blocks before it and adds a
 * partial scan of at most half a block (from the front, or the block's sum minus its tail).
 *
 * Why this and not a B+tree with per-node aggregates: the same O(log n) queries with flat typed
 * arrays (cache-friendly, no per-id objects, 1M ids in ~16 MB), an O(n) build from sorted input, and
 * much less code to get right. The price is that a block split or removal shifts block positions
 * and forces an O(n / BLOCK_CAPACITY) Fenwick rebuild, done lazily before the next query; splits
 * happen at most once per BLOCK_CAPACITY / 2 inserts, and appends past the last id (the common
 * case: new events carry the current time) extend the tree in O(log n) without a rebuild.
 *
 * Fingerprint of a range: SHA-256 over (the sum of its ids as 128-bit big-endian numbers, modulo
 * 2^128, then the count as a 64-bit big-endian number), truncated to {@link FINGERPRINT_BYTES}. The
 * sum is what makes range fingerprints composable from per-block aggregates; hashing it with the
 * count keeps sets with equal sums but different sizes apart and spreads near sums over the output.
 *
 * Sums are kept in eight 16-bit limbs stored as float64 and never carried except when hashed: each
 * limb of a sum of n ids is below 2^16 * n, exact while n < 2^37, so updates are eight plain adds.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { ErrorCode, NoatunError } from '../errors.js';

/** Bytes of an event id. */
export const ID_BYTES = 16;

/**
 * Bytes of a range fingerprint: 12 (96 bits).
 *
 * A chance collision between two different honest ranges has probability 2^-96 per comparison,
 * which no deployment reaches. More bytes would not buy safety against a hostile peer: with an
 * additive sum, a peer that grinds content hashes can already build two different id sets with
 * equal sums and counts (a generalized birthday search), whatever the truncation; that only hides
 * the attacker's own crafted events, which still spread by gossip. Four bytes fewer than a 16-byte
 * fingerprint cut a fingerprint range's wire cost by about a fifth.
 */
export const FINGERPRINT_BYTES = 12;

/**
 * A bound in the id order: the id made of these bytes followed by zero bytes (so it may be a
 * prefix shorter than 16 bytes), or `null` for an open end (minus infinity as a lower bound, plus
 * infinity as an upper bound). An empty array is the smallest bound.
 */
export type IdBound = Uint8Array | null;

/**
 * Most ids in a block. A quarter of it bounds a partial scan (at most half a block is scanned,
 * from the cheaper end), and a split or removal costs a Fenwick rebuild over n / 256 blocks.
 */
const BLOCK_CAPACITY = 256;
/** Fill of the blocks built by `fromSorted`: room for out-of-order arrivals without splitting. */
const BUILD_FILL = 192;
/** A block this small is merged into a neighbour, so deletions do not leave a trail of crumbs. */
const MERGE_BELOW = BLOCK_CAPACITY / 4;
/** A merge only happens when the result leaves this much room, so merge and split do not alternate. */
const MERGE_UP_TO = (BLOCK_CAPACITY * 3) / 4;
/** 16-bit limbs of a sum (most significant first). */
const LIMBS = 8;

interface Block {
  /** `count` ids, increasing, 16 bytes each; capacity {@link BLOCK_CAPACITY}. */
  readonly ids: Uint8Array;
  count: number;
  /** Sum of the block's ids in {@link LIMBS} unnormalized limbs. */
  readonly sum: Float64Array;
}

function newBlock(): Block {
  return { ids: new Uint8Array(BLOCK_CAPACITY * ID_BYTES), count: 0, sum: new Float64Array(LIMBS) };
}

/** Compares the id at `ids[at..at+16)` with `bound` (zero-padded to 16 bytes). */
function compareIdAt(ids: Uint8Array, at: number, bound: Uint8Array): number {
  const n = bound.length;
  for (let i = 0; i < ID_BYTES; i++) {
    const d = ids[at + i]! - (i < n ? bound[i]! : 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** Adds `sign` times the id at `ids[at..at+16)` to the limbs `sum[offset..offset+8)`. */
function addId(sum: Float64Array, offset: number, ids: Uint8Array, at: number, sign: number): void {
  for (let l = 0; l < LIMBS; l++) sum[offset + l]! += sign * ((ids[at + 2 * l]! << 8) | ids[at + 2 * l + 1]!);
}

/** Sum of the ids `[from, to)` of a block into `out` (overwritten). */
function sumIds(out: Float64Array, block: Block, from: number, to: number): void {
  out.fill(0);
  for (let i = from; i < to; i++) addId(out, 0, block.ids, i * ID_BYTES, 1);
}

/** The fingerprint of a range with limb sum `sum` (any representation modulo 2^128) and `count` ids. */
function digest(sum: Float64Array, count: number): Uint8Array {
  const input = new Uint8Array(16 + 8);
  let carry = 0;
  for (let l = LIMBS - 1; l >= 0; l--) {
    const value = sum[l]! + carry;
    const digit = ((value % 0x10000) + 0x10000) % 0x10000;
    carry = (value - digit) / 0x10000;
    input[2 * l] = digit >>> 8;
    input[2 * l + 1] = digit & 0xff;
  }
  const view = new DataView(input.buffer);
  view.setUint32(16, Math.floor(count / 0x100000000), false);
  view.setUint32(20, count >>> 0, false);
  return sha256(input).slice(0, FINGERPRINT_BYTES);
}

function checkId(id: Uint8Array): void {
  if (id.length !== ID_BYTES) throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `an id has ${ID_BYTES} bytes, not ${id.length}`);
}

/**
 * The ordered id set with O(log n) range counts and fingerprints; see the module comment.
 *
 * @example
 * const index = FingerprintIndex.fromSorted(db.ids());
 * index.insert(newId);
 * const fp = index.fingerprint(lowerBound, null); // ids ≥ lowerBound
 */
export class FingerprintIndex {
  #blocks: Block[] = [];
  #size = 0;
  /** Fenwick tree over blocks, 1-based: counts, and {@link LIMBS} sum limbs per node. */
  #treeCount = new Float64Array(1);
  #treeSum = new Float64Array(LIMBS);
  /** Blocks covered by the tree (= blocks.length unless dirty). */
  #treeBlocks = 0;
  /** Block positions changed since the tree was built; it is rebuilt before the next query. */
  #dirty = false;
  /** Result of {@link #locate}: block and offset of the first id ≥ the bound. */
  #foundBlock = 0;
  #foundOffset = 0;
  readonly #scratch = new Float64Array(LIMBS);
  readonly #scratch2 = new Float64Array(LIMBS);

  /**
   * Builds an index from ids in strictly increasing byte order (e.g. a database's stored ids), in
   * O(n). Throws `INVALID_ARGUMENT` on an id that is not 16 bytes or out of order.
   */
  static fromSorted(ids: Iterable<Uint8Array>): FingerprintIndex {
    const index = new FingerprintIndex();
    const blocks = index.#blocks;
    let block: Block | undefined;
    let last: Uint8Array | undefined;
    let lastAt = 0;
    let size = 0;
    for (const id of ids) {
      checkId(id);
      if (last !== undefined && compareIdAt(last, lastAt, id) >= 0) {
        throw new NoatunError(ErrorCode.INVALID_ARGUMENT, 'FingerprintIndex.fromSorted: ids are not strictly increasing');
      }
      if (block === undefined || block.count === BUILD_FILL) {
        block = newBlock();
        blocks.push(block);
      }
      const at = block.count * ID_BYTES;
      // A byte loop: `set()` costs more than the copy for 16 bytes, and this runs per id.
      const target = block.ids;
      for (let i = 0; i < ID_BYTES; i++) target[at + i] = id[i]!;
      addId(block.sum, 0, target, at, 1);
      block.count++;
      size++;
      last = block.ids;
      lastAt = at;
    }
    index.#size = size;
    index.#dirty = true;
    return index;
  }

  /** Number of ids. */
  get size(): number {
    return this.#size;
  }

  /** Whether `id` is in the set. */
  has(id: Uint8Array): boolean {
    checkId(id);
    if (this.#blocks.length === 0) return false;
    const block = this.#blocks[this.#blockOf(id)]!;
    const at = this.#offsetIn(block, id);
    return at < block.count && compareIdAt(block.ids, at * ID_BYTES, id) === 0;
  }

  /**
   * Tells the index that `count` inserts follow (a batch of stored events). Each insert updates
   * the tree of block sums in O(log blocks); when that would cost more for the batch than
   * rebuilding the tree once, at the next query, in O(blocks), the tree is left to be rebuilt
   * instead. The answers are the same either way. (An initial copy stores batches of thousands;
   * inserting their ids took 3.6% of its receiver's time, 0.17 µs per id warm, 0.05 µs now.)
   */
  expectInserts(count: number): void {
    if (this.#dirty) return;
    const blocks = this.#blocks.length;
    if (count * Math.ceil(Math.log2(blocks + 2)) > 2 * blocks) this.#dirty = true;
  }

  /** Adds `id`; returns false if it was already present. O(log n) plus an occasional block split. */
  insert(id: Uint8Array): boolean {
    checkId(id);
    const blocks = this.#blocks;
    if (blocks.length === 0) {
      blocks.push(newBlock());
      this.#dirty = true;
    }
    let b = blocks.length - 1;
    let block = blocks[b]!;
    let at = block.count;
    // Ids mostly arrive in order (local writes, a copy): past the last id, no search is needed.
    if (at === 0 || compareIdAt(block.ids, (at - 1) * ID_BYTES, id) >= 0) {
      b = this.#blockOf(id);
      block = blocks[b]!;
      at = this.#offsetIn(block, id);
      if (at < block.count && compareIdAt(block.ids, at * ID_BYTES, id) === 0) return false;
    }
    if (block.count === BLOCK_CAPACITY) {
      if (b === blocks.length - 1 && at === block.count) {
        // Past the last id: start a new block rather than split, so appends leave full blocks.
        block = newBlock();
        blocks.push(block);
        b++;
        at = 0;
        this.#appendToTree();
      } else {
        const upper = newBlock();
        const half = BLOCK_CAPACITY / 2;
        upper.ids.set(block.ids.subarray(half * ID_BYTES, BLOCK_CAPACITY * ID_BYTES));
        upper.count = BLOCK_CAPACITY - half;
        block.count = half;
        sumIds(upper.sum, upper, 0, upper.count);
        sumIds(block.sum, block, 0, block.count);
        blocks.splice(b + 1, 0, upper);
        this.#dirty = true;
        if (at > half) {
          block = upper;
          b++;
          at -= half;
        }
      }
    }
    block.ids.copyWithin((at + 1) * ID_BYTES, at * ID_BYTES, block.count * ID_BYTES);
    block.ids.set(id, at * ID_BYTES);
    block.count++;
    addId(block.sum, 0, id, 0, 1);
    this.#size++;
    this.#updateTree(b, id, 1);
    return true;
  }

  /** Removes `id`; returns false if it was absent. O(log n) plus an occasional block merge. */
  delete(id: Uint8Array): boolean {
    checkId(id);
    const blocks = this.#blocks;
    if (blocks.length === 0) return false;
    const b = this.#blockOf(id);
    const block = blocks[b]!;
    const at = this.#offsetIn(block, id);
    if (at >= block.count || compareIdAt(block.ids, at * ID_BYTES, id) !== 0) return false;
    addId(block.sum, 0, block.ids, at * ID_BYTES, -1);
    this.#updateTree(b, block.ids.subarray(at * ID_BYTES, (at + 1) * ID_BYTES), -1);
    block.ids.copyWithin(at * ID_BYTES, (at + 1) * ID_BYTES, block.count * ID_BYTES);
    block.count--;
    this.#size--;
    if (block.count === 0) {
      blocks.splice(b, 1);
      this.#dirty = true;
    } else if (block.count < MERGE_BELOW) {
      if (b + 1 < blocks.length && block.count + blocks[b + 1]!.count <= MERGE_UP_TO) this.#merge(b);
      else if (b > 0 && block.count + blocks[b - 1]!.count <= MERGE_UP_TO) this.#merge(b - 1);
    }
    return true;
  }

  /** Number of ids below `bound` (`null`: all of them). */
  rank(bound: IdBound): number {
    if (bound === null) return this.#size;
    if (this.#size === 0) return 0;
    this.#refresh();
    this.#locate(bound);
    return this.#prefixCount(this.#foundBlock) + this.#foundOffset;
  }

  /** Number of ids in `[lo, hi)`; 0 when `hi` is not above `lo`. */
  count(lo: IdBound, hi: IdBound): number {
    return Math.max(0, this.rank(hi) - (lo === null ? 0 : this.rank(lo)));
  }

  /** The fingerprint ({@link FINGERPRINT_BYTES} bytes) of the ids in `[lo, hi)`. O(log n). */
  fingerprint(lo: IdBound, hi: IdBound): Uint8Array {
    const high = new Float64Array(LIMBS);
    const low = new Float64Array(LIMBS);
    const highCount = this.#prefixSum(hi, high);
    const lowCount = lo === null ? 0 : this.#prefixSum(lo, low);
    if (highCount <= lowCount) return digest(low.fill(0), 0);
    for (let l = 0; l < LIMBS; l++) high[l]! -= low[l]!;
    return digest(high, highCount - lowCount);
  }

  /** The id at `rank` (0-based, in id order), as a copy. O(log n). */
  at(rank: number): Uint8Array {
    if (!Number.isInteger(rank) || rank < 0 || rank >= this.#size) {
      throw new NoatunError(ErrorCode.INDEX_OUT_OF_RANGE, `rank ${rank} outside 0..${this.#size - 1}`);
    }
    this.#refresh();
    // Fenwick descent: the last block whose preceding blocks hold at most `rank` ids.
    const tree = this.#treeCount;
    const n = this.#treeBlocks;
    let position = 0;
    let rest = rank;
    for (let step = 1 << (31 - Math.clz32(n)); step > 0; step >>= 1) {
      const next = position + step;
      if (next <= n && tree[next]! <= rest) {
        position = next;
        rest -= tree[next]!;
      }
    }
    return this.#blocks[position]!.ids.slice(rest * ID_BYTES, (rest + 1) * ID_BYTES);
  }

  /**
   * The ids in `[lo, hi)` in increasing order, at most `limit` of them, as copies. The index must
   * not change while the iteration runs.
   */
  *ids(lo: IdBound, hi: IdBound, limit = Number.POSITIVE_INFINITY): Generator<Uint8Array, void, undefined> {
    if (this.#size === 0 || limit <= 0) return;
    const blocks = this.#blocks;
    let b = 0;
    let offset = 0;
    if (lo !== null) {
      this.#locate(lo);
      b = this.#foundBlock;
      offset = this.#foundOffset;
    }
    let yielded = 0;
    for (; b < blocks.length; b++, offset = 0) {
      const block = blocks[b]!;
      for (; offset < block.count; offset++) {
        const at = offset * ID_BYTES;
        if (hi !== null && compareIdAt(block.ids, at, hi) >= 0) return;
        yield block.ids.slice(at, at + ID_BYTES);
        if (++yielded >= limit) return;
      }
    }
  }

  /** Index of the last block whose first id is ≤ `id` (block 0 if none); blocks must exist. */
  #blockOf(id: Uint8Array): number {
    const blocks = this.#blocks;
    let lo = 0;
    let hi = blocks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (compareIdAt(blocks[mid]!.ids, 0, id) <= 0) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** Offset in `block` of its first id ≥ `bound`. */
  #offsetIn(block: Block, bound: Uint8Array): number {
    let lo = 0;
    let hi = block.count;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (compareIdAt(block.ids, mid * ID_BYTES, bound) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Sets {@link #foundBlock} and {@link #foundOffset} to the first id ≥ `bound`; blocks must exist. */
  #locate(bound: Uint8Array): void {
    const blocks = this.#blocks;
    // The last block whose first id is below the bound holds the answer, or ends just before it.
    let lo = 0;
    let hi = blocks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (compareIdAt(blocks[mid]!.ids, 0, bound) < 0) lo = mid;
      else hi = mid - 1;
    }
    this.#foundBlock = lo;
    this.#foundOffset = this.#offsetIn(blocks[lo]!, bound);
  }

  /** Count of the ids below `bound`, with their limb sum written to `out`. */
  #prefixSum(bound: IdBound, out: Float64Array): number {
    out.fill(0);
    if (this.#size === 0) return 0;
    this.#refresh();
    if (bound === null) {
      this.#treePrefix(this.#treeBlocks, out);
      return this.#size;
    }
    this.#locate(bound);
    const b = this.#foundBlock;
    const offset = this.#foundOffset;
    const count = this.#treePrefix(b, out);
    const block = this.#blocks[b]!;
    const part = this.#scratch;
    // Scan the shorter side of the block: the head, or the whole block minus the tail.
    if (offset <= block.count - offset) sumIds(part, block, 0, offset);
    else {
      sumIds(part, block, offset, block.count);
      for (let l = 0; l < LIMBS; l++) part[l] = block.sum[l]! - part[l]!;
    }
    for (let l = 0; l < LIMBS; l++) out[l]! += part[l]!;
    return count + offset;
  }

  /** Count of the ids in blocks `[0, b)`. */
  #prefixCount(b: number): number {
    const tree = this.#treeCount;
    let count = 0;
    for (let i = b; i > 0; i -= i & -i) count += tree[i]!;
    return count;
  }

  /** Count and limb sum (added to `out`) of the blocks `[0, b)`. */
  #treePrefix(b: number, out: Float64Array): number {
    const counts = this.#treeCount;
    const sums = this.#treeSum;
    let count = 0;
    for (let i = b; i > 0; i -= i & -i) {
      count += counts[i]!;
      for (let l = 0; l < LIMBS; l++) out[l]! += sums[i * LIMBS + l]!;
    }
    return count;
  }

  /** Adds `sign` times `id` to block `b`'s entries of the tree (skipped while a rebuild is due). */
  #updateTree(b: number, id: Uint8Array, sign: number): void {
    if (this.#dirty) return;
    const counts = this.#treeCount;
    const sums = this.#treeSum;
    for (let i = b + 1; i <= this.#treeBlocks; i += i & -i) {
      counts[i]! += sign;
      addId(sums, i * LIMBS, id, 0, sign);
    }
  }

  /** Extends the tree by a new last block in O(log n) (its ids are added later by {@link #updateTree}). */
  #appendToTree(): void {
    if (this.#dirty) return;
    const i = this.#treeBlocks + 1;
    this.#reserveTree(i);
    // Node i covers blocks (i - lowbit(i), i]; all but the new (empty) one already exist.
    const from = i - (i & -i);
    const high = this.#scratch.fill(0);
    const low = this.#scratch2.fill(0);
    const count = this.#treePrefix(i - 1, high) - this.#treePrefix(from, low);
    this.#treeCount[i] = count;
    for (let l = 0; l < LIMBS; l++) this.#treeSum[i * LIMBS + l] = high[l]! - low[l]!;
    this.#treeBlocks = i;
  }

  /** Merges block `b + 1` into block `b`. */
  #merge(b: number): void {
    const blocks = this.#blocks;
    const into = blocks[b]!;
    const from = blocks[b + 1]!;
    into.ids.set(from.ids.subarray(0, from.count * ID_BYTES), into.count * ID_BYTES);
    into.count += from.count;
    for (let l = 0; l < LIMBS; l++) into.sum[l]! += from.sum[l]!;
    blocks.splice(b + 1, 1);
    this.#dirty = true;
  }

  /** Makes room in the tree arrays for `n` blocks. */
  #reserveTree(n: number): void {
    if (this.#treeCount.length > n) return;
    const capacity = Math.max(n + 1, this.#treeCount.length * 2);
    const counts = new Float64Array(capacity);
    counts.set(this.#treeCount);
    const sums = new Float64Array(capacity * LIMBS);
    sums.set(this.#treeSum);
    this.#treeCount = counts;
    this.#treeSum = sums;
  }

  /** Rebuilds the tree from the blocks' aggregates in O(blocks) when positions changed. */
  #refresh(): void {
    if (!this.#dirty) return;
    const blocks = this.#blocks;
    const n = blocks.length;
    this.#reserveTree(n);
    const counts = this.#treeCount;
    const sums = this.#treeSum;
    counts.fill(0);
    sums.fill(0);
    for (let i = 1; i <= n; i++) {
      const block = blocks[i - 1]!;
      counts[i]! += block.count;
      for (let l = 0; l < LIMBS; l++) sums[i * LIMBS + l]! += block.sum[l]!;
      const parent = i + (i & -i);
      if (parent <= n) {
        counts[parent]! += counts[i]!;
        for (let l = 0; l < LIMBS; l++) sums[parent * LIMBS + l]! += sums[i * LIMBS + l]!;
      }
    }
    this.#treeBlocks = n;
    this.#dirty = false;
  }
}

/**
 * The bound that starts the ids of millisecond `time`: its 48-bit big-endian timestamp prefix. Ids
 * at or after a cutoff are those ≥ `timeBound(cutoff)`.
 */
export function timeBound(time: number): Uint8Array {
  if (!Number.isSafeInteger(time) || time < 0 || time >= 2 ** 48) {
    throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `time ${time} is not a 48-bit millisecond count`);
  }
  const out = new Uint8Array(6);
  let t = time;
  for (let i = 5; i >= 0; i--) {
    out[i] = t % 256;
    t = Math.floor(t / 256);
  }
  return out;
}
