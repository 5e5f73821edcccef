/**
 * The swarm simulator in CI: a batch of seeds (SIM_SEEDS, default 120, from NOATUN_SEED or a
 * random start that is printed), and the regression seeds of bugs it found. A failing seed is
 * reported with the command that replays it (`npm run sim -- --seed S`). The default batch is
 * sized to take about the wall time the former 200 seeds took: a seed now also checks stored
 * ids, cutoff hashes and failures against a reference peer, passes every hold, and runs fixed-point
 * checks, which made it about 1.7 times as long on average.
 */
import test from 'ava';
import { replayCommand, runSeed, type SimResult } from './simulator.js';
import { killAll, run } from '../helpers/child.js';
import { testSeed } from '../helpers/temp.js';

test.after.always(killAll);

const SEEDS = Number.parseInt(process.env.SIM_SEEDS ?? '120', 10);
/** Seeds run side by side: most of a seed's time is waiting on the simulated network. */
const PARALLEL = 3;

function describe(result: SimResult): string {
  const what = `${result.app}, ${result.peers} peers, ${result.events} events, ${result.late} stored late${result.exempt ? ', peers wrote while cut off' : ''}; faults: ${result.faults || 'none'}`;
  return `seed ${result.seed} (${what}): ${result.message}\n  replay: ${replayCommand(result.seed)}`;
}

test('npm run sim refuses arguments it cannot use: one line, exit status 2, no seed run', async (t) => {
  // (`--seeds abc` and `--seeds -3` ran no seed and passed, `--seed abc` replayed seed 0, and an
  // unknown flag was ignored.)
  const cases: [string[], RegExp][] = [
    [['--seeds', 'abc'], /^! sim: --seeds must be a whole number from 1 to \d+, not "abc" \(usage: /],
    [['--seeds', '-3'], /^! sim: Option '--seeds' argument is ambiguous\. .* \(usage: /],
    [['--seed', 'abc'], /^! sim: --seed must be a whole number from 0 to \d+, not "abc" \(usage: /],
    [['--seeds', '2', '--bogus'], /^! sim: Unknown option '--bogus' \(usage: /],
  ];
  const children = cases.map(([args]) => run(['--conditions=noatun-source', '--import=tsx', 'test/sim/run.ts', ...args]));
  for (const [i, child] of children.entries()) {
    const [args, pattern] = cases[i]!;
    await child.waitFor(/^! sim: /);
    t.is(await child.exited(), 2, `${args.join(' ')}: ${child.output}`);
    t.is(child.lines.length, 1, `${args.join(' ')}: ${child.output}`);
    t.regex(child.lines[0]!, pattern, args.join(' '));
  }
});

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

test(`${SEEDS} random seeds converge: views in iteration order after healing, and stored ids, cutoff hashes and failures equal to a reference peer (or, where peers wrote while cut off, to each other) once every hold has passed; the fixed point on random peers`, async (t) => {
  const first = testSeed();
  t.log(`seeds ${first} to ${(first + SEEDS - 1) >>> 0} (NOATUN_SEED=${first} repeats this batch)`);
  const failures: SimResult[] = [];
  let next = 0;
  // A broken engine makes many seeds wait out their sync timeout: stop after ten failures, so
  // the batch still reports within the test timeout.
  const worker = async () => {
    while (next < SEEDS && failures.length < 10) {
      const result = await runSeed((first + next++) >>> 0);
      if (!result.ok) failures.push(result);
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, worker));
  t.deepEqual(failures.map(describe), []);
});
