/**
 * When to rebuild changes cost, never state: a peer that writes a random workload and rebuilds its
 * view from the log at random moments (view deleted, or `compact()`) must end with the same stored
 * set, cutoff hashes, failures and view as a twin that received every event as it was written and
 * never rebuilt — for every test app. Pruning runs all along (a short cutoff interval and a clock
 * that moves seconds per event), so a rebuild replays stored sets that pruning has thinned, which
 * is where a record that a replay would not give back shows.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import test from 'ava';
import { appendOrRefused } from '../helpers/append.js';
import { type App, apps } from '../helpers/apps.js';
import { cutoffHashMismatch, holdClearance, openApp, stateDifference } from '../helpers/convergence.js';
import { FakeClock, prng, removeTempDirs, T0, tempDir, testSeed } from '../helpers/temp.js';

test.after.always(removeTempDirs);

const INTERVAL = 120_000;

async function runSeed(app: App<unknown>, seed: number): Promise<string | undefined> {
  const random = prng(seed);
  const clock = new FakeClock(T0);
  const dir = tempDir();
  let peer = await openApp(app, { path: dir, now: clock.now, intervalMs: INTERVAL });
  const twin = await openApp(app, { path: tempDir(), now: clock.now, intervalMs: INTERVAL });
  let rebuilds = 0;
  try {
    for (let step = 0; step < 300; step++) {
      clock.advance(Math.floor(random() * 15_000));
      const r = random();
      if (r < 0.88) {
        const id = await appendOrRefused(peer, app.random(random));
        if (id !== undefined) await twin.ingest([peer.message(id)!.bytes]);
      } else if (r < 0.92) {
        await peer.close();
        fs.rmSync(path.join(dir, 'view'), { recursive: true, force: true });
        peer = await openApp(app, { path: dir, now: clock.now, intervalMs: INTERVAL });
        rebuilds++;
      } else if (r < 0.95) {
        await peer.compact();
        rebuilds++;
      } else {
        peer.advanceCutoff();
        twin.advanceCutoff();
      }
    }
    clock.advance(holdClearance(INTERVAL, peer.cutoffStrideMs));
    peer.advanceCutoff();
    twin.advanceCutoff();
    for (const [name, db] of [['the peer', peer], ['the twin', twin]] as const) {
      const wrong = cutoffHashMismatch(db);
      if (wrong !== undefined) return `${name}'s cutoff hashes do not match its stored ids: ${wrong}`;
    }
    const difference = stateDifference(peer, twin, ['the peer that rebuilt', 'the twin that never did']);
    return difference === undefined ? undefined : `after ${rebuilds} rebuilds: ${difference}`;
  } finally {
    await peer.close();
    await twin.close();
  }
}

const SEEDS = Number(process.env.NOATUN_SEEDS ?? 3);
const first = testSeed();
for (const app of Object.values(apps)) {
  for (let i = 0; i < SEEDS; i++) {
    const seed = (first + i) >>> 0;
    test(`${app.name}: a peer that rebuilds at random ends equal to a twin that never did (seed ${seed})`, async (t) => {
      t.is(await runSeed(app, seed), undefined, `replay: NOATUN_SEED=${seed} npx ava test/core/rebuild-twin.test.ts --match '${app.name}*'`);
    });
  }
}
