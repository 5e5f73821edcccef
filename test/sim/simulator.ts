/**
 * The swarm simulator: 3–10 peers on the in-memory network, a seeded workload and fault schedule,
 * and a virtual clock whose cutoff moves during the run (the smallest interval the engine
 * allows, two minutes, so the cutoff steps every minute).
 *
 * Faults of the base schedule: gossip loss, duplication and reordering (jitter), delay,
 * partitions and heals, bounded clock skew (±20 s, within a stride), backdated appends, peers
 * closed and reopened from disk. Added faults, drawn from a stream of their own (see
 * {@link FAULTS}): the clock jumps one to five minutes, mostly while the swarm is partitioned or
 * a peer is closed, so events arrive behind cutoffs while peers prune; `compact()` and
 * `advanceCutoff()` on random peers; reopening with a deleted, damaged or truncated view file or
 * without its undo history; unclean kills (the peer's files copied while it runs, the copy
 * reopened); transactions; events placed just before or after a recent one; stored events handed
 * straight to a peer's `ingest` in random order and batches; new peers joining mid-run; the
 * fixed-point check (below) on a copy of a random peer, mid-run; and, in about four seeds of ten,
 * a hostile peer (`test/helpers/hostile-peer.ts`, a stream of its own) that gossips garbage,
 * mutated frames, out-of-range and far-future statuses, forged envelopes and floods of
 * duplicates, and leaves sessions stalled or fills them with garbage: the honest peers must
 * refuse it and still converge. In a third of the seeds the peers open with `lateWorkShare` at
 * 0.5%, so costly late events wait in memory (`deferred`) far more often; in a third (drawn apart)
 * they commit on their own thread (`commitMode: 'sync'`) rather than on lmdb-js's writer.
 *
 * Checks, after every partition heals, every peer reopens and all are synced:
 * 1. every peer has the same view, maps compared in iteration order (no sorting), equal to the
 *    reference peer's and, for the apps with a model (bank, catalog, shelves), to a plain-JS replay;
 * 2. the clock then moves past every hold (the cutoff interval plus two strides after the last
 *    delivery), every peer advances its cutoff and syncs again: every peer equals the reference
 *    peer — stored ids, both cutoff hashes, view, the failed-apply count and the ids of
 *    `failures()`;
 * 3. the fixed point on one or two random peers: a fresh database that ingests the peer's stored
 *    events (in order, or shuffled in random batches) holds the same ids and view, and after both
 *    clocks pass every hold the same ids, cutoff hashes and view.
 *
 * The reference peer is a database fed every written event in id order and in time (its clock at
 * each event's timestamp), then set to the swarm's final clock. A schedule in which peers wrote
 * while cut off from each other for longer than the interval is exempt from comparing with it
 * (by design others may already have pruned what such late events would have read): there, peers
 * are compared with each other and with the fixed point. The simulator decides it from what it
 * saw: every peer reports, through `subscribe`, the events it stored while they were not yet
 * behind its cutoff ("in time"); the schedule is exempt when two written events have no peer that
 * stored both in time (each was only ever in time where the other was not). A peer that is away
 * (closed or partitioned) while the clock passes the cutoff and then stores events late makes it
 * exempt too: meanwhile the others may have pruned an event together with the events that
 * deleted or overwrote it, and the one that was away brings the first back, behind everyone's
 * cutoff, without the rest (it agrees with the others once they have taken it back, not with a
 * peer that never saw it). The same when any peer stores an event again that it pruned longer ago
 * than it remembers pruned ids: the hostile peer replays old events (docs/SECURITY.md).
 *
 * The seed fixes the workload, the faults and the network's randomness; the interleaving of
 * timers and disk I/O is real, so a replay repeats the scenario, not every microsecond of it.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type Database, MessageId, messagePackCodec, NoatunError } from '../../src/index.js';
import { MemoryNetwork } from '../../src/net/memory-link.js';
import { Replicator } from '../../src/net/replicator.js';
import { HostilePeer } from '../helpers/hostile-peer.js';
import { type App, apps, bank, catalog, ordered, orderedView, positions, registry, shelves, timedEvents, warehouse } from '../helpers/apps.js';
import {
  type AnyDb,
  cutoffHashMismatch,
  fixedPointDifference,
  firstDifference,
  holdClearance,
  MIN_INTERVAL,
  openApp,
  referencePeer,
  stateDifference,
} from '../helpers/convergence.js';
import { FakeClock, prng, T0 } from '../helpers/temp.js';
import { EventLog } from '../../src/core/log.js';

// Packs of 1 KiB of runs (not 32): the log packs what falls behind the cutoff as these tests go.
EventLog.defaultPackBytes = 1024;

const INTERVAL = Number(process.env.SIM_INTERVAL ?? MIN_INTERVAL);
const MINUTE = 60_000;
/** Clock skews are drawn in [-SKEW, SKEW). */
const SKEW = 20_000;
/** How long the simulator waits for the swarm to sync before it reports no convergence. */
const CONVERGE_MS = Number(process.env.SIM_CONVERGE_MS ?? 30_000);
/** `SIM_TRACE=1`: a failure to converge prints every store and removal of the events not on every peer. */
const TRACE = process.env.SIM_TRACE;
/** What SIM_TRACE records (stores and removals, every peer), for the failure message. */
const history: string[] = [];
/**
 * Where seeds keep their files: SIM_DIR, else /dev/shm when present (the files are real LMDB
 * environments and mapped views either way; a RAM disk makes their msyncs and clean-up cheap).
 */
