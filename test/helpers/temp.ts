/**
 * Test helpers: temporary directories removed after the test file, and a controllable clock.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const made: string[] = [];

/** A fresh empty directory under the OS temp dir; removed by {@link removeTempDirs}. */
export function tempDir(prefix = 'noatun-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  made.push(dir);
  return dir;
}

/** Removes every directory made by {@link tempDir} in this process. */
export function removeTempDirs(): void {
  for (const dir of made.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
}

/** 2020-01-01T00:00:00Z, the spec's T0. */
export const T0 = Date.UTC(2020, 0, 1);

/** A clock tests move by hand. */
export class FakeClock {
  time: number;

  constructor(start = T0) {
    this.time = start;
  }

  /** The function to pass as `now`. */
  readonly now = (): number => this.time;

  advance(ms: number): void {
    this.time += ms;
  }
}

/** A small seeded PRNG (mulberry32) for reproducible randomized tests. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The seed for a randomized test: NOATUN_SEED if set, else a fresh one (always printed). */
export function testSeed(): number {
  const fromEnv = process.env.NOATUN_SEED;
  return fromEnv === undefined ? (Math.random() * 2 ** 32) >>> 0 : Number.parseInt(fromEnv, 10) >>> 0;
}
