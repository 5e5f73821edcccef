/**
 * Fuzzing the replication protocol: random and mutated frames and reconciliation messages never
 * crash or hang a peer; they decode, or throw `BAD_FRAME` and change nothing. Over a real libp2p
 * connection, a peer sending random session frames (some with a valid or a forged envelope) is
 * refused whenever one of them is malformed, and only the valid envelope can ever be stored.
 */
import { fc, testProp } from '@fast-check/ava';
import test from 'ava';
import { Database, NoatunError, s } from '../../src/index.js';
import { FrameType, bytesFrame, decodeFrame, eventsFrame, peerStatusFrame, statusFrame, wantFrame } from '../../src/net/frames.js';
import { FINGERPRINT_BYTES, FingerprintIndex } from '../../src/net/fingerprint-index.js';
import { LOOPBACK_NETWORKS, Libp2pLink } from '../../src/net/libp2p-link.js';
import { Reconciler } from '../../src/net/reconcile.js';
import { Replicator } from '../../src/net/replicator.js';
import { prng, removeTempDirs, tempDir, testSeed } from '../helpers/temp.js';

test.after.always(removeTempDirs);

function expectBadFrame(t: import('ava').ExecutionContext, fn: () => unknown): void {
  try {
    fn();
  } catch (error) {
    t.true(error instanceof NoatunError, String(error));
    t.is((error as NoatunError).code, 'BAD_FRAME');
  }
}

const status = { cutoffTime: 0, cutoffHash: new Uint8Array(16), previousTime: 0, previousHash: new Uint8Array(16), count: 3, fingerprint: new Uint8Array(FINGERPRINT_BYTES) };
const validFrames = [
  statusFrame(FrameType.STATUS, status),
  statusFrame(FrameType.HELLO, status),
  statusFrame(FrameType.END, status),
  peerStatusFrame({ origin: '12D3KooWExample', sequence: 7, relay: true, replyWanted: false, status }),
  bytesFrame(FrameType.EVENT, new Uint8Array(40)),
  bytesFrame(FrameType.RECONCILE, new Uint8Array(12)),
  wantFrame([new Uint8Array(16), new Uint8Array(16).fill(1)]),
  eventsFrame([new Uint8Array(30), new Uint8Array(5)]),
  Uint8Array.of(FrameType.ACK, 0, 0, 0, 2),
];

testProp('random bytes: every frame decodes or throws BAD_FRAME', [fc.uint8Array({ maxLength: 300 })], (t, bytes) => {
  expectBadFrame(t, () => decodeFrame(bytes));
  t.pass();
});

testProp(
  'mutated and truncated valid frames decode or throw BAD_FRAME',
  [fc.nat({ max: validFrames.length - 1 }), fc.nat(), fc.integer({ min: 1, max: 255 }), fc.nat({ max: 100 })],
  (t, which, at, flip, cut) => {
    const frame = validFrames[which]!.slice();
    frame[at % frame.length]! ^= flip;
    expectBadFrame(t, () => decodeFrame(frame));
    expectBadFrame(t, () => decodeFrame(frame.subarray(0, Math.max(0, frame.length - cut))));
    t.pass();
  },
  { numRuns: 500 },
);

const ids = (() => {
  const random = prng(9);
  const out: Uint8Array[] = [];
  for (let i = 0; i < 400; i++) {
    const id = new Uint8Array(16);
    id[0] = 1;
    id[1] = Math.floor(i / 256);
    id[2] = i % 256;
    for (let b = 3; b < 16; b++) id[b] = Math.floor(random() * 256);
    out.push(id);
  }
  return out;
})();

testProp('random reconciliation messages throw BAD_FRAME or are answered; a refused one changes nothing', [fc.uint8Array({ maxLength: 400 })], (t, bytes) => {
  const r = new Reconciler(FingerprintIndex.fromSorted(ids));
  try {
    r.respond(Uint8Array.of(1, 0, ...bytes));
  } catch (error) {
    t.is((error as NoatunError).code, 'BAD_FRAME');
    t.is(r.stats.messagesReceived, 0);
  }
  t.pass();
});

