/**
 * Capped exponential backoff with jitter: the delays of retries that must never spin (resyncing
 * with a peer whose status keeps differing, re-dialling a peer that is down) nor give up.
 */

/** Options of a {@link Backoff}. */
export interface BackoffOptions {
  /** The first delay, in ms. */
  readonly minMs: number;
  /** The largest delay, in ms. */
  readonly maxMs: number;
  /**
   * Each delay is multiplied by a random factor in `[1 - jitter, 1 + jitter]`, so peers that
   * failed together do not retry in step.
   * @default 0.2
   */
  readonly jitter?: number;
  /** Randomness in [0, 1) (tests inject a seeded one). @default Math.random */
  readonly random?: () => number;
}

/** Delays that double from `minMs` to `maxMs` on each failure and start over after a success. */
export class Backoff {
  readonly #minMs: number;
  readonly #maxMs: number;
  readonly #jitter: number;
  readonly #random: () => number;
  #failures = 0;

  constructor(options: BackoffOptions) {
    this.#minMs = Math.max(0, options.minMs);
    this.#maxMs = Math.max(this.#minMs, options.maxMs);
    this.#jitter = Math.min(1, Math.max(0, options.jitter ?? 0.2));
    this.#random = options.random ?? Math.random;
  }

  /** Failures since the last {@link reset}. */
  get failures(): number {
    return this.#failures;
  }

  /** Records a failure and returns the delay before the next attempt. */
  next(): number {
    // 2^30 × minMs is past any cap; stopping the exponent there keeps it finite.
    const base = Math.min(this.#maxMs, this.#minMs * 2 ** Math.min(this.#failures, 30));
    this.#failures++;
    const factor = 1 + this.#jitter * (2 * this.#random() - 1);
    return Math.round(Math.min(this.#maxMs, base * factor));
  }

  /** After a success: the next failure waits `minMs` again. */
  reset(): void {
    this.#failures = 0;
  }
}
