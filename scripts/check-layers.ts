/**
 * Checks the import rules of src/: layers import only downward (view < core < net < cli), the
 * shared files directly in src/ (errors.ts) import no layer, nothing inside src imports the public
 * entry (index.ts), there are no import cycles, and examples import the package by name.
 *
 * Usage: node --import=tsx scripts/check-layers.ts [root]   (exit 1 on any violation)
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

const LAYERS = ['view', 'core', 'net', 'cli'];
const IMPORT = /(?:^|[\s;])(?:import|export)\s[^'"`]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|^\s*import\s*['"]([^'"]+)['"]/gm;

interface Edge {
  readonly from: string;
  readonly to: string;
  readonly line: number;
  readonly spec: string;
}

function walk(dir: string, out: string[] = []): string[] {
  if (!fs.existsSync(dir)) return out;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) walk(full, out);
    else if (/\.(ts|tsx|mts)$/.test(entry.name) && !entry.name.endsWith('.d.ts')) out.push(full);
  }
  return out;
}

function imports(file: string): { spec: string; line: number }[] {
  const text = fs.readFileSync(file, 'utf8');
  const found: { spec: string; line: number }[] = [];
  for (const match of text.matchAll(IMPORT)) {
    const spec = match[1] ?? match[2] ?? match[3];
    if (spec === undefined) continue;
    const start = match.index + (match[0].length - match[0].trimStart().length);
    found.push({ spec, line: text.slice(0, start).split('\n').length });
  }
  return found;
}

function resolve(from: string, spec: string): string | undefined {
  if (!spec.startsWith('.')) return undefined;
  const base = path.resolve(path.dirname(from), spec);
  for (const candidate of [base.replace(/\.js$/, '.ts'), base, `${base}.ts`, path.join(base, 'index.ts')]) {
    if (fs.existsSync(candidate) && fs.statSync(candidate).isFile()) return candidate;
  }
  return undefined;
}

/** The layer index of a file under src (-1: a shared file directly in src). */
function layerOf(src: string, file: string): number {
  const first = path.relative(src, file).split(path.sep)[0]!;
  return LAYERS.indexOf(first);
}

/** Returns the violations found under `root` (empty when the tree is clean). */
export function checkLayers(root: string): { problems: string[]; files: number } {
  const src = path.join(root, 'src');
  const files = walk(src);
  const problems: string[] = [];
  const edges: Edge[] = [];
  for (const file of files) {
    for (const { spec, line } of imports(file)) {
      const target = resolve(file, spec);
      if (target === undefined) continue;
      const where = `${path.relative(root, file)}:${line}`;
      if (!target.startsWith(src + path.sep)) {
        problems.push(`${where}: imports ${spec}, outside src/`);
        continue;
      }
      edges.push({ from: file, to: target, line, spec });
      const fromLayer = layerOf(src, file);
      const toLayer = layerOf(src, target);
      const targetName = path.relative(src, target);
      if (targetName === 'index.ts') problems.push(`${where}: imports ${spec}; nothing inside src may import the public entry`);
      else if (fromLayer === -1 && path.relative(src, file) !== 'index.ts' && toLayer !== -1) {
        problems.push(`${where}: imports ${spec}; shared files in src/ must not depend on a layer`);
      } else if (fromLayer !== -1 && toLayer > fromLayer) {
        problems.push(`${where}: imports ${spec}; ${LAYERS[fromLayer]} may not import from ${LAYERS[toLayer]} (layers point net → core → view)`);
      }
    }
  }
  // Cycles: depth-first search over the import graph.
  const graph = new Map<string, Edge[]>();
  for (const edge of edges) graph.set(edge.from, [...(graph.get(edge.from) ?? []), edge]);
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const reported = new Set<string>();
  const visit = (file: string): void => {
    state.set(file, 'open');
    stack.push(file);
    for (const edge of graph.get(file) ?? []) {
      const s = state.get(edge.to);
      if (s === 'open') {
        const cycle = [...stack.slice(stack.indexOf(edge.to)), edge.to].map((f) => path.relative(root, f));
        const key = [...cycle].sort().join('|');
        if (!reported.has(key)) {
          reported.add(key);
          problems.push(`import cycle: ${cycle.join(' → ')}`);
        }
      } else if (s === undefined) visit(edge.to);
    }
    stack.pop();
    state.set(file, 'done');
  };
  for (const file of files) if (!state.has(file)) visit(file);
  // Examples use the package name, never the sources.
  for (const file of walk(path.join(root, 'examples'))) {
    for (const { spec, line } of imports(file)) {
      if (/(^|\/)src(\/|$)/.test(spec) && spec.startsWith('.')) {
        problems.push(`${path.relative(root, file)}:${line}: imports ${spec}; examples import the package ('noatun')`);
      }
    }
  }
  return { problems, files: files.length };
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === path.resolve(import.meta.filename)) {
  const root = path.resolve(process.argv[2] ?? '.');
  const { problems, files } = checkLayers(root);
  for (const problem of problems) console.error(problem);
  if (problems.length > 0) process.exit(1);
  console.log(`layers ok (${files} files)`);
}
