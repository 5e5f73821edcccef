/**
 * Helpers for view tests: open a view in a fresh temp dir, and a tracking context that records
 * what an event reports.
 */
import { tempDir } from '../helpers/temp.js';
import type { ObjectSchema } from '../../src/view/schema.js';
import type { Ordinal, TrackingContext } from '../../src/view/tracking.js';
import { MaterializedView } from '../../src/view/view.js';

export function openView<R extends ObjectSchema<unknown>>(root: R, directory = tempDir(), maxViewBytes?: number) {
  return MaterializedView.open(maxViewBytes === undefined ? { directory, root } : { directory, root, maxViewBytes });
}

/** Records reads, writes and destroys of one event. */
export class Recorder implements TrackingContext {
  ordinal: Ordinal;
  reads: number[] = [];
  writes: { previous: number; opaque: boolean }[] = [];
  destroys: number[] = [];

  constructor(ordinal: number) {
    this.ordinal = ordinal as Ordinal;
  }

  onRead(owner: Ordinal): void {
    this.reads.push(owner);
  }

  onWrite(previousOwner: Ordinal, opaque: boolean): void {
    this.writes.push({ previous: previousOwner, opaque });
  }

  onDestroy(previousOwner: Ordinal): void {
    this.destroys.push(previousOwner);
  }

  reset(ordinal = this.ordinal): this {
    this.ordinal = ordinal as Ordinal;
    this.reads = [];
    this.writes = [];
    this.destroys = [];
    return this;
  }
}
