/**
 * `npm run sim -- --seeds N [--seed S] [--parallel P]`: runs simulator seeds (random ones, or the
 * given one) and prints a line per failure with the command that replays it.
 */
import { replayCommand, runSeed, type SimResult } from './simulator.js';

const args = process.argv.slice(2);
const option = (name: string): string | undefined => {
  const i = args.indexOf(name);
  return i === -1 ? undefined : args[i + 1];
};
const fixed = option('--seed');
const count = Number.parseInt(option('--seeds') ?? '20', 10);
const parallel = Number.parseInt(option('--parallel') ?? '2', 10);
const first = Number.parseInt(option('--from') ?? String((Math.random() * 2 ** 31) >>> 0), 10);
const seeds = fixed === undefined ? Array.from({ length: count }, (_, i) => (first + i) >>> 0) : [Number.parseInt(fixed, 10) >>> 0];

const started = Date.now();
const failures: SimResult[] = [];
let done = 0;
let next = 0;
async function worker(): Promise<void> {
  while (next < seeds.length) {
    const seed = seeds[next++]!;
    const result = await runSeed(seed);
    done++;
    if (!result.ok) {
      failures.push(result);
      console.log(`FAIL seed ${seed} (${result.app}, ${result.peers} peers, ${result.events} events): ${result.message}\n  replay: ${replayCommand(seed)}`);
    } else if (seeds.length === 1) {
      console.log(`ok seed ${seed} (${result.app}, ${result.peers} peers, ${result.events} events, ${result.ms} ms): ${result.message}`);
    }
    if (done % 100 === 0) console.log(`${done}/${seeds.length} seeds, ${failures.length} failed, ${((Date.now() - started) / 1000).toFixed(0)} s`);
  }
}
await Promise.all(Array.from({ length: Math.max(1, parallel) }, worker));
console.log(`${seeds.length} seeds (from ${seeds[0]}), ${failures.length} failed, ${((Date.now() - started) / 1000).toFixed(1)} s`);
process.exit(failures.length === 0 ? 0 : 1);
