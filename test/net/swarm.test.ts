/**
 * A sparse swarm (issue 17): 50 in-memory peers, each connected to two earlier ones, gossip relayed
 * hop by hop as gossipsub relays it. All peers converge and confirm sync with their neighbours and
 * with far peers; events travel by the relay, so a delivered event costs about one copy of
 * its envelope; once the swarm is idle, what a peer receives per status interval is bounded by its
 * number of neighbours (statuses are not flooded), whatever the size of the swarm.
 *
 * Replay a failure with NOATUN_SEED=<seed>.
 */
import test from 'ava';
import { Database, s } from '../../src/index.js';
import { peerStatusFrame } from '../../src/net/frames.js';
import { MemoryNetwork } from '../../src/net/memory-link.js';
import { Replicator } from '../../src/net/replicator.js';
import { prng, removeTempDirs, tempDir, testSeed } from '../helpers/temp.js';

test.after.always(removeTempDirs);

const Root = s.object({ total: s.u32() });
type Event = { add: number };

async function until(condition: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const PEERS = 50;
const EVENTS_EACH = 4;
const INTERVAL_MS = 250;

// Both commit modes: with commits on the calling thread, a loop of awaited appends used to run
// without a turn of the event loop, so every peer's writes left in one burst and the relay sent
// 1.15–1.20 copies per delivery (a write now resolves after a turn, as with 'async'). One after
// the other: two swarms at once in one process slow each other and start more sessions.
for (const commitMode of ['async', 'sync'] as const) {
  test.serial(`50 peers in a sparse topology converge, confirm sync, and idle at a cost bounded by their neighbours (commitMode '${commitMode}')`, async (t) => {
    const seed = testSeed();
    const random = prng(seed);
    const network = new MemoryNetwork({ seed, latencyMs: 1, jitterMs: 2, autoConnect: false, relayGossip: true });
    const peers: { id: string; db: Database<Event, typeof Root>; replicator: Replicator }[] = [];
    try {
      for (let i = 0; i < PEERS; i++) {
        const id = `p${String(i).padStart(2, '0')}`;
        const db = await Database.open<Event, typeof Root>({ path: tempDir(), root: Root, commitMode, apply: (e, root) => void (root.total += e.add) });
        const replicator = new Replicator(db, network.join(id), { statusIntervalMs: INTERVAL_MS, statusDebounceMs: 10 });
        peers.push({ id, db, replicator });
        // Two earlier peers (one for the second peer).
        const earlier = peers.slice(0, i).map((p) => p.id);
        for (let k = 0; k < Math.min(2, earlier.length); k++) {
          const [target] = earlier.splice(Math.floor(random() * earlier.length), 1);
          await replicator.dial(target!);
        }
      }
      const neighbours = new Map(peers.map((p) => [p.id, network.neighbours(p.id).length]));
      t.log(`seed ${seed}: ${PEERS} peers, ${[...neighbours.values()].reduce((a, b) => a + b, 0) / 2} links, at most ${Math.max(...neighbours.values())} per peer`);

      const sessions = () => peers.reduce((sum, p) => sum + p.replicator.peers().reduce((s, q) => s + q.sessions + q.running, 0), 0);
      const sessionsBefore = sessions();
      for (const p of peers) for (let i = 0; i < EVENTS_EACH; i++) await p.db.append({ add: 1 });
      const all = PEERS * EVENTS_EACH;
      await until(() => peers.every((p) => p.db.stats().stored === all), `every peer holds all ${all} events (seed ${seed})`, 30_000);
      // Copies of envelopes that crossed a link (pushed, grafted, or in a session), per delivery.
      const copies = peers.reduce((sum, p) => sum + p.replicator.peers().reduce((s, q) => s + q.received, 0), 0);
      const deliveries = all * (PEERS - 1);
      t.log(`${copies} envelopes crossed links for ${deliveries} deliveries: ${(copies / deliveries).toFixed(2)} per delivery`);
      t.true(copies <= 1.1 * deliveries, `seed ${seed}: ${copies} envelope copies for ${deliveries} deliveries`);
      // Statuses differ while events are in flight; that alone starts no session (without the
      // delay of statusSyncDelayMs this swarm ran thousands). A spread slower than the delay, on a
      // loaded machine, still starts some: one seed gave 8–48 in eight quiet runs of the code
      // before both modes ran here, and 52–56 under the CI's load; seed 3980137611 gave 106 in a
      // full CI run (6 Dec; 12–48 in six runs of this file alone). Three times the peers bounds
      // those and still fails the thousands.
      const during = sessions() - sessionsBefore;
      t.log(`${during} sessions while the events spread`);
      t.true(during <= 3 * PEERS, `seed ${seed}: ${during} sessions while the events spread`);
      const ids = (p: (typeof peers)[number]) => [...p.db.ids()].map((id) => Buffer.from(id).toString('hex')).join();
      for (const p of peers) t.is(ids(p), ids(peers[0]!), `seed ${seed}: ${p.id} holds the same events`);

      // Every peer confirms sync with its neighbours, and a few with peers far away.
      const signal = AbortSignal.timeout(30_000);
      await Promise.all(peers.flatMap((p) => network.neighbours(p.id).map((q) => p.replicator.syncedWith(q, { signal }))));
      const far: [number, number][] = [
        [0, PEERS - 1],
        [PEERS - 1, 0],
        [7, 42],
        [42, 7],
      ];
      await Promise.all(far.map(([a, b]) => peers[a]!.replicator.syncedWith(peers[b]!.id, { signal })));
      for (const [a, b] of far) t.is(peers[a]!.replicator.peers().find((p) => p.peerId === peers[b]!.id)?.state, 'synced');

      // Idle: a keepalive from each neighbour per interval, nothing relayed.
      await new Promise((resolve) => setTimeout(resolve, 2 * INTERVAL_MS));
      const framesReceived = (id: string) => (network.gossipReceived.get(id) ?? 0) + (network.directReceived.get(id) ?? 0);
      const before = new Map(peers.map((p) => [p.id, framesReceived(p.id)]));
      const intervals = 8;
      await new Promise((resolve) => setTimeout(resolve, intervals * INTERVAL_MS));
      let worst = 0;
      for (const p of peers) {
        const received = framesReceived(p.id) - before.get(p.id)!;
        const bound = neighbours.get(p.id)! * (intervals + 1);
        worst = Math.max(worst, received / neighbours.get(p.id)! / intervals);
        t.true(received <= bound, `seed ${seed}: ${p.id} received ${received} frames in ${intervals} intervals with ${neighbours.get(p.id)} neighbours`);
      }
      t.log(`idle: at most ${worst.toFixed(2)} frames per neighbour per interval`);
    } finally {
      for (const p of peers) await p.replicator.stop();
      for (const p of peers) await p.db.close();
    }
  });
}

test('a status for neighbours only that names another peer gets its sender refused; a relayed copy of a neighbour’s status does not speak for it', async (t) => {
  const network = new MemoryNetwork({ latencyMs: 1 });
  const db = await Database.open<Event, typeof Root>({ path: tempDir(), root: Root, apply: (e, root) => void (root.total += e.add) });
  const victim = new Replicator(db, network.join('victim'), { statusIntervalMs: 100, statusDebounceMs: 5 });
  const liar = network.join('liar');
  const neighbour = network.join('neighbour');
  const status = (count: number) => ({ cutoffTime: 0, cutoffHash: new Uint8Array(16), previousTime: 0, previousHash: new Uint8Array(16), count, fingerprint: new Uint8Array(12) });
  try {
    await until(() => victim.peers().filter((p) => p.state !== 'disconnected').length === 2, 'both connected', 5000);
    // Relayed in the name of a connected neighbour: ignored (the neighbour speaks for itself).
    liar.publish(peerStatusFrame({ origin: 'neighbour', sequence: 1, relay: true, replyWanted: false, status: status(99) }));
    await new Promise((resolve) => setTimeout(resolve, 100));
    t.not(victim.peers().find((p) => p.peerId === 'neighbour')?.state, 'differs');
    // For neighbours only, naming someone else: a protocol violation.
    liar.publish(peerStatusFrame({ origin: 'neighbour', sequence: 2, relay: false, replyWanted: false, status: status(0) }));
    await until(() => victim.peers().find((p) => p.peerId === 'liar')?.state === 'refused', 'the liar refused', 5000);
    t.regex(victim.peers().find((p) => p.peerId === 'liar')!.reason ?? '', /another peer/);
  } finally {
    await victim.stop();
    await Promise.all([liar.stop(), neighbour.stop()]);
    await db.close();
  }
});
