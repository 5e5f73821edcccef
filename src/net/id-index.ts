/**
 * An ordered set of 16-byte event ids with cheap range fingerprints, for set reconciliation.
 *
 * Ids sort by their bytes (the database's apply order). They are kept in blocks of at most
 * {@link BLOCK_IDS} ids, each block with its count and the sum of its ids (a 128-bit number,
 * modulo 2^128). Prefix sums over the blocks are rebuilt lazily after a change, so the sum of any
 * range of ranks costs a binary search plus at most two partial block scans — never a scan of the
 * whole set, which for millions of ids would cost milliseconds per reconciliation round.
 *
 * A range's fingerprint is SHA-256 of (sum, count), truncated to {@link FINGERPRINT_BYTES}. An
 * additive sum (rather than XOR) keeps fingerprints of different sets apart even when a peer
 * crafts ids, because hashing the sum with the count makes collisions a search over SHA-256.
 */
import { hash } from 'node:crypto';

/** Bytes of an event id. */
export const ID_BYTES = 16;
/** Bytes of a range fingerprint (128 bits: a chance collision is out of reach). */
export const FINGERPRINT_BYTES = 16;
/** Largest block; a full block splits in two. */
const BLOCK_IDS = 512;

interface Block {
  /** `count` ids, sorted, 16 bytes each (capacity {@link BLOCK_IDS}). */
  ids: Uint8Array;
  count: number;
  /** Sum of the block's ids (kept up to date on every insert and delete). */
  sum: Float64Array;
}

function newBlock(): Block {
  return { ids: new Uint8Array(BLOCK_IDS * ID_BYTES), count: 0, sum: new Float64Array(4) };
}

/** Sum of a block's ids, from scratch. */
function blockSum(block: Block): Float64Array {
  const sum = new Float64Array(4);
  for (let i = 0; i < block.count; i++) addId(sum, block.ids, i * ID_BYTES);
  return sum;
}

/** `a += b` modulo 2^128. */
function addSum(a: Float64Array, b: Float64Array): void {
  let carry = 0;
  for (let limb = 3; limb >= 0; limb--) {
    const total = a[limb]! + b[limb]! + carry;
    carry = total >= 0x100000000 ? 1 : 0;
    a[limb] = total - carry * 0x100000000;
  }
}

/** Compares `a[ai..ai+16)` with `b[bi..bi+16)`. */
function compareAt(a: Uint8Array, ai: number, b: Uint8Array, bi: number, length = ID_BYTES): number {
  for (let i = 0; i < length; i++) {
    const d = a[ai + i]! - b[bi + i]!;
    if (d !== 0) return d;
  }
  return 0;
}

/** Adds the id at `ids[at..at+16)` (a big-endian 128-bit number) to the 4-limb sum `sum`. */
function addId(sum: Float64Array, ids: Uint8Array, at: number): void {
  let carry = 0;
  for (let limb = 3; limb >= 0; limb--) {
    const o = at + limb * 4;
    const word = ids[o]! * 0x1000000 + (ids[o + 1]! << 16) + (ids[o + 2]! << 8) + ids[o + 3]!;
    const total = sum[limb]! + word + carry;
    carry = total >= 0x100000000 ? 1 : 0;
    sum[limb] = total - carry * 0x100000000;
  }
}

/** `a - b` modulo 2^128 into `out` (4 limbs, most significant first). */
function subtract(out: Float64Array, a: Float64Array, b: Float64Array): void {
  let borrow = 0;
  for (let limb = 3; limb >= 0; limb--) {
    let d = a[limb]! - b[limb]! - borrow;
    borrow = d < 0 ? 1 : 0;
    if (d < 0) d += 0x100000000;
    out[limb] = d;
  }
}

/** The ordered id set; see the module comment. */
export class IdIndex {
  #blocks: Block[] = [];
  #size = 0;
  /** Prefix counts and sums over blocks (`#prefixSum` has 4 limbs per block boundary). */
  #prefixCount: number[] = [0];
  #prefixSum = new Float64Array(4);
  #dirty = false;

  /** Builds an index from ids already in increasing order (e.g. `db.ids()`), in O(n). */
  static fromSorted(ids: Iterable<Uint8Array>): IdIndex {
    const index = new IdIndex();
    let block: Block | undefined;
    let last: Uint8Array | undefined;
    for (const id of ids) {
      if (last !== undefined && compareAt(id, 0, last, 0) <= 0) throw new Error('IdIndex.fromSorted: ids are not strictly increasing');
      if (block === undefined || block.count === BLOCK_IDS / 2) {
        block = newBlock();
        index.#blocks.push(block);
      }
      block.ids.set(id, block.count * ID_BYTES);
      addId(block.sum, block.ids, block.count * ID_BYTES);
      block.count++;
      index.#size++;
      last = block.ids.subarray((block.count - 1) * ID_BYTES, block.count * ID_BYTES);
    }
    index.#dirty = true;
    return index;
  }

  /** Number of ids. */
  get size(): number {
    return this.#size;
  }

