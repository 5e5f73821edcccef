/**
 * How the view reports data dependencies to its user (the engine's projector).
 *
 * Every tracked datum in the arena has a 32-bit tracker word next to it holding the ordinal of
 * the event that wrote it last (its owner), or {@link NO_OWNER}. While an event is applied, the
 * view calls the context for every tracked read and write, so the engine can keep use counts and
 * read edges for pruning. The view knows nothing else about events.
 */

/**
 * An event's position in apply order, as stored in trackers. Branded so it cannot be mixed up
 * with arena offsets or counts. Ordinal 0 is "no event".
 */
export type Ordinal = number & { readonly __brand: 'Ordinal' };

/** Brands a number as an {@link Ordinal}. */
export function asOrdinal(value: number): Ordinal {
  return value as Ordinal;
}

/** The callbacks through which a write session reports what the running event touches. */
export interface TrackingContext {
  /** The ordinal of the event being applied; it becomes the owner of everything it writes. */
  readonly ordinal: Ordinal;
  /**
   * The event read a datum owned by `owner` (which may be {@link NO_OWNER}, e.g. a map lookup
   * that found nothing reads the map's membership). Not called for data the event owns itself.
   */
  onRead(owner: Ordinal): void;
  /**
   * The event took ownership of a datum previously owned by `previousOwner` (possibly
   * {@link NO_OWNER}). `opaque` is true for opaque data, which can never be read inside apply.
   * Not called when the event already owns the datum.
   */
  onWrite(previousOwner: Ordinal, opaque: boolean): void;
  /**
   * The event destroyed a datum owned by `previousOwner` (map delete, list pop, clear): the event
   * is a tombstone. Called with {@link NO_OWNER} for a delete that found nothing.
   */
  onDestroy(previousOwner: Ordinal): void;
}

/** A tracking context that records nothing: for writes that are not part of an event. */
export const untracked: TrackingContext = {
  ordinal: 0 as Ordinal,
  onRead() {},
  onWrite() {},
  onDestroy() {},
};
