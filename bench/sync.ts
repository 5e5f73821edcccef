/**
 * Sync over real libp2p on loopback (DESIGN.md §8):
 * - one difference in 1M events on each side: reconciliation round trips and bytes, and time;
 * - initial copy of 100k events to an empty peer, against the local write rate of the same run;
 * - gossip latency: a local append until it is stored on a connected peer (median of 50).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Database, s } from '../src/index.js';
import { FingerprintIndex } from '../src/net/fingerprint-index.js';
import { Reconciler } from '../src/net/reconcile.js';
import { Replicator } from '../src/net/replicator.js';
import { benchDir, cleanup, type Row, seeded, time } from './harness.js';

const Root = s.object({ counters: s.map(s.u32(), s.u32()), total: s.u32() });
type Event = [key: number, value: number];
const LOOPBACK = ['/ip4/127.0.0.1/tcp/0'];

function open(dir: string) {
  return Database.open<Event, typeof Root>({
    path: dir,
    root: Root,
    apply([key, value], root) {
      root.counters.set(key, value);
    },
  });
}

/** Fills a database with `count` events in transactions of 1000; returns events per second. */
async function fill(db: Awaited<ReturnType<typeof open>>, count: number, seed: number): Promise<number> {
  const random = seeded(seed);
  const { seconds } = await time(async () => {
    for (let done = 0; done < count; done += 1000) {
      await db.transaction((tx) => {
        for (let i = 0; i < Math.min(1000, count - done); i++) tx.append([Math.floor(random() * 100_000), i]);
      });
    }
  });
  return count / seconds;
}

async function pair(a: Awaited<ReturnType<typeof open>>, b: Awaited<ReturnType<typeof open>>, topic: string) {
  const ra = await Replicator.start(a, { listen: LOOPBACK, topic, statusIntervalMs: 1000 });
  const rb = await Replicator.start(b, { listen: LOOPBACK, topic, bootstrap: [ra.multiaddrs[0]!], statusIntervalMs: 1000 });
  return { ra, rb };
}

/**
 * One reconciliation exchange between two id sets, message by message, as the replicator runs it
 * (the initiator sends first; a side whose reply is null ends it). A round trip is a message and
 * its answer, so n messages are ⌈n/2⌉ round trips. Also checks both sides learn the difference.
 */
function exchange(a: Iterable<Uint8Array>, b: Iterable<Uint8Array>, expectedDifference: number) {
  const [left, right] = [new Reconciler(FingerprintIndex.fromSorted(a)), new Reconciler(FingerprintIndex.fromSorted(b))];
  let learned = 0;
  let message: Uint8Array | null = left.initiate();
  let messages = 1;
  let bytes = message.length;
  for (let turn = 1; message !== null; turn++) {
    const step = (turn % 2 === 1 ? right : left).respond(message);
    learned += step.need.length;
    message = step.reply;
    if (message !== null) {
      messages++;
      bytes += message.length;
    }
  }
  if (learned !== expectedDifference) throw new Error(`sync: reconciliation found ${learned} missing ids, expected ${expectedDifference}`);
  return { messages, roundTrips: Math.ceil(messages / 2), bytes };
}

/** The `sync` benchmark. */
export async function runSyncBench(options: { quick: boolean }): Promise<Row[]> {
  const rows: Row[] = [];
  const big = options.quick ? 20_000 : 1_000_000;
  const copy = options.quick ? 5_000 : 100_000;

  // 1. One difference in `big` events on each side: copy a database, add one event to the copy.
  {
    const dirA = benchDir('sync-a');
    const a = await open(dirA);
    await fill(a, big, 1);
    await a.close();
    const dirB = benchDir('sync-b');
    fs.cpSync(dirA, dirB, { recursive: true });
    fs.rmSync(path.join(dirB, 'LOCK'), { force: true });
    const [da, db] = [await open(dirA), await open(dirB)];
    await db.append([1, 1]);
    const one = exchange(da.ids(), db.ids(), 1);
    console.log(`sync: one exchange over ${big} vs ${big}+1 ids: ${one.messages} messages (${one.roundTrips} round trips), ${one.bytes} bytes`);
    const { ra, rb } = await pair(da, db, 'bench-diff');
    const { seconds } = await time(() => rb.syncedWith(ra.peerId, { signal: AbortSignal.timeout(600_000) }));
    const peer = rb.peers().find((p) => p.peerId === ra.peerId)!;
    // The replicator's counters add up every session with the peer until synced (a session can
    // start from each side, and status checks may start another), so they can exceed one exchange.
    console.log(`sync: ${big} vs ${big}+1 over libp2p: ${peer.reconcileMessages} reconciliation messages in all sessions, ${peer.reconcileBytes} bytes, synced in ${(seconds * 1000).toFixed(0)} ms; stored ${da.stats().stored}/${db.stats().stored}`);
    rows.push({
      workload: `sync: ${big} each side, 1 differs`,
      implementation: 'noatun (libp2p, loopback)',
      check: String(db.stats().stored),
      note: `one exchange: ${one.roundTrips} round trips, ${one.bytes} B; replicator until synced: ${peer.reconcileMessages} messages, ${peer.reconcileBytes} B, ${(seconds * 1000).toFixed(0)} ms`,
    });
    await Promise.all([ra.stop(), rb.stop()]);
    await Promise.all([da.close(), db.close()]);
  }

  // 2. Initial copy of `copy` events to an empty peer, against the local write rate.
  {
    const a = await open(benchDir('copy-a'));
    const writeRate = await fill(a, copy, 2);
    const b = await open(benchDir('copy-b'));
    const { ra, rb } = await pair(a, b, 'bench-copy');
    const { seconds } = await time(() => rb.syncedWith(ra.peerId, { signal: AbortSignal.timeout(600_000) }));
    const rate = copy / seconds;
    console.log(`sync: initial copy of ${copy} events: ${rate.toFixed(0)} events/s (local writes ${writeRate.toFixed(0)} events/s); stored ${b.stats().stored}`);
    rows.push({
      workload: `sync: initial copy of ${copy} events`,
      implementation: 'noatun (libp2p, loopback)',
      eventsPerSecond: rate,
      note: `${((rate / writeRate) * 100).toFixed(0)}% of the local write rate (${(writeRate / 1000).toFixed(1)}k/s)`,
    });

    // 3. Gossip latency on the connected, synced pair.
    const latencies: number[] = [];
    for (let i = 0; i < 50; i++) {
      const arrived = new Promise<number>((resolve) => {
        const stop = b.subscribe({
          stored: () => {
            stop();
            resolve(performance.now());
          },
        });
      });
      const start = performance.now();
      await a.append([i, i]);
      latencies.push((await arrived) - start);
    }
    latencies.sort((x, y) => x - y);
    const median = latencies[latencies.length >> 1]!;
    console.log(`sync: gossip latency median ${median.toFixed(1)} ms, p90 ${latencies[Math.floor(latencies.length * 0.9)]!.toFixed(1)} ms`);
    rows.push({
      workload: 'gossip: local append to stored on a peer',
      implementation: 'noatun (libp2p, loopback)',
      note: `median ${median.toFixed(1)} ms, p90 ${latencies[Math.floor(latencies.length * 0.9)]!.toFixed(1)} ms`,
    });
    await Promise.all([ra.stop(), rb.stop()]);
    await Promise.all([a.close(), b.close()]);
  }
  cleanup();
  return rows;
}
