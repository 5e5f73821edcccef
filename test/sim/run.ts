/**
 * `npm run sim -- --seeds N [--from S] [--seed S] [--parallel P] [--app NAME] [--faults a,b|none]`:
 * runs simulator seeds (random ones, or the given one) and prints a line per failure with the
 * command that replays it. `--app` runs every seed with one app; `--faults` keeps only the named
 * added faults (see FAULTS in simulator.ts; `none` for the base schedule alone).
 */
import { parseArgs } from 'node:util';
import { apps } from '../helpers/apps.js';
import { FAULTS, type Fault, replayCommand, runSeed, type SimOptions, type SimResult } from './simulator.js';

/** A mistake on the command line: one line, and exit status 2 (as the `noatun` command does). */
function usage(message: string): never {
  // (Node's own messages can span lines.)
  process.stderr.write(`sim: ${message.replace(/\s*\n\s*/g, ' ')} (usage: npm run sim -- --seeds N [--from S] [--seed S] [--parallel P] [--app NAME] [--faults a,b|none])\n`);
  process.exit(2);
}

/**
 * The whole number `text` of `name`, in [min, max]. (`Number.parseInt` read `abc` as NaN, which
 * ran no seed and passed, and `--seed abc` replayed seed 0.)
 */
function whole(name: string, text: string | undefined, fallback: number, min: number, max = 2 ** 32 - 1): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) usage(`--${name} must be a whole number from ${min} to ${max}, not ${JSON.stringify(text)}`);
  return n;
}

let given: Record<string, string | undefined>;
try {
  given = parseArgs({
    options: {
      seeds: { type: 'string' },
      from: { type: 'string' },
      seed: { type: 'string' },
      parallel: { type: 'string' },
      app: { type: 'string' },
      faults: { type: 'string' },
    },
  }).values;
} catch (error) {
  // An unknown flag (`--seed` misspelt) was ignored: the run went on without it.
  usage((error as Error).message);
}
const fixed = given.seed === undefined ? undefined : whole('seed', given.seed, 0, 0);
const count = whole('seeds', given.seeds, 20, 1);
const parallel = whole('parallel', given.parallel, 2, 1, 64);
const first = whole('from', given.from, (Math.random() * 2 ** 31) >>> 0, 0);
const seeds = fixed === undefined ? Array.from({ length: count }, (_, i) => (first + i) >>> 0) : [fixed];
const app = given.app;
if (app !== undefined && apps[app] === undefined) usage(`unknown app ${app}; known: ${Object.keys(apps).join(', ')}`);
const faultList = given.faults;
const unknown = (faultList ?? '').split(',').filter((f) => f !== '' && f !== 'none' && !(FAULTS as readonly string[]).includes(f));
if (unknown.length !== 0) usage(`unknown faults ${unknown.join(', ')}; known: ${FAULTS.join(', ')}`);
const options: SimOptions = {
  ...(app === undefined ? {} : { app }),
  ...(faultList === undefined ? {} : { faults: new Set(faultList.split(',').filter((f) => f !== 'none') as Fault[]) }),
};
const flags = `${app === undefined ? '' : ` --app ${app}`}${faultList === undefined ? '' : ` --faults ${faultList}`}`;

const started = Date.now();
const failures: SimResult[] = [];
const times: number[] = [];
let exempt = 0;
let done = 0;
let next = 0;
async function worker(): Promise<void> {
  while (next < seeds.length) {
    const seed = seeds[next++]!;
    const result = await runSeed(seed, options);
    done++;
    times.push(result.ms);
    if (result.exempt) exempt++;
    const what = `${result.app}, ${result.peers} peers, ${result.events} events, ${result.late} stored late${result.exempt ? ', peers wrote while cut off' : ''}; faults: ${result.faults || 'none'}`;
    if (!result.ok) {
      failures.push(result);
      console.log(`FAIL seed ${seed} (${what}): ${result.message}\n  replay: ${replayCommand(seed)}${flags}`);
    } else if (seeds.length === 1) {
      console.log(`ok seed ${seed} (${what}, ${result.ms} ms): ${result.message}`);
    }
    if (done % 100 === 0) console.log(`${done}/${seeds.length} seeds, ${failures.length} failed, ${((Date.now() - started) / 1000).toFixed(0)} s`);
  }
}
await Promise.all(Array.from({ length: Math.max(1, parallel) }, worker));
times.sort((a, b) => a - b);
const at = (q: number) => times[Math.min(times.length - 1, Math.floor(q * times.length))] ?? 0;
console.log(`seed times: median ${at(0.5)} ms, p90 ${at(0.9)} ms, max ${at(1)} ms`);
console.log(`${seeds.length} seeds (from ${seeds[0]}), ${failures.length} failed, ${exempt} exempt from the reference (peers cut off, behind, or replayed to), ${((Date.now() - started) / 1000).toFixed(1)} s`);
process.exit(failures.length === 0 ? 0 : 1);