testProp(
  'mutated reconciliation messages throw BAD_FRAME or are answered',
  [fc.nat(), fc.integer({ min: 1, max: 255 })],
  (t, at, flip) => {
    const message = new Reconciler(FingerprintIndex.fromSorted(ids.filter((_, i) => i % 7 !== 0))).initiate();
    message[at % message.length]! ^= flip;
    const r = new Reconciler(FingerprintIndex.fromSorted(ids));
    expectBadFrame(t, () => r.respond(message));
    t.pass();
  },
  { numRuns: 500 },
);

/** A valid envelope, and a forged copy of it (payload changed, id kept). */
async function sampleEnvelopes(): Promise<{ valid: Uint8Array; forged: Uint8Array }> {
  const Root = s.object({ n: s.u32() });
  const source = await Database.open<{ n: number }, typeof Root>({
    path: tempDir(),
    root: Root,
    apply(event, root) {
      root.n += event.n;
    },
  });
  await source.append({ n: 1 });
  const valid = [...source.messages()][0]!.bytes.slice();
  await source.close();
  const forged = valid.slice();
  forged[forged.length - 1]! ^= 1;
  return { valid, forged };
}

test('over libp2p: random session frames get the sender refused whenever one is malformed, and only valid events are stored', async (t) => {
  const seed = testSeed();
  t.log(`seed ${seed} (NOATUN_SEED=${seed} replays it)`);
  const { valid, forged } = await sampleEnvelopes();
  const validId = Buffer.from(valid.subarray(1, 17)).toString('hex');
  // Frames that hold a real envelope, so that "stored nothing invalid" can fail: the valid one may
  // be stored (an honest event), the forged one never.
  const frames = [...validFrames, eventsFrame([valid]), eventsFrame([forged]), eventsFrame([valid, forged])];
  const Root = s.object({ n: s.u32() });
  const db = await Database.open<{ n: number }, typeof Root>({
    path: tempDir(),
    root: Root,
    apply(event, root) {
      root.n += event.n;
    },
  });
  // Rounds whose frames all decode end by the session's idle time (short here), not by a refusal.
  const victim = await Replicator.start(db, {
    listen: ['/ip4/127.0.0.1/tcp/0'],
    topic: 'fuzz',
    statusIntervalMs: 1000,
    sessionIdleMs: 300,
    trustedNetworks: LOOPBACK_NETWORKS,
  });
  const random = prng(seed);
  try {
    for (let round = 0; round < 8; round++) {
      const hostile = await Libp2pLink.start({ listen: ['/ip4/127.0.0.1/tcp/0'], topic: 'fuzz' });
      try {
        await hostile.dial(victim.multiaddrs[0]!);
        const session = await hostile.openSession(victim.peerId);
        const sent = [statusFrame(FrameType.HELLO, { ...status, count: 0 })];
        for (let i = 0; i < 3; i++) {
          const base = frames[Math.floor(random() * frames.length)]!.slice();
          if (random() < 0.5) base[Math.floor(random() * base.length)]! ^= 1 + Math.floor(random() * 255);
          sent.push(random() < 0.3 ? Uint8Array.from({ length: 1 + Math.floor(random() * 64) }, () => Math.floor(random() * 256)) : base);
        }
        const malformed = sent.some((frame) => {
          try {
            decodeFrame(frame);
            return false;
          } catch {
            return true;
          }
        });
        await Promise.all(sent.map((f) => session.send(f).catch(() => {})));
        const state = () => victim.peers().find((p) => p.peerId === hostile.peerId);
        // A malformed frame must get the peer refused; otherwise the session ends somehow (refused
        // for a protocol breach, or ended when the peer goes quiet) and the peer is not in one.
        const settled = () => {
          const peer = state();
          if (peer === undefined) return false;
          if (malformed) return peer.state === 'refused';
          return peer.state === 'refused' || (peer.state !== 'syncing' && peer.reason !== undefined);
        };
        const end = Date.now() + 10_000;
        while (!settled() && Date.now() < end) await new Promise((resolve) => setTimeout(resolve, 20));
        t.true(settled(), `round ${round} (${malformed ? 'a malformed frame' : 'all frames decode'}): ${JSON.stringify(state())}`);
        const stored = [...db.ids()].map((id) => Buffer.from(id).toString('hex'));
        t.true(stored.every((id) => id === validId), `round ${round}: only the valid envelope may be stored, not ${stored.join(', ')}`);
      } finally {
        await hostile.stop();
      }
    }
  } finally {
    await victim.stop();
    await db.close();
  }
});