const SIM_DIR = process.env.SIM_DIR ?? (fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir());

/** The faults added to the base schedule; each can be switched off (`npm run sim -- --faults …`). */
export const FAULTS = ['jump', 'compact', 'advance', 'damage', 'kill', 'transaction', 'placement', 'scramble', 'join', 'fixpoint', 'hostile'] as const;
export type Fault = (typeof FAULTS)[number];

export interface SimOptions {
  /** Run this app instead of the seed's. */
  readonly app?: string;
  /** The added faults to use (default: all). */
  readonly faults?: ReadonlySet<Fault>;
}

/** What one seed did and whether it held. */
export interface SimResult {
  readonly seed: number;
  readonly ok: boolean;
  readonly message: string;
  readonly app: string;
  readonly peers: number;
  readonly events: number;
  readonly ms: number;
  /** Peers wrote while cut off from each other: compared with each other, not with the reference. */
  readonly exempt: boolean;
  /** The added faults that ran, with counts (e.g. "jump 3, kill 1"). */
  readonly faults: string;
  /** Events stored by some peer behind its cutoff. */
  readonly late: number;
}

type Db = Database<unknown, App<unknown>['root']>;

interface SimPeer {
  readonly id: string;
  /** Position in the in-time bitmasks. */
  readonly index: number;
  dir: string;
  readonly skew: number;
  db: Db | undefined;
  replicator: Replicator | undefined;
}

interface Written {
  readonly id: MessageId;
  readonly bytes: Uint8Array;
  readonly payload: Uint8Array;
}

/** The command that replays a seed. */
export function replayCommand(seed: number): string {
  return `npm run sim -- --seed ${seed}`;
}

/** The app of a seed: the first three by the seed's own stream, then warehouse, catalog and shelves by streams of their own. */
function appOf(seed: number, random: () => number): App<unknown> {
  const first = [bank, positions, registry][Math.floor(random() * 3)]! as App<unknown>;
  // Apps that came later are chosen from streams of their own, so that every seed that does not
  // get them replays the scenario it did before (the regression seeds among them).
  if (prng((seed ^ 0xc2b2ae35) >>> 0)() < 0.25) return warehouse as App<unknown>;
  if (prng((seed ^ 0x27d4eb2f) >>> 0)() < 0.3) return catalog as App<unknown>;
  if (prng((seed ^ 0x61c88647) >>> 0)() < 0.25) return shelves as App<unknown>;
  return first;
}

