/**
 * Sync over real libp2p on loopback (DESIGN.md §8):
 * - one difference in 1M events on each side: reconciliation round trips and bytes, and time;
 * - initial copy of 100k events to an empty peer, against the local write rate of the same run;
 * - gossip latency: a local append until it is stored on a connected peer (median of 50).
 *
 * The copy runs twice: with both peers in this process (one event loop does the sending, the
 * receiving and both ends' encryption), and with the source peer in a child process (this script
 * with `--serve=<dir>`), as two peers really are. Gossip latency is measured across processes.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Database, s } from 'noatun';
import { FingerprintIndex, Reconciler, Replicator } from 'noatun/net';
import { benchDir, cleanup, type Row, seeded, time } from './harness.js';

const Root = s.object({ counters: s.map(s.u32(), s.u32()), total: s.u32() });
type Event = [key: number, value: number];
const LOOPBACK = ['/ip4/127.0.0.1/tcp/0'];

export function open(dir: string) {
  return Database.open<Event, typeof Root>({
    path: dir,
    root: Root,
    apply([key, value], root) {
      root.counters.set(key, value);
    },
  });
}

/** Fills a database with `count` events in transactions of 1000; returns events per second. */
export async function fill(db: Awaited<ReturnType<typeof open>>, count: number, seed: number): Promise<number> {
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

/** Wall-clock ms with sub-ms precision, comparable between processes on one machine. */
function wallMs(): number {
  return performance.timeOrigin + performance.now();
}

/** A peer serving `dir` from a child process; `append` makes it append an event and says when. */
export async function remotePeer(dir: string, topic: string) {
  const script = fileURLToPath(import.meta.url);
  const child = spawn(process.execPath, [...process.execArgv, script, `--serve=${dir}`, `--topic=${topic}`], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const next = async <T>(): Promise<T> => {
    const line = await lines.next();
    if (line.done === true) throw new Error('sync: the serving peer exited');
    return JSON.parse(line.value) as T;
  };
  const hello = await next<{ peerId: string; multiaddr: string }>();
  return {
    ...hello,
    async append(i: number): Promise<number> {
      child.stdin!.write(`append ${i}\n`);
      return (await next<{ appendedAt: number }>()).appendedAt;
    },
    async stop(): Promise<void> {
      child.stdin!.end('stop\n');
      await next<{ stopped: true }>();
    },
  };
}

/** The child side of {@link remotePeer}: serves the database until told to stop. */
async function serve(dir: string, topic: string): Promise<void> {
  const db = await open(dir);
  const replicator = await Replicator.start(db, { listen: LOOPBACK, topic, statusIntervalMs: 1000 });
  console.log(JSON.stringify({ peerId: replicator.peerId, multiaddr: replicator.multiaddrs[0] }));
  for await (const line of createInterface({ input: process.stdin })) {
    const [command, argument] = line.split(' ');
    if (command === 'append') {
      const appendedAt = wallMs();
      await db.append([Number(argument), Number(argument)]);
      console.log(JSON.stringify({ appendedAt }));
    } else if (command === 'stop') break;
  }
  await replicator.stop();
  await db.close();
  console.log(JSON.stringify({ stopped: true }));
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
    console.log(`sync: ${big} vs ${big}+1 over libp2p: ${peer.reconcileMessages} reconciliation messages in ${peer.sessions} sessions, ${peer.reconcileBytes} bytes, synced in ${(seconds * 1000).toFixed(0)} ms; stored ${da.stats().stored}/${db.stats().stored}`);
    // The check is the side that lacked the event (the copy had every event from the start), and
    // this workload has one implementation, so nothing else would compare it: check it here.
    const received = da.stats().stored;
    if (received !== big + 1) throw new Error(`sync: the side that lacked one event holds ${received} of ${big + 1} after syncing`);
    rows.push({
      workload: `sync: ${big} each side, 1 differs`,
      implementation: 'noatun (libp2p, loopback)',
      check: String(received),
      note: `one exchange: ${one.roundTrips} round trips, ${one.bytes} B; replicator until synced: ${peer.sessions} sessions, ${peer.reconcileMessages} messages, ${peer.reconcileBytes} B, ${(seconds * 1000).toFixed(0)} ms`,
    });
    await Promise.all([ra.stop(), rb.stop()]);
    await Promise.all([da.close(), db.close()]);
  }

  // 2. Initial copy of `copy` events to an empty peer, against the local write rate: first with
  // both peers in this process, then with the source peer in a child process.
  {
    const dirA = benchDir('copy-a');
    const a = await open(dirA);
    const writeRate = await fill(a, copy, 2);
    const b = await open(benchDir('copy-b'));
    const { ra, rb } = await pair(a, b, 'bench-copy');
    const { seconds } = await time(() => rb.syncedWith(ra.peerId, { signal: AbortSignal.timeout(600_000) }));
    const rate = copy / seconds;
    console.log(`sync: initial copy of ${copy} events, one process: ${rate.toFixed(0)} events/s (local writes ${writeRate.toFixed(0)} events/s); stored ${b.stats().stored}`);
    rows.push({
      workload: `sync: initial copy of ${copy} events`,
      implementation: 'noatun (libp2p, loopback, both peers in one process)',
      eventsPerSecond: rate,
      check: String(b.stats().stored),
      note: `${((rate / writeRate) * 100).toFixed(0)}% of the local write rate (${(writeRate / 1000).toFixed(1)}k/s)`,
    });
    await Promise.all([ra.stop(), rb.stop()]);
    await Promise.all([a.close(), b.close()]);

    const remote = await remotePeer(dirA, 'bench-copy-2');
    const c = await open(benchDir('copy-c'));
    const rc = await Replicator.start(c, { listen: LOOPBACK, topic: 'bench-copy-2', bootstrap: [remote.multiaddr], statusIntervalMs: 1000 });
    const apart = await time(() => rc.syncedWith(remote.peerId, { signal: AbortSignal.timeout(600_000) }));
    const apartRate = copy / apart.seconds;
    console.log(`sync: initial copy of ${copy} events, source in its own process: ${apartRate.toFixed(0)} events/s; stored ${c.stats().stored}`);
    rows.push({
      workload: `sync: initial copy of ${copy} events`,
      implementation: 'noatun (libp2p, loopback, source peer in its own process)',
      eventsPerSecond: apartRate,
      check: String(c.stats().stored),
      note: `${((apartRate / writeRate) * 100).toFixed(0)}% of the local write rate (${(writeRate / 1000).toFixed(1)}k/s)`,
    });

    // 3. Gossip latency on the connected, synced pair: an append in the child until stored here.
    const latencies: number[] = [];
    for (let i = 0; i < 50; i++) {
      const arrived = new Promise<number>((resolve) => {
        const stop = c.subscribe({
          stored: () => {
            stop();
            resolve(wallMs());
          },
        });
      });
      const appendedAt = await remote.append(i);
      latencies.push((await arrived) - appendedAt);
    }
    latencies.sort((x, y) => x - y);
    const median = latencies[latencies.length >> 1]!;
    const p90 = latencies[Math.floor(latencies.length * 0.9)]!;
    console.log(`sync: gossip latency median ${median.toFixed(1)} ms, p90 ${p90.toFixed(1)} ms`);
    rows.push({
      workload: 'gossip: local append to stored on a peer',
      implementation: 'noatun (libp2p, loopback, two processes)',
      note: `median ${median.toFixed(1)} ms, p90 ${p90.toFixed(1)} ms`,
    });
    await rc.stop();
    await remote.stop();
    await c.close();
  }
  cleanup();
  return rows;
}

const serveDir = process.argv.find((a) => a.startsWith('--serve='))?.slice('--serve='.length);
if (serveDir !== undefined) {
  await serve(serveDir, process.argv.find((a) => a.startsWith('--topic='))!.slice('--topic='.length));
}
