/**
 * What "the same database" means, for tests that compare peers: the same stored ids, the same
 * cutoff hashes (`cutoffState()`: time, hash, previous time, previous hash), the same view with
 * maps in their iteration order (see {@link orderedView}), and the same failed applies. Also the
 * two references those tests compare against:
 *
 * - the reference peer, fed every written event in id order and in time (its clock set to each
 *   event's timestamp as it arrives), never rebuilt, compacted or reopened;
 * - the fixed point: a fresh database that ingests a peer's stored events holds the same ids and
 *   view at once, and once both clocks have moved past every hold (the cutoff interval plus two
 *   strides, with no new events) the same ids, cutoff hashes and view.
 *
 * Every helper uses the public API only.
 */
import { Database, MessageId, type s } from '../../src/index.js';
import { type App, orderedView } from './apps.js';
import { FakeClock } from './temp.js';

export type AnyDb = Database<unknown, ReturnType<typeof s.object>>;

/** The smallest cutoff interval the engine accepts: cutoff steps come every minute with it. */
export const MIN_INTERVAL = 120_000;

/** How far a clock must move, with no new events, to pass every hold: the interval and two strides (and a minute of rounding). */
export function holdClearance(intervalMs: number, strideMs: number): number {
  return intervalMs + 2 * strideMs + 60_000;
}

/** Stored ids in id order, as hex. */
export function storedIds(db: { ids(): Iterable<Uint8Array> }): string[] {
  return [...db.ids()].map((id) => Buffer.from(id).toString('hex'));
}

/** The cutoff state as one comparable string. */
export function cutoffKey(db: { cutoffState(): { time: number; hash: Uint8Array; previousTime: number; previousHash: Uint8Array } }): string {
  const c = db.cutoffState();
  return `time ${c.time} hash ${Buffer.from(c.hash).toString('hex')} previous ${c.previousTime} ${Buffer.from(c.previousHash).toString('hex')}`;
}

/**
 * Where the database's cutoff hashes differ from their definition (the XOR of the ids it stores
 * from before the cutoff, and from before the previous time), for messages; undefined when they
 * agree. A hash that lags its events never heals, and two peers holding the same events then
 * never agree that they are synced.
 */
export function cutoffHashMismatch(db: {
  cutoffState(): { time: number; hash: Uint8Array; previousTime: number; previousHash: Uint8Array };
  ids(): Iterable<Uint8Array>;
}): string | undefined {
  const state = db.cutoffState();
  const hash = new Uint8Array(state.hash.length);
  const previousHash = new Uint8Array(state.previousHash.length);
  for (const id of db.ids()) {
    const time = MessageId.fromBytes(id).timestamp;
    if (time >= state.time) break;
    for (let i = 0; i < hash.length; i++) hash[i]! ^= id[i]!;
    if (time < state.previousTime) for (let i = 0; i < previousHash.length; i++) previousHash[i]! ^= id[i]!;
  }
  const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');
  if (hex(hash) === hex(state.hash) && hex(previousHash) === hex(state.previousHash)) return undefined;
  return `cutoff ${state.time}: hash ${hex(state.hash)} previous ${hex(state.previousHash)}, but the stored ids give ${hex(hash)} and ${hex(previousHash)}`;
}

/** Ids of the events whose apply failed, sorted. */
export function failureIds(db: { failures(): readonly { readonly id: MessageId }[] }): string[] {
  return db
    .failures()
    .map((f) => f.id.toString())
    .sort();
}

/** Where two strings first differ, with some context of both: for messages. */
export function firstDifference(a: string, b: string, context = 90): string {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  const from = Math.max(0, i - context);
  return `at char ${i}: …${a.slice(from, i + context)}… vs …${b.slice(from, i + context)}…`;
}