/** Runs one seed. Never throws: a failure is in the result. */
export async function runSeed(seed: number, options: SimOptions = {}): Promise<SimResult> {
  const started = Date.now();
  const enabled = options.faults ?? new Set<Fault>(FAULTS);
  // Each seed owns one directory, removed when it ends: seeds run side by side in one process, so
  // a shared clean-up would delete the files of a seed still running (it did, once: seeds whose
  // peers all reopened empty).
  const root = fs.mkdtempSync(path.join(SIM_DIR, `noatun-sim-${seed}-`));
  let dirs = 0;
  const tempDir = (): string => {
    const dir = path.join(root, String(dirs++));
    fs.mkdirSync(dir);
    return dir;
  };
  // Two streams: `random` drives the base schedule exactly as before the added faults (so old
  // seeds keep their workload), `faults` drives everything added since.
  const random = prng(seed);
  const faults = prng((seed ^ 0x9e3779b9) >>> 0);
  // The hostile peer draws from a stream of its own, so that the other faults of a seed stay
  // what they were before it existed.
  const hostileRandom = prng((seed ^ 0x85ebca6b) >>> 0);
  // In a third of the seeds (drawn apart from every stream) the peers give events behind the cutoff
  // a sliver of time, so costly late events wait in memory far more often than with the default
  // share: their children, a close or a kill meanwhile must not leave the log without a parent.
  const lateWorkShare = prng((seed ^ 0x27d4eb2f) >>> 0)() < 1 / 3 ? 0.005 : undefined;
  // In a third of the seeds (a stream of its own too) the peers commit on their own thread
  // (`commitMode: 'sync'`) instead of on lmdb-js's writer thread, where commits overlap and group.
  const commitMode = prng((seed ^ 0x165667b1) >>> 0)() < 1 / 3 ? ('sync' as const) : undefined;
  let hostile: HostilePeer | undefined;
  const seedApp = appOf(seed, random);
  const app: App<unknown> = options.app === undefined ? seedApp : apps[options.app]!;
  if (app === undefined) throw new Error(`no app ${options.app}`);
  const peerCount = 3 + Math.floor(random() * 8);
  const network = new MemoryNetwork({
    seed,
    latencyMs: 1 + Math.floor(random() * 3),
    jitterMs: Math.floor(random() * 6),
    gossipLoss: random() * 0.3,
    gossipDuplicate: random() * 0.2,
  });
  let virtual = T0;
  const peers: SimPeer[] = [];
  const written: Written[] = [];
  /** Per event (id key): bitmask of the peers that stored it while it was not behind their cutoff. */
  const inTime = new Map<string, number>();
  let deliveries = 0;
  const recent: string[] = [];
  /** In the final rounds: what each round delivered (peer and event), and in how many rounds each was. */
  let roundDeliveries: Set<string> | undefined;
  const roundsDelivered = new Map<string, number>();
  let lastDelivery = Date.now();
  /** No event stored anywhere for a second of real time, and none waiting for the budget. */
  const quiet = () => Date.now() - lastDelivery > 1000 && peers.every((p) => p.db === undefined || p.db.stats().deferred === 0);
  let late = 0;
  const abandoned: Db[] = [];
  const counts = new Map<string, number>();
  let lastFault = '';
  const count = (fault: string) => {
    lastFault = fault;
    counts.set(fault, (counts.get(fault) ?? 0) + 1);
  };
  let exempt = false;
  /**
   * Whether a peer stored an event again that it had pruned longer ago than it remembers pruned
   * ids (an interval and two strides): the hostile peer replays old events, and a peer that was
   * away may bring them. Outside the guarantee (docs/PRUNING.md): the event's effect may come back
   * without the events it was pruned with. Peers are then compared with each other, not with the
   * reference.
   */
  let resurrected = false;
  const prunedAt = new Map<string, number>();
  /**
   * Whether a peer pruned an event that another peer, one that had already joined, had not
   * stored yet: that one was behind by more than the interval (away, partitioned, or kept from
   * syncing), and may hold an event the others pruned together with what deleted or overwrote it
   * (docs/PRUNING.md, outside the guarantee). A joiner that starts from a pruned log is not behind.
   */
  let fellBehind = false;
  const storedBy = new Map<string, Set<string>>();
  const joined = new Set<string>();
  /** The clock jumped while some peer was away (see the module comment). */
  let awayAcrossCutoff = false;
  const result = (ok: boolean, message: string): SimResult => ({
    seed,
    ok,
    message,
    app: app.name,
    peers: peers.length,
    events: written.length,
    ms: Date.now() - started,
    exempt,
    faults: [...counts].map(([k, v]) => `${k} ${v}`).join(', '),
    late,
  });

  const open = async (peer: SimPeer) => {
    const db = (await openApp(app, { path: peer.dir, now: () => virtual + peer.skew, intervalMs: INTERVAL, lateWorkShare, commitMode })) as Db;
    db.subscribe({
      stored(events) {
        const cutoff = db.cutoffTime;
        for (const event of events) {
          const holders = storedBy.get(event.id.toString());
          if (holders === undefined) storedBy.set(event.id.toString(), new Set([peer.id]));
          else holders.add(peer.id);
          if (!event.local) {
            const gone = prunedAt.get(`${peer.id} ${event.id.toString()}`);
            if (gone !== undefined && virtual - gone > INTERVAL + 2 * db.cutoffStrideMs) resurrected = true;
            deliveries++;
            lastDelivery = Date.now();
            // The last few, for the message of a resync loop.
            recent.push(`${peer.id} got ${event.id.toString()} (cutoff ${cutoff - T0}, ${event.id.timestamp < cutoff ? 'behind it' : 'in time'}, paused until ${Math.max(0, db.stats().pruningPausedUntil - T0)})`);
            if (recent.length > 12) recent.shift();
            roundDeliveries?.add(`${peer.id} ${event.id.toString()}`);
          }
          if (event.id.timestamp >= cutoff) inTime.set(event.id.toString(), (inTime.get(event.id.toString()) ?? 0) | (1 << peer.index));
          else late++;
          if (TRACE !== undefined) {
            const payload = JSON.stringify(messagePackCodec().decode(db.message(event.id)?.payload ?? new Uint8Array([0xc0])));
            history.push(`${peer.id} stored ${event.id.toString()} ${payload} (${event.local ? 'local' : 'received'}) at clock ${virtual - T0}, cutoff ${cutoff - T0}, last fault ${lastFault}, discarded ${db.discarded().length}, rebuilds ${db.stats().rebuilds}`);
          }
        }
      },
      removed(ids) {
        for (const id of ids) {
          const hex = Buffer.from(id).toString('hex');
          prunedAt.set(`${peer.id} ${hex}`, virtual);
          const holders = storedBy.get(hex);
          for (const other of joined) if (other !== peer.id && holders?.has(other) !== true) fellBehind = true;
          if (TRACE !== undefined) history.push(`${peer.id} removed ${hex} at clock ${virtual - T0}, cutoff ${db.cutoffTime - T0}, last fault ${lastFault}, discarded ${db.discarded().length}, pruned ${db.stats().pruned}, rebuilds ${db.stats().rebuilds}, paused ${db.stats().pruningPausedUntil - T0}`);
        }
      },
    });
    peer.db = db;
    joined.add(peer.id);
    // What it holds already (a reopen), as if stored now.
    for (const id of db.ids()) {
      const hex = Buffer.from(id).toString('hex');
      const holders = storedBy.get(hex);
      if (holders === undefined) storedBy.set(hex, new Set([peer.id]));
      else holders.add(peer.id);
    }
    peer.replicator = new Replicator(db, network.join(peer.id), { statusIntervalMs: 30 });
  };
  const close = async (peer: SimPeer) => {
    await peer.replicator?.stop();
    await peer.db?.close();
    peer.replicator = undefined;
    peer.db = undefined;
  };
  const record = (db: Db, ids: readonly MessageId[]) => {
    for (const id of ids) {
      const message = db.message(id)!;
      // Copies (`slice` of a Buffer would be a view of the database's memory).
      written.push({ id, bytes: Uint8Array.from(message.bytes), payload: Uint8Array.from(message.payload) });
    }
  };
  /** A local write; an apply that fails at the author may be refused (nothing stored, nothing written). */
  const write = async (db: Db, fn: () => Promise<MessageId | MessageId[]>) => {
    try {
      const ids = await fn();
      record(db, Array.isArray(ids) ? ids : [ids]);
    } catch (error) {
      if (!(error instanceof NoatunError && (error.code as string) === 'APPLY_FAILED')) throw error;
    }
  };
  const openPeers = () => peers.filter((p) => p.db !== undefined);
  const pick = <T>(list: readonly T[]): T | undefined => (list.length === 0 ? undefined : list[Math.floor(faults() * list.length)]);

  let partitioned = false;
  let sides: [string[], string[]] = [[], []];
  /** Lets each side of the network sync (a star around one peer), so events are not late inside it. */
  const settle = async () => {
    const groups = partitioned ? sides : [peers.map((p) => p.id)];
    const signal = AbortSignal.timeout(5_000);
    await Promise.all(
      groups.map(async (group) => {
        const members = openPeers().filter((p) => group.includes(p.id));
        const hub = members[0];
        if (hub === undefined) return;
        await Promise.all(members.slice(1).map((p) => p.replicator!.syncedWith(hub.id, { signal }).catch(() => {})));
      }),
    );
  };
  /** A copy of a peer's files as they are now (not the lock files). */
  const copyFiles = (from: string): string => {
    const to = tempDir();
    fs.cpSync(from, to, { recursive: true, filter: (source) => !source.endsWith('LOCK') && !source.endsWith('-lock') });
    return to;
  };
  const damageView = (peer: SimPeer) => {
    const viewDir = path.join(peer.dir, 'view');
    const file = path.join(viewDir, 'view.bin');
    const how = faults();
    if (!fs.existsSync(file) || how < 0.35) {
      fs.rmSync(viewDir, { recursive: true, force: true });
      return 'deleted';
    }
    const size = fs.statSync(file).size;
    if (how < 0.6) {
      const bytes = fs.readFileSync(file);
      const flips = 1 + Math.floor(faults() * 8);
      // Half the flips land in the first 4 KiB (header, engine words, early tables), half anywhere.
      for (let i = 0; i < flips; i++) bytes[Math.floor(faults() * (i % 2 === 0 ? Math.min(size, 4096) : size))]! ^= 1 + Math.floor(faults() * 255);
      fs.writeFileSync(file, bytes);
      return 'flipped';
    }
    if (how < 0.85) {
      fs.truncateSync(file, Math.floor(faults() * size));
      return 'truncated';
    }
    fs.rmSync(path.join(viewDir, 'journal.bin'), { force: true });
    return 'no journal';
  };
  let fixpoints = 0;
  let joiners = 0;
  const failures: string[] = [];

  /** One added fault, or nothing (most steps). */
  const faultStep = async () => {
    const x = faults();
    if (x < 0.08) {
      if (!enabled.has('jump')) return;
      // Mostly while someone is away, so what they write or miss arrives behind a cutoff. Each
      // side syncs first (mostly): network delay is far below the interval, absence is not.
      const closed = peers.some((p) => p.db === undefined);
      const kind = partitioned ? 'partition' : closed ? 'closure' : 'all present';
      if (faults() >= (partitioned ? 0.5 : closed ? 1 : 0.3)) return;
      count(`jump (${kind})`);
      if (kind !== 'all present') awayAcrossCutoff = true;
      if (faults() < 0.9) await settle();
      virtual += MINUTE + Math.floor(faults() * 4 * MINUTE);
    } else if (x < 0.11) {
      const peer = pick(openPeers());
      if (peer === undefined || !enabled.has('compact')) return;
      count('compact');
      await peer.db!.compact();
    } else if (x < 0.14) {
      const peer = pick(openPeers());
      if (peer === undefined || !enabled.has('advance')) return;
      count('advance');
      peer.db!.advanceCutoff();
    } else if (x < 0.17) {
      const peer = pick(peers);
      if (peer === undefined || !enabled.has('damage')) return;
      const wasOpen = peer.db !== undefined;
      if (wasOpen) await close(peer);
      count(`damage (${damageView(peer)})`);
      if (wasOpen) await open(peer);
    } else if (x < 0.19) {
      const peer = pick(openPeers());
      if (peer === undefined || !enabled.has('kill')) return;
      count('kill');
      // In-process stand-in for SIGKILL: the peer stops replicating, in-flight commits land,
      // and its files are copied as they are (the view usually dirty); the copy is reopened
      // and the old instance is abandoned unclosed.
      await peer.replicator!.stop();
      await new Promise((resolve) => setTimeout(resolve, 15));
      const copy = copyFiles(peer.dir);
      abandoned.push(peer.db!);
      peer.db = undefined;
      peer.replicator = undefined;
      peer.dir = copy;
      await open(peer);
    } else if (x < 0.25) {
      const peer = pick(openPeers());
      if (peer === undefined || !enabled.has('transaction')) return;
      count('transaction');
      const n = 1 + Math.floor(faults() * 4);
      const events = Array.from({ length: n }, () => app.random(faults));
      await write(peer.db!, () => peer.db!.transaction((tx) => events.map((event) => tx.append(event))));
    } else if (x < 0.29) {
      const peer = pick(openPeers());
      const recent = written.filter((w) => w.id.timestamp >= virtual - SKEW);
      const target = pick(recent);
      if (peer === undefined || target === undefined || !enabled.has('placement')) return;
      count('placement');
      const where = faults() < 0.5 ? { before: target.id } : { after: target.id };
      const event = app.random(faults);
      await write(peer.db!, () => peer.db!.append(event, where));
    } else if (x < 0.32) {
      const peer = pick(openPeers());
      if (peer === undefined || written.length === 0 || !enabled.has('scramble')) return;
      count('scramble');
      // Stored events straight to ingest: random ones or the latest, shuffled, in random batches.
      const n = 1 + Math.floor(faults() * 12);
      const chosen = faults() < 0.5 ? written.slice(-n) : Array.from({ length: n }, () => pick(written)!);
      for (let i = chosen.length - 1; i > 0; i--) {
        const j = Math.floor(faults() * (i + 1));
        [chosen[i], chosen[j]] = [chosen[j]!, chosen[i]!];
      }
      while (chosen.length > 0) await peer.db!.ingest(chosen.splice(0, 1 + Math.floor(faults() * 4)).map((w) => w.bytes));
    } else if (x < 0.335) {
      if (partitioned || joiners >= 2 || !enabled.has('join')) return;
      count('join');
      const peer: SimPeer = { id: `j${joiners++}`, index: peers.length, dir: tempDir(), skew: Math.floor((faults() - 0.5) * 2 * SKEW), db: undefined, replicator: undefined };
      peers.push(peer);
      await open(peer);
    } else if (x < 0.355) {
      const peer = pick(openPeers());
      if (peer === undefined || fixpoints >= 2 || !enabled.has('fixpoint')) return;
      fixpoints++;
      count('fixpoint');
      // On a copy made by a clean close (the peer reopens at once and carries on), with a clock
      // of its own so the check can move it past every hold.
      await close(peer);
      const copy = copyFiles(peer.dir);
      await open(peer);
      const clock = new FakeClock(virtual + peer.skew);
      const source = await openApp(app, { path: copy, now: clock.now, intervalMs: INTERVAL });
      try {
        const style = faults() < 0.5 ? 'in-order' : 'scrambled';
        const difference = await fixedPointDifference(app, source, clock, tempDir(), INTERVAL, style, faults);
        if (difference !== undefined) failures.push(`mid-run, ${peer.id}: ${difference}`);
      } finally {
        await source.close();
      }
    }
  };

  try {
    for (let i = 0; i < peerCount; i++) {
      // Clocks within ±20 s of each other: well inside a stride.
      const peer: SimPeer = { id: `p${i}`, index: i, dir: tempDir(), skew: Math.floor((random() - 0.5) * 2 * SKEW), db: undefined, replicator: undefined };
      peers.push(peer);
      await open(peer);
    }
    if (enabled.has('hostile') && hostileRandom() < 0.4) hostile = new HostilePeer(network.join('h0'), hostileRandom);
    const steps = 20 + Math.floor(random() * 30);
    for (let step = 0; step < steps && failures.length === 0; step++) {
      const r = random();
      const peer = peers[Math.floor(random() * peerCount)]!;
      if (r < 0.6) {
        if (peer.db !== undefined) {
          const n = 1 + Math.floor(random() * 3);
          for (let k = 0; k < n; k++) {
            const backdate = random() < 0.2 ? Math.floor(random() * 30_000) : 0;
            const event = app.random(random);
            const db = peer.db;
            await write(db, () => db.append(event, { time: virtual + peer.skew - backdate }));
          }
        }
      } else if (r < 0.75) {
        virtual += Math.floor(random() * 5_000);
        // Also longer quiet spells (within the cutoff interval), so cutoff steps happen along the run.
        if (enabled.has('jump')) virtual += Math.floor(faults() * 20_000);
      } else if (r < 0.85) {
        if (partitioned) network.heal();
        else {
          const cut = 1 + Math.floor(random() * (peerCount - 1));
          const shuffled = peers
            .slice(0, peerCount)
            .sort(() => random() - 0.5)
            .map((p) => p.id);
          sides = [shuffled.slice(0, cut), shuffled.slice(cut)];
          for (const joiner of peers.slice(peerCount)) sides[faults() < 0.5 ? 0 : 1].push(joiner.id);
          network.partition(...sides);
        }
        partitioned = !partitioned;
      } else if (r < 0.95) {
        if (peer.db === undefined) await open(peer);
        else await close(peer);
      } else {
        // Let the network work for a moment.
        await new Promise((resolve) => setTimeout(resolve, Math.floor(random() * 20)));
      }
      await faultStep();
      if (hostile !== undefined && hostileRandom() < 0.3) {
        count(`hostile ${await hostile.act(openPeers().map((p) => p.id), written.map((w) => w.bytes))}`);
      }
      if (process.env.SIM_CHECK_HASHES === '1') {
        for (const p of peers) {
          if (p.db === undefined) continue;
          const c = p.db.cutoffState();
          const xor = new Uint8Array(16);
          for (const id of p.db.ids()) {
            if (MessageId.fromBytes(id).timestamp >= c.time) break;
            for (let k = 0; k < 16; k++) xor[k]! ^= id[k]!;
          }
          if (Buffer.compare(xor, c.hash) !== 0) throw new Error(`step ${step}: ${p.id}'s cutoff hash disagrees with its stored ids (last fault ${lastFault}; so far: ${[...counts].map(([k, v]) => `${k} ${v}`).join(', ')})`);
        }
      }
    }
    if (failures.length !== 0) return result(false, failures.join('\n  '));

    // Heal, reopen everyone, wait until every pair is in sync.
    network.heal();
    partitioned = false;
    for (const peer of peers) if (peer.db === undefined) await open(peer);
    // While a peer holds pruning (late events reached it), it keeps events that others have
    // pruned and will not take back: their statuses differ until the hold ends, by design. So may
    // a peer that was away while the clock passed the cutoff: it may hold an event the others
    // pruned meanwhile together with what deleted it, and they take it back only once they have
    // forgotten pruning it (the final rounds move the clock that far). Then "converged" means
    // quiet instead: nothing delivered for a while.
    let allSynced = true;
    const converged = await converge(peers, () => {
      const mayDiffer = awayAcrossCutoff || fellBehind || peers.some((p) => p.db !== undefined && p.db.stats().pruningPausedUntil !== 0);
      const quietInHold = mayDiffer && quiet();
      if (quietInHold) allSynced = false;
      return quietInHold;
    });
    exempt = isolatedWrites(written, inTime) || (awayAcrossCutoff && late > 0) || resurrected || fellBehind;
    if (converged !== undefined) return result(false, `after healing: ${converged}`);

    // 1. Views right after healing (stored sets may still differ while holds last). Not where
    // peers wrote while cut off, or held events while away: an event one of them brings back,
    // behind everyone's cutoff, is taken back by the others only once they have forgotten pruning
    // it (an interval and two strides), so their views agree only at the end.
    // Nor while a peer holds pruning and some pair is not synced yet: a pair whose statuses differ
    // (by design, until the hold ends) retries only after its backoff, so not everything may have
    // been exchanged yet; the views are compared again at the end.
    const views = peers.map((p) => orderedView(p.db!));
    for (let i = 1; i < peers.length && !exempt && allSynced; i++) {
      if (views[i] !== views[0]) return result(false, `after healing: ${peers[i]!.id} has another view than ${peers[0]!.id} (maps in iteration order) ${firstDifference(views[i]!, views[0]!)}`);
    }
    // The final clock: past every hold, and placed so every peer's skewed clock is in the same
    // minute (so all cutoffs are equal, and equal to the reference's).
    const finalTime = () => Math.ceil((virtual + holdClearance(INTERVAL, peers[0]!.db!.cutoffStrideMs)) / MINUTE) * MINUTE + SKEW + 500;
    let reference: { db: AnyDb; clock: FakeClock } | undefined;
    try {
      if (!exempt) {
        reference = await referencePeer(app, written, tempDir(), INTERVAL);
        const expected = orderedView(reference.db);
        // The reference itself must equal a replay of every written event without pruning (else
        // in-time pruning changed a view, and the failure is not the swarm's).
        // (Its clock is past every event: a database refuses events dated ahead of its clock.)
        const replay = await openApp(app, { path: tempDir(), now: () => Number.MAX_SAFE_INTEGER, intervalMs: INTERVAL, autoPrune: false });
        try {
          await replay.ingest(written.map((w) => w.bytes));
          const full = orderedView(replay);
          if (full !== expected) return result(false, `the reference peer's view differs from a replay of every written event without pruning ${firstDifference(expected, full)}`);
        } finally {
          await replay.close();
        }
        if (allSynced && views[0] !== expected) return result(false, `after healing: the swarm's view differs from the reference peer's ${firstDifference(views[0]!, expected)}`);
        if (app.model !== undefined) {
          // (The swarm is compared with the reference at the end; the reference with the model here.)
          const model = JSON.stringify(ordered(app.model(timedEvents([...written].sort((a, b) => MessageId.compare(a.id, b.id))))));
          if (expected !== model) return result(false, `the reference peer's view differs from the plain-JS model ${firstDifference(expected, model)}`);
          if (allSynced && views[0] !== model) return result(false, `after healing: the swarm's view differs from the plain-JS model ${firstDifference(views[0]!, model)}`);
        }
      }

      // 2. Past every hold: everyone advances its cutoff and syncs again, until nothing more is delivered.
      // Where peers wrote, or held events, while away (exempt schedules), an event one brings back
      // that the others pruned is taken back only once they have forgotten pruning it: one round
      // more; and pairs that wait for their backoff while a hold is on may carry on in the next
      // round. Eight rounds at most (three otherwise), and an event stored again in three rounds
      // is a loop.
      for (let rounds = 1; ; rounds++) {
        const before = deliveries;
        roundDeliveries = new Set();
        virtual = finalTime();
        for (const peer of peers) peer.db!.advanceCutoff();
        // Events delivered in this round may land behind the new cutoff and start new holds.
        const again = await converge(peers, () => peers.some((p) => p.db !== undefined && p.db.stats().pruningPausedUntil !== 0) && quiet());
        const settledNow = again === undefined && deliveries === before && peers.every((p) => p.db === undefined || p.db.stats().pruningPausedUntil === 0);
        for (const delivery of roundDeliveries) roundsDelivered.set(delivery, (roundsDelivered.get(delivery) ?? 0) + 1);
        // A loop stores the same events again round after round; a slow schedule (pairs waiting
        // for their backoff while a hold is on) stores new ones in each round, and may take more.
        const looping = [...roundDeliveries].filter((delivery) => roundsDelivered.get(delivery)! >= 3);
        if (settledNow) {
          roundDeliveries = undefined;
          if (process.env.SIM_ROUNDS !== undefined) console.error(`settled after ${rounds} final rounds (${exempt ? "exempt" : "checked"})`);
          break;
        }
        if (looping.length !== 0) {
          return result(false, `after the clock passed every hold ${rounds} times, peers store the same events again (${looping.slice(0, 6).join(', ')}, stored in 3 rounds or more; the last deliveries: ${recent.join('; ')}): a resync loop`);
        }
        if (rounds === (exempt ? 8 : 3)) {
          if (again !== undefined) return result(false, `after the clock passed every hold ${rounds} times: ${again}`);
          return result(false, `after the clock passed every hold ${rounds} times, peers still store events (${deliveries - before} deliveries in the last round; the last: ${recent.slice(-Math.min(12, deliveries - before)).join('; ')})`);
        }
        if (again !== undefined && !exempt) return result(false, `after the clock passed every hold: ${again}`);
      }
      // (An event may come back in the final rounds too: see `resurrected`.)
      if (reference !== undefined && !resurrected) {
        reference.clock.time = virtual;
        reference.db.advanceCutoff();
        for (const peer of peers) {
          const difference = stateDifference(peer.db! as AnyDb, reference.db, [peer.id, 'the reference peer']);
          if (difference !== undefined) {
            // With SIM_TRACE: the history of the events one side stores and the other does not, and both views.
            let trace = '';
            if (TRACE !== undefined) {
              const theirs = new Set([...reference.db.ids()].map((id) => Buffer.from(id).toString('hex')));
              const mine = new Set([...peer.db!.ids()].map((id) => Buffer.from(id).toString('hex')));
              const odd = [...mine].filter((id) => !theirs.has(id)).concat([...theirs].filter((id) => !mine.has(id)));
              trace = `\n  views: ${peer.id} ${orderedView(peer.db!)}\n  reference ${orderedView(reference.db)}${odd.map((id) => `\n  history of ${id}:\n    ${history.filter((line) => line.includes(id)).join('\n    ')}`).join('')}`;
            }
            return result(false, `after the clock passed every hold: ${difference}${trace}`);
          }
        }
      } else {
        for (const peer of peers.slice(1)) {
          const difference = stateDifference(peer.db! as AnyDb, peers[0]!.db! as AnyDb, [peer.id, peers[0]!.id]);
          if (difference !== undefined) return result(false, `after the clock passed every hold (peers wrote while cut off: compared with each other): ${difference}`);
        }
      }
      // Equal hashes can still be wrong alike: each must be the XOR of the ids its peer stores.
      for (const peer of peers) {
        const wrong = cutoffHashMismatch(peer.db! as AnyDb);
        if (wrong !== undefined) return result(false, `after the clock passed every hold, ${peer.id}'s cutoff hashes: ${wrong}`);
      }
    } finally {
      await reference?.db.close();
    }

    // 3. The fixed point on one or two random peers, each reopened with a clock of its own.
    for (const peer of peers) await peer.replicator!.stop();
    const checked = 1 + Math.floor(faults() * 2);
    for (let i = 0; i < checked; i++) {
      const peer = pick(peers)!;
      if (peer.db === undefined) continue;
      const clock = new FakeClock(virtual + peer.skew);
      await close(peer);
      const source = await openApp(app, { path: peer.dir, now: clock.now, intervalMs: INTERVAL });
      try {
        const difference = await fixedPointDifference(app, source, clock, tempDir(), INTERVAL, faults() < 0.5 ? 'in-order' : 'scrambled', faults);
        if (difference !== undefined) return result(false, `at the end, ${peer.id}: ${difference}`);
      } finally {
        await source.close();
      }
    }
    return result(true, `${written.length} written, ${late} stored late`);
  } catch (error) {
    return result(false, `threw: ${(error as Error).stack ?? String(error)}`);
  } finally {
    for (const peer of peers) await close(peer).catch(() => {});
    for (const db of abandoned) await db.close().catch(() => {});
    await hostile?.stop();
    fs.rmSync(root, { recursive: true, force: true });
  }
}

