/**
 * Summarizes a V8 CPU profile (`node --cpu-prof` writes `*.cpuprofile`): the functions with the
 * most self time, and the self time per source file, so BENCHMARKS.md can say where time goes.
 *
 * `node --import=tsx bench/profile-summary.ts <file.cpuprofile> [top=25]`
 */
import * as fs from 'node:fs';

interface ProfileNode {
  readonly id: number;
  readonly children?: readonly number[];
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
}

interface Profile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** Shortens a file URL to the part a reader recognizes (the path inside the repo or package). */
function shortUrl(url: string): string {
  if (url === '') return '(native)';
  const modules = url.lastIndexOf('node_modules/');
  if (modules >= 0) return url.slice(modules + 'node_modules/'.length);
  const at = url.search(/\/(src|bench|test)\//);
  return at >= 0 ? url.slice(at + 1) : url.replace(/^file:\/\//, '');
}

/** Self time in microseconds per function (name, file, line) and per file, with the total. */
export function summarize(profile: Profile): {
  total: number;
  functions: [string, number][];
  files: [string, number][];
  inclusive: [string, number][];
} {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const label = (node: ProfileNode) => {
    const { functionName, url, lineNumber } = node.callFrame;
    return `${functionName || '(anonymous)'}  ${shortUrl(url)}${url === '' ? '' : `:${lineNumber + 1}`}`;
  };
  // Inclusive time: each function on a sample's stack gets the sample once (recursion counts once).
  const inclusive = new Map<string, number>();
  const functions = new Map<string, number>();
  const files = new Map<string, number>();
  let total = 0;
  // timeDeltas[i] is the time before sample i; attributing it to sample i is V8's convention.
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byId.get(profile.samples[i]!)!;
    const delta = profile.timeDeltas[i] ?? 0;
    const { functionName, url, lineNumber } = node.callFrame;
    const file = shortUrl(url);
    const key = `${functionName || '(anonymous)'}  ${file}${url === '' ? '' : `:${lineNumber + 1}`}`;
    functions.set(key, (functions.get(key) ?? 0) + delta);
    files.set(file, (files.get(file) ?? 0) + delta);
    total += delta;
    const onStack = new Set<string>();
    for (let at: number | undefined = node.id; at !== undefined; at = parent.get(at)) onStack.add(label(byId.get(at)!));
    for (const name of onStack) inclusive.set(name, (inclusive.get(name) ?? 0) + delta);
  }
  const sorted = (map: Map<string, number>) => [...map].sort((a, b) => b[1] - a[1]);
  return { total, functions: sorted(functions), files: sorted(files), inclusive: sorted(inclusive) };
}

if (process.argv[1]?.endsWith('profile-summary.ts')) {
  const [file, topArg] = process.argv.slice(2);
  if (file === undefined) {
    console.error('usage: profile-summary.ts <file.cpuprofile> [top]');
    process.exit(2);
  }
  const top = Number(topArg ?? 25);
  const { total, functions, files, inclusive } = summarize(JSON.parse(fs.readFileSync(file, 'utf8')) as Profile);
  const pct = (us: number) => `${((us / total) * 100).toFixed(1).padStart(5)}%`;
  console.log(`${(total / 1e6).toFixed(2)} s sampled\n\nself time by function:`);
  for (const [key, us] of functions.slice(0, top)) console.log(`${pct(us)}  ${(us / 1000).toFixed(0).padStart(7)} ms  ${key}`);
  console.log('\ntotal (inclusive) time by function:');
  for (const [key, us] of inclusive.slice(0, top)) console.log(`${pct(us)}  ${(us / 1000).toFixed(0).padStart(7)} ms  ${key}`);
  console.log('\nself time by file:');
  for (const [key, us] of files.slice(0, 15)) console.log(`${pct(us)}  ${(us / 1000).toFixed(0).padStart(7)} ms  ${key}`);
}