/** The difference of two id lists, for messages: counts and the first few on each side with their times. */
export function describeIdDifference(mine: readonly string[], theirs: readonly string[], cutoff?: number): string {
  const a = new Set(mine);
  const b = new Set(theirs);
  const onlyA = mine.filter((id) => !b.has(id));
  const onlyB = theirs.filter((id) => !a.has(id));
  const show = (ids: string[]) =>
    ids
      .slice(0, 3)
      .map((id) => {
        const time = MessageId.parse(id).timestamp;
        return `${id.slice(0, 12)}…@${time}${cutoff === undefined ? '' : time < cutoff ? ' (behind the cutoff)' : ''}`;
      })
      .join(', ');
  return `${mine.length} vs ${theirs.length} stored; only the first: ${onlyA.length} [${show(onlyA)}]; only the second: ${onlyB.length} [${show(onlyB)}]`;
}

export interface StateOptions {
  /** Compare `stats().failedApplies` and the ids of `failures()` too. */
  readonly failures?: boolean;
}

/**
 * How database `a` differs from `b` (named for the message): stored ids, cutoff hashes, view in
 * iteration order, and failures. Undefined when they are equal.
 */
export function stateDifference(a: AnyDb, b: AnyDb, names: readonly [string, string], options: StateOptions = {}): string | undefined {
  const [na, nb] = names;
  const idsA = storedIds(a);
  const idsB = storedIds(b);
  if (idsA.join() !== idsB.join()) {
    // Why the side that keeps an event keeps it, for the first few of each side.
    const setA = new Set(idsA);
    const setB = new Set(idsB);
    const why = (db: AnyDb, ids: string[], name: string) =>
      ids.slice(0, 2).map((id) => `${name} keeps ${id.slice(0, 12)}… because: ${db.explain(MessageId.parse(id)).keptBecause.join('; ') || 'no reason'}`);
    const reasons = [...why(a, idsA.filter((id) => !setB.has(id)), na), ...why(b, idsB.filter((id) => !setA.has(id)), nb)];
    return `${na} and ${nb} store other events: ${describeIdDifference(idsA, idsB, a.cutoffTime)}${reasons.length === 0 ? '' : ` (${reasons.join('; ')}; pruning paused until ${a.stats().pruningPausedUntil} and ${b.stats().pruningPausedUntil})`}`;
  }
  if (cutoffKey(a) !== cutoffKey(b)) return `${na} and ${nb} have other cutoff hashes: ${cutoffKey(a)} vs ${cutoffKey(b)}`;
  const va = orderedView(a);
  const vb = orderedView(b);
  if (va !== vb) return `${na} and ${nb} have other views (maps in iteration order) ${firstDifference(va, vb)}`;
  if (options.failures !== false) {
    const fa = a.stats().failedApplies;
    const fb = b.stats().failedApplies;
    if (fa !== fb) return `${na} counts ${fa} failed applies, ${nb} ${fb}`;
    const la = failureIds(a).join();
    const lb = failureIds(b).join();
    if (la !== lb) return `${na} lists failures [${la}], ${nb} [${lb}]`;
  }
  return undefined;
}

export interface OpenOptions {
  readonly path: string;
  readonly now: () => number;
  readonly intervalMs: number;
  readonly autoPrune?: boolean;
  /** `DatabaseOptions.lateWorkShare` (the engine's default when omitted). */
  readonly lateWorkShare?: number | undefined;
  /** `DatabaseOptions.commitMode` (the engine's default when omitted). */
  readonly commitMode?: 'sync' | 'async' | undefined;
}

export function openApp(app: App<unknown>, options: OpenOptions): Promise<AnyDb> {
  return Database.open({
    path: options.path,
    root: app.root,
    apply: app.apply as never,
    now: options.now,
    cutoffIntervalMs: options.intervalMs,
    autoPrune: options.autoPrune ?? true,
    ...(options.lateWorkShare === undefined ? {} : { lateWorkShare: options.lateWorkShare }),
    ...(options.commitMode === undefined ? {} : { commitMode: options.commitMode }),
    // The randomized tests' apps must be deterministic: each local batch is applied twice.
    checkDeterminism: true,
  }) as Promise<AnyDb>;
}

/**
 * The reference peer: every event in id order, each ingested with the clock at its timestamp
 * (plus 3 ms) so nothing ever arrives late, the cutoff moving as it goes. Returns it with its
 * clock: the caller sets the clock to the swarm's final time, calls `advanceCutoff()`, and closes
 * it.
 */