/**
 * Whether peers wrote while cut off from each other for longer than the cutoff interval: two
 * written events that no peer stored both of in time.
 */
function isolatedWrites(written: readonly Written[], inTime: ReadonlyMap<string, number>): boolean {
  const masks = written.map((w) => inTime.get(w.id.toString()) ?? 0);
  const distinct = [...new Set(masks)];
  for (let i = 0; i < distinct.length; i++) {
    for (let j = i + 1; j < distinct.length; j++) if ((distinct[i]! & distinct[j]!) === 0) return true;
  }
  return false;
}

/** Waits until every peer is synced with every other; returns a failure message on timeout. */
async function converge(peers: SimPeer[], settledOtherwise: () => boolean = () => false): Promise<string | undefined> {
  const signal = AbortSignal.timeout(CONVERGE_MS);
  const done = new AbortController();
  const poll = new Promise<void>((resolve, reject) => {
    const timer = setInterval(() => {
      if (signal.aborted || done.signal.aborted) {
        clearInterval(timer);
        reject(new Error('not settled'));
      } else if (settledOtherwise()) {
        clearInterval(timer);
        resolve();
      }
    }, 100);
  });
  try {
    await Promise.race([
      Promise.all(peers.flatMap((a) => peers.filter((b) => b !== a).map((b) => a.replicator!.syncedWith(b.id, { signal })))),
      poll,
    ]);
    return undefined;
  } catch {
    const states = peers.map((p) => {
      const st = p.db!.stats();
      const waiting = `${st.deferred === 0 ? '' : `, ${st.deferred} deferred`}${st.parked === 0 ? '' : `, ${st.parked} parked`}${st.pruningPausedUntil === 0 ? '' : ', pruning held'}`;
      const c = p.db!.cutoffState();
      const xor = new Uint8Array(16);
      for (const id of p.db!.ids()) {
        if (MessageId.fromBytes(id).timestamp >= c.time) break;
        for (let k = 0; k < 16; k++) xor[k]! ^= id[k]!;
      }
      const sane = Buffer.compare(xor, c.hash) === 0 ? '' : ' (NOT the XOR of its stored ids)';
      const hashes = `cutoff ${c.time - T0} ${Buffer.from(c.hash).toString('hex').slice(0, 8)}${sane} prev ${Buffer.from(c.previousHash).toString('hex').slice(0, 8)}`;
      return `${p.id}: ${st.stored} stored${waiting}, ${hashes}, ${p.replicator!.peers().map((q) => `${q.peerId}=${q.state}${q.reason === undefined ? '' : `(${q.reason})`}`).join(' ')}`;
    });
    const all = new Map<string, string[]>();
    for (const p of peers) for (const id of p.db!.ids()) {
      const key = Buffer.from(id).toString('hex');
      all.set(key, [...(all.get(key) ?? []), p.id]);
    }
    const partial = [...all].filter(([, holders]) => holders.length !== peers.length).slice(0, 5);
    const why = (id: string, holders: string[]) => {
      const holder = peers.find((p) => p.id === holders[0])!;
      const explanation = holder.db!.explain(MessageId.parse(id));
      const parents = holder.db!.message(MessageId.parse(id))?.parents ?? [];
      const parentNote = parents.map((parent) => `${parent.toString()} on ${peers.filter((p) => p.db!.message(parent) !== undefined).map((p) => p.id).join(',') || 'no peer'}`).join('; ');
      return `${id} on ${holders.join(',')} (${holder.id} keeps it: ${explanation.keptBecause.join('; ') || 'no reason'}; cutoff ${holder.db!.cutoffTime - T0}; parents: ${parentNote || 'none'})`;
    };
    states.push(`events not on every peer: ${partial.map(([id, holders]) => why(id, holders)).join('; ') || 'none'}`);
    if (TRACE !== undefined) for (const [id] of partial) states.push(`\n  history of ${id}:\n    ${history.filter((line) => line.includes(id)).join('\n    ')}`);
    return `no convergence within ${CONVERGE_MS / 1000} s; ${states.join('; ')}`;
  } finally {
    done.abort();
    poll.catch(() => {});
  }
}
