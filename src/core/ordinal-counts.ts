/**
 * A count per ordinal, in two typed arrays with open addressing: the pruner's pool of candidates
 * and its count of pooled readers per event change for every event whose data was overwritten
 * (about half the events of the warehouse benchmark). As a `Set` and a `Map` of numbers they
 * allocated new tables as they grew and after deletions, and each operation cost a probe of V8's
 * ordered hash tables.
 */

/** Ordinals (u32, never 0: 0 marks an empty slot) to counts (u32; 0 is absence). */
export class OrdinalCounts {
  #keys = new Uint32Array(64);
  #values = new Uint32Array(64);
  #shift = 32 - 6;
  #size = 0;

  /** Ordinals with a count. */
  get size(): number {
    return this.#size;
  }

  /** The count of `ordinal` (0 when it has none). */
  get(ordinal: number): number {
    const keys = this.#keys;
    const mask = keys.length - 1;
    for (let i = this.#slot(ordinal); ; i = (i + 1) & mask) {
      const key = keys[i]!;
      if (key === ordinal) return this.#values[i]!;
      if (key === 0) return 0;
    }
  }

  /** Whether `ordinal` has a count. */
  has(ordinal: number): boolean {
    return this.get(ordinal) !== 0;
  }

  /** Adds `delta` to the count of `ordinal` (never below 0); at 0 the ordinal is removed. Returns the new count. */
  add(ordinal: number, delta: number): number {
    const keys = this.#keys;
    const mask = keys.length - 1;
    let i = this.#slot(ordinal);
    for (; keys[i] !== 0; i = (i + 1) & mask) {
      if (keys[i] === ordinal) {
        const value = Math.max(0, this.#values[i]! + delta);
        if (value === 0) this.#removeAt(i);
        else this.#values[i] = value;
        return value;
      }
    }
    if (delta <= 0) return 0;
    keys[i] = ordinal;
    this.#values[i] = delta;
    if (++this.#size * 2 > keys.length) this.#grow();
    return delta;
  }

  /** Removes `ordinal`'s count. */
  delete(ordinal: number): void {
    const keys = this.#keys;
    const mask = keys.length - 1;
    for (let i = this.#slot(ordinal); keys[i] !== 0; i = (i + 1) & mask) {
      if (keys[i] === ordinal) {
        this.#removeAt(i);
        return;
      }
    }
  }

  clear(): void {
    this.#keys = new Uint32Array(64);
    this.#values = new Uint32Array(64);
    this.#shift = 32 - 6;
    this.#size = 0;
  }

  /** Home slot: the high bits of a multiplicative hash, so consecutive ordinals spread. */
  #slot(ordinal: number): number {
    return Math.imul(ordinal, 0x9e3779b1) >>> this.#shift;
  }

  /**
   * Empties slot `i`, moving later entries of its probe chain back into the gap (no tombstones,
   * so lookups never slow down as entries come and go).
   */
  #removeAt(i: number): void {
    const keys = this.#keys;
    const values = this.#values;
    const mask = keys.length - 1;
    let gap = i;
    for (let j = (gap + 1) & mask; keys[j] !== 0; j = (j + 1) & mask) {
      const home = this.#slot(keys[j]!);
      // The entry at j may move to the gap unless its home lies cyclically in (gap, j].
      const stays = gap <= j ? home > gap && home <= j : home > gap || home <= j;
      if (stays) continue;
      keys[gap] = keys[j]!;
      values[gap] = values[j]!;
      gap = j;
    }
    keys[gap] = 0;
    values[gap] = 0;
    this.#size--;
  }

  #grow(): void {
    const keys = this.#keys;
    const values = this.#values;
    this.#keys = new Uint32Array(keys.length * 2);
    this.#values = new Uint32Array(keys.length * 2);
    this.#shift--;
    const mask = this.#keys.length - 1;
    for (let s = 0; s < keys.length; s++) {
      const key = keys[s]!;
      if (key === 0) continue;
      let i = this.#slot(key);
      while (this.#keys[i] !== 0) i = (i + 1) & mask;
      this.#keys[i] = key;
      this.#values[i] = values[s]!;
    }
  }
}
