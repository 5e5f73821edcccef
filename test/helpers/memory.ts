/**
 * Test helper: how much memory a piece of work costs this isolate, heap and external (array
 * buffers, Buffers) separately. Test files run in worker threads side by side, so the figures come
 * from V8's statistics of this isolate, not from the process (`process.memoryUsage().external`
 * would count the other files' buffers too).
 */
import * as v8 from 'node:v8';
import * as vm from 'node:vm';

v8.setFlagsFromString('--expose-gc');
/** One full garbage collection, now (the memory of dead array buffers follows a moment later). */
export const gc = vm.runInNewContext('gc') as () => void;

/** Heap in use and external memory of this isolate, in bytes. */
export function memoryNow(): { heap: number; external: number } {
  const stats = v8.getHeapStatistics();
  return { heap: stats.used_heap_size, external: stats.external_memory };
}

/**
 * Runs full garbage collections until external memory settles: V8 frees the memory of dead
 * array buffers a moment after the collection that found them, not during it.
 */
export async function collectGarbage(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 30));
  }
}

/** Growth over the baseline, in MiB. */
export interface MemoryGrowth {
  /** Largest growth seen while watching (sampled every `intervalMs`). */
  readonly peakHeapMiB: number;
  readonly peakExternalMiB: number;
  /** Growth after the work, once garbage is collected: what stays. */
  readonly heapMiB: number;
  readonly externalMiB: number;
}

const MIB = 1024 * 1024;

/**
 * Watches memory from now (after a garbage collection, the baseline) until {@link stop}: samples
 * the peak while the work runs, and what remains after a final collection.
 */
export class MemoryWatch {
  readonly #base: { heap: number; external: number };
  #peakHeap = 0;
  #peakExternal = 0;
  readonly #timer: NodeJS.Timeout;

  private constructor(base: { heap: number; external: number }, intervalMs: number) {
    this.#base = base;
    this.#timer = setInterval(() => this.#sample(), intervalMs);
    // A test that fails before `stop` must not keep its worker alive (ava would wait forever).
    this.#timer.unref();
  }

  /** Starts watching, after a garbage collection. */
  static async start(intervalMs = 20): Promise<MemoryWatch> {
    await collectGarbage();
    return new MemoryWatch(memoryNow(), intervalMs);
  }

  #sample(): void {
    const now = memoryNow();
    this.#peakHeap = Math.max(this.#peakHeap, now.heap - this.#base.heap);
    this.#peakExternal = Math.max(this.#peakExternal, now.external - this.#base.external);
  }

  /** Stops watching and returns the growth. */
  async stop(): Promise<MemoryGrowth> {
    clearInterval(this.#timer);
    this.#sample();
    await collectGarbage();
    const after = memoryNow();
    return {
      peakHeapMiB: this.#peakHeap / MIB,
      peakExternalMiB: this.#peakExternal / MIB,
      heapMiB: (after.heap - this.#base.heap) / MIB,
      externalMiB: (after.external - this.#base.external) / MIB,
    };
  }
}

/** A one-line account of a growth, for `t.log`. */
export function describeGrowth(growth: MemoryGrowth): string {
  const f = (n: number) => n.toFixed(1);
  return `heap +${f(growth.heapMiB)} MiB (peak +${f(growth.peakHeapMiB)}), external +${f(growth.externalMiB)} MiB (peak +${f(growth.peakExternalMiB)})`;
}