  /**
   * Index of the block that would hold `id`: the last block whose first id is ≤ it (or, with a
   * shorter `length`, whose first id is below the bound `id` followed by zeros), else block 0.
   */
  #blockFor(id: Uint8Array, length = ID_BYTES): number {
    const blocks = this.#blocks;
    const limit = length === ID_BYTES ? 0 : -1;
    let lo = 0;
    let hi = blocks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (compareAt(blocks[mid]!.ids, 0, id, 0, length) <= limit) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** Position in `block` of the first id ≥ `key` (compared on the first `length` bytes). */
  #positionIn(block: Block, key: Uint8Array, length = ID_BYTES): number {
    let lo = 0;
    let hi = block.count;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (compareAt(block.ids, mid * ID_BYTES, key, 0, length) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Whether `id` is in the set. */
  has(id: Uint8Array): boolean {
    if (this.#size === 0) return false;
    const block = this.#blocks[this.#blockFor(id)]!;
    const at = this.#positionIn(block, id);
    return at < block.count && compareAt(block.ids, at * ID_BYTES, id, 0) === 0;
  }

  /** Adds `id`; returns false if it was present. */
  insert(id: Uint8Array): boolean {
    if (id.length !== ID_BYTES) throw new Error(`an id has ${ID_BYTES} bytes`);
    if (this.#blocks.length === 0) this.#blocks.push(newBlock());
    const b = this.#blockFor(id);
    const block = this.#blocks[b]!;
    const at = this.#positionIn(block, id);
    if (at < block.count && compareAt(block.ids, at * ID_BYTES, id, 0) === 0) return false;
    block.ids.copyWithin((at + 1) * ID_BYTES, at * ID_BYTES, block.count * ID_BYTES);
    block.ids.set(id, at * ID_BYTES);
    addId(block.sum, id, 0);
    block.count++;
    this.#size++;
    if (block.count === BLOCK_IDS) {
      const half = BLOCK_IDS / 2;
      const upper = newBlock();
      upper.ids.set(block.ids.subarray(half * ID_BYTES, BLOCK_IDS * ID_BYTES));
      upper.count = half;
      upper.sum = blockSum(upper);
      block.count = half;
      block.sum = blockSum(block);
      this.#blocks.splice(b + 1, 0, upper);
    }
    this.#dirty = true;
    return true;
  }

  /** Removes `id`; returns false if it was absent. */
  delete(id: Uint8Array): boolean {
    if (this.#size === 0) return false;
    const b = this.#blockFor(id);
    const block = this.#blocks[b]!;
    const at = this.#positionIn(block, id);
    if (at >= block.count || compareAt(block.ids, at * ID_BYTES, id, 0) !== 0) return false;
    const negative = new Float64Array(4);
    addId(negative, block.ids, at * ID_BYTES);
    subtract(block.sum, block.sum, negative);
    block.ids.copyWithin(at * ID_BYTES, (at + 1) * ID_BYTES, block.count * ID_BYTES);
    block.count--;
    this.#size--;
    if (block.count === 0 && this.#blocks.length > 1) this.#blocks.splice(b, 1);
    this.#dirty = true;
    return true;
  }

  /**
   * Number of ids smaller than `bound`, a key of up to 16 bytes standing for itself followed by
   * zero bytes (`null` is past every id).
   */
  rank(bound: Uint8Array | null): number {
    if (bound === null) return this.#size;
    if (this.#size === 0) return 0;
    this.#refresh();
    const b = this.#blockFor(bound, bound.length);
    return this.#prefixCount[b]! + this.#positionIn(this.#blocks[b]!, bound, bound.length);
  }

  /** The id at `rank` (0-based), as a view valid until the next change. */
  at(rank: number): Uint8Array {
    if (rank < 0 || rank >= this.#size) throw new RangeError(`rank ${rank} outside 0..${this.#size - 1}`);
    this.#refresh();
    const b = this.#blockOfRank(rank);
    const offset = (rank - this.#prefixCount[b]!) * ID_BYTES;
    return this.#blocks[b]!.ids.subarray(offset, offset + ID_BYTES);
  }

  /** Copies of the ids with ranks in [from, to). */
  slice(from: number, to: number): Uint8Array[] {
    const out: Uint8Array[] = [];
    for (let r = from; r < to; r++) out.push(this.at(r).slice());
    return out;
  }

  /** The fingerprint of the ids with ranks in [from, to). */
  fingerprint(from: number, to: number): Uint8Array {
    const sum = new Float64Array(4);
    subtract(sum, this.#prefixSumAt(to), this.#prefixSumAt(from));
    const input = new Uint8Array(20);
    const view = new DataView(input.buffer);
    for (let limb = 0; limb < 4; limb++) view.setUint32(limb * 4, sum[limb]!);
    view.setUint32(16, to - from);
    return new Uint8Array(hash('sha256', input, 'buffer').subarray(0, FINGERPRINT_BYTES));
  }

  /** Sum of the ids with rank < `rank`. */
  #prefixSumAt(rank: number): Float64Array {
    const out = new Float64Array(4);
    if (rank === 0 || this.#size === 0) return out;
    this.#refresh();
    const b = rank === this.#size ? this.#blocks.length : this.#blockOfRank(rank);
    out.set(this.#prefixSum.subarray(b * 4, b * 4 + 4));
    if (b < this.#blocks.length) {
      const block = this.#blocks[b]!;
      const n = rank - this.#prefixCount[b]!;
      for (let i = 0; i < n; i++) addId(out, block.ids, i * ID_BYTES);
    }
    return out;
  }

  /** The block holding `rank` (prefix counts must be fresh). */
  #blockOfRank(rank: number): number {
    const prefix = this.#prefixCount;
    let lo = 0;
    let hi = this.#blocks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (prefix[mid]! <= rank) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** Recomputes the prefix counts and sums after a change. */
  #refresh(): void {
    if (!this.#dirty) return;
    const blocks = this.#blocks;
    const counts = new Array<number>(blocks.length + 1);
    const sums = new Float64Array((blocks.length + 1) * 4);
    counts[0] = 0;
    const running = new Float64Array(4);
    for (let b = 0; b < blocks.length; b++) {
      const block = blocks[b]!;
      addSum(running, block.sum);
      counts[b + 1] = counts[b]! + block.count;
      sums.set(running, (b + 1) * 4);
    }
    this.#prefixCount = counts;
    this.#prefixSum = sums;
    this.#dirty = false;
  }
}
