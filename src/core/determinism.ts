/**
 * The determinism check (`Database.open({ checkDeterminism: true })`): a batch is applied a second
 * time, from the same view, in a world whose clock and random numbers differ — `Date.now()`,
 * `new Date()`, `performance.now()` and `Math.random()` answer differently — and the words each
 * event wrote are compared. An `apply` that reads anything besides the event, the view and `ctx`
 * shows up as a difference, here on the author's machine, before the event is shared (where it
 * would make peers disagree). It costs a second apply of every local batch; it is for development
 * and tests.
 */

/** What one application of a batch wrote: the words changed per event, and the new memory. */
export interface BatchImprint {
  /** Per event (in apply order): word → value after the batch. */
  readonly events: readonly ReadonlyMap<number, number>[];
  /** The allocation top after the batch. */
  readonly top: number;
  /** Words of the memory allocated by the batch. */
  readonly fresh: Uint32Array;
}

/**
 * Runs `fn` with the clock shifted by a day and `Math.random` replaced by another sequence, so
 * that an `apply` that reads either writes something else than it did the first time.
 */
export function inAnotherWorld<T>(fn: () => T): T {
  const RealDate = globalThis.Date;
  const realRandom = Math.random;
  const realPerformanceNow = performance.now;
  const shift = 86_400_000 + 12_345;
  let seed = 0x9e3779b9;
  const ShiftedDate = new Proxy(RealDate, {
    construct(target, args, newTarget) {
      return Reflect.construct(target, args.length === 0 ? [RealDate.now() + shift] : args, newTarget);
    },
    apply() {
      return new RealDate(RealDate.now() + shift).toString();
    },
    get(target, property, receiver) {
      if (property === 'now') return () => RealDate.now() + shift;
      return Reflect.get(target, property, receiver);
    },
  });
  globalThis.Date = ShiftedDate;
  Math.random = () => {
    seed = (Math.imul(seed ^ (seed >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    return seed / 2 ** 32;
  };
  performance.now = () => realPerformanceNow.call(performance) + shift;
  try {
    return fn();
  } finally {
    globalThis.Date = RealDate;
    Math.random = realRandom;
    performance.now = realPerformanceNow;
  }
}

/** The index of the first event whose writes differ between two imprints, or -1 when equal. */
export function firstDifference(a: BatchImprint, b: BatchImprint): number {
  const n = Math.max(a.events.length, b.events.length);
  for (let i = 0; i < n; i++) {
    const x = a.events[i];
    const y = b.events[i];
    if (x === undefined || y === undefined || x.size !== y.size) return i;
    for (const [word, value] of x) if (y.get(word) !== value) return i;
  }
  if (a.top !== b.top || a.fresh.length !== b.fresh.length) return Math.max(0, n - 1);
  for (let i = 0; i < a.fresh.length; i++) if (a.fresh[i] !== b.fresh[i]) return Math.max(0, n - 1);
  return -1;
}
