/**
 * The swarm simulator in CI: a batch of seeds (SIM_SEEDS, default 200, from NOATUN_SEED or a
 * random start that is printed), and the regression seeds of bugs it found. A failing seed is
 * reported with the command that replays it (`npm run sim -- --seed S`).
 */
import test from 'ava';
import { replayCommand, runSeed, type SimResult } from './simulator.js';
import { testSeed } from '../helpers/temp.js';

const SEEDS = Number.parseInt(process.env.SIM_SEEDS ?? '200', 10);
/** Seeds run side by side: most of a seed's time is waiting on the simulated network. */
const PARALLEL = 3;

function describe(result: SimResult): string {
  return `seed ${result.seed} (${result.app}, ${result.peers} peers, ${result.events} events): ${result.message}\n  replay: ${replayCommand(result.seed)}`;
}

test('seed 5007: a cutoff that moves during the handshake does not make peers refuse each other', async (t) => {
  // Each side used to reconcile from its cutoff at the time it read the other's HELLO, not the
  // one it had sent: after a move in between, the ranges differed and both sides refused.
  const result = await runSeed(5007);
  t.true(result.ok, describe(result));
});

test('seeds 5021 and 5117 side by side: each keeps its own files', async (t) => {
  // A seed's clean-up used to remove every directory of the process, including those of a seed
  // still running: its peers reopened empty and the swarm's view lost events.
  const results = await Promise.all([runSeed(5021), runSeed(5117)]);
  for (const result of results) t.true(result.ok, describe(result));
});

test(`${SEEDS} random seeds converge to a replay of everything written, before and after pruning`, async (t) => {
  const first = testSeed();
  t.log(`seeds ${first} to ${(first + SEEDS - 1) >>> 0} (NOATUN_SEED=${first} repeats this batch)`);
  const failures: SimResult[] = [];
  let next = 0;
  const worker = async () => {
    while (next < SEEDS) {
      const result = await runSeed((first + next++) >>> 0);
      if (!result.ok) failures.push(result);
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, worker));
  t.deepEqual(failures.map(describe), []);
});