export async function referencePeer(
  app: App<unknown>,
  events: readonly { readonly id: MessageId; readonly bytes: Uint8Array }[],
  path: string,
  intervalMs: number,
): Promise<{ db: AnyDb; clock: FakeClock }> {
  const clock = new FakeClock(0);
  const db = await openApp(app, { path, now: clock.now, intervalMs });
  const sorted = [...events].sort((a, b) => MessageId.compare(a.id, b.id));
  for (const event of sorted) {
    clock.time = Math.max(clock.time, event.id.timestamp + 3);
    await db.ingest([event.bytes]);
  }
  return { db, clock };
}

/**
 * Waits until `db` has stored the events it deferred (events behind the cutoff that land before
 * others are stored within a budget of re-application time, see `Database.ingest`); a database
 * that cannot settle within 30 s is left as it is, and the comparison that follows reports it.
 */
export async function settled(db: AnyDb): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (db.stats().deferred !== 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
}

/** How a fresh database gets a peer's stored events in {@link fixedPointDifference}. */
export type IngestStyle = 'in-order' | 'scrambled';

/**
 * The fixed-point check of `source` (open, its clock at `clock`): a fresh database at `freshPath`
 * with the same clock ingests the source's stored events (in id order in one batch, or shuffled
 * in random batches with duplicates) and must hold the same ids and view at once; then `clock`
 * moves past every hold, both advance their cutoffs, and ids, cutoff hashes, views and failures
 * must be equal. Returns what differed, or undefined. Closes the fresh database, not the source.
 */
export async function fixedPointDifference(
  app: App<unknown>,
  source: AnyDb,
  clock: FakeClock,
  freshPath: string,
  intervalMs: number,
  style: IngestStyle,
  random: () => number,
): Promise<string | undefined> {
  const fresh = await openApp(app, { path: freshPath, now: clock.now, intervalMs });
  try {
    // The source may have joined a peer's era a stride early (the replicator does that); so does
    // its copy, as its replicator would on the source's status.
    if (source.cutoffTime > fresh.cutoffTime) fresh.advanceCutoff(source.cutoffTime);
    const frames = [...source.messages()].map((m) => m.bytes.slice());
    if (style === 'in-order') await fresh.ingest(frames);
    else {
      const pool = [...frames];
      for (let i = pool.length - 1; i > 0; i--) {
        const j = Math.floor(random() * (i + 1));
        [pool[i], pool[j]] = [pool[j]!, pool[i]!];
      }
      while (pool.length > 0) {
        const batch = pool.splice(0, 1 + Math.floor(random() * 12));
        if (random() < 0.2 && frames.length > 0) batch.push(frames[Math.floor(random() * frames.length)]!);
        await fresh.ingest(batch);
      }
    }
    await settled(fresh);
    const at = `cutoff ${source.cutoffTime}, ${frames.length} events ingested ${style}`;
    const idsS = storedIds(source);
    const idsF = storedIds(fresh);
    if (idsS.join() !== idsF.join()) {
      // (Parked: the source holds an event after the cutoff without its parent.)
      const waiting = `the fresh copy has ${fresh.stats().parked} parked, ${fresh.stats().deferred} deferred`;
      return `fixed point (${at}): the fresh copy stores other events at once: ${describeIdDifference(idsS, idsF, source.cutoffTime)}; ${waiting}`;
    }
    const vs = orderedView(source);
    const vf = orderedView(fresh);
    if (vs !== vf) return `fixed point (${at}): the fresh copy has another view at once ${firstDifference(vs, vf)}`;
    clock.advance(holdClearance(intervalMs, source.cutoffStrideMs));
    source.advanceCutoff();
    fresh.advanceCutoff();
    const after = stateDifference(source, fresh, ['the source', 'its fresh copy']);
    return after === undefined ? undefined : `fixed point (${at}), after the clock passed every hold: ${after}`;
  } finally {
    await fresh.close();
  }
}
