/**
 * Checks the import rules of the source tree (STYLE.md "The house", DESIGN.md §3):
 *
 * - layers import only downward: `src/view` < `src/core` < `src/net` < `src/cli`;
 * - the shared files directly in `src/` (`errors.ts`, …) may be imported by every layer but import
 *   no layer themselves;
 * - the public entry `src/index.ts` imports only `core`, `view` and the shared files, and nothing
 *   inside `src/` imports it;
 * - there are no import cycles among the files of `src/` (type-only imports included);
 * - `examples/` import the package by its name, `noatun`, never `../src`.
 *
 * Every static and dynamic import and re-export is checked, `import type` included; a `.js`
 * suffix resolves to the `.ts` file beside it. Comments and string contents are skipped by a small
 * tokenizer, so a commented-out import is not a violation.
 *
 * Runs under Node's native type stripping, so it uses erasable syntax and `node:` modules only.
 *
 * Usage: `node scripts/check-layers.ts [root]` (root defaults to this repository). Prints one line
 * per violation (file:line, the import, the rule) and exits 1, or prints `layers ok (N files)`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** The layers, lowest first: a file may import its own layer and those below it. */
export const LAYERS = ['view', 'core', 'net', 'cli'] as const;

/** The layers the public entry `src/index.ts` may import. */
const ENTRY_MAY_IMPORT: readonly string[] = ['core', 'view'];

/** Which rule a violation breaks; stable, so tests assert on it. */
export type Rule =
  | 'upward-import'
  | 'shared-imports-layer'
  | 'entry-imports-layer'
  | 'imports-entry'
  | 'outside-src'
  | 'outside-layers'
  | 'unresolved-import'
  | 'import-cycle'
  | 'example-imports-src';

/** One broken rule, located at the import that breaks it. */
export interface Violation {
  readonly rule: Rule;
  /** The importing file, relative to the checked root, with `/` separators. */
  readonly file: string;
  /** 1-based line of the `import`/`export` keyword. */
  readonly line: number;
  /** The module specifier as written. */
  readonly specifier: string;
  /** The whole report line: `file:line: import 'specifier': what is wrong`. */
  readonly message: string;
}

/** An import or re-export found in a source file. */
export interface ImportRef {
  readonly specifier: string;
  readonly line: number;
}

/** The result of {@link checkLayers}. */
export interface LayerReport {
  /** The number of files checked under `src/`. */
  readonly files: number;
  readonly violations: readonly Violation[];
}

// ---------------------------------------------------------------------------------------------
// Finding imports

type TokenKind = 'name' | 'string' | 'template' | 'number' | 'regex' | 'punct';

interface Token {
  readonly kind: TokenKind;
  /** The identifier, the punctuator, or a string's (unescaped enough for paths) contents. */
  readonly value: string;
  readonly offset: number;
}

/** Keywords after which a `/` starts a regular expression rather than a division. */
const BEFORE_REGEX = new Set([
  'return', 'typeof', 'instanceof', 'in', 'of', 'new', 'delete', 'void', 'throw', 'case', 'do',
  'else', 'yield', 'await',
]);

const IDENT_START = /[A-Za-z_$\u0080-\uffff]/;
const IDENT_PART = /[\w$\u0080-\uffff]/;

/**
 * Splits TypeScript source into the tokens that matter for finding imports. Comments are dropped,
 * string and template contents never produce tokens, and regular expression literals are told
 * apart from division by the previous token, so quotes inside any of them cannot be mistaken for
 * a module specifier.
 */
function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  // One entry per open `{`: true when it opened a template substitution `${`.
  const braces: boolean[] = [];
  let i = 0;
  if (text.startsWith('#!')) {
    const end = text.indexOf('\n'); // a hashbang line is not code
    i = end === -1 ? text.length : end;
  }

  const regexAllowed = (): boolean => {
    const prev = tokens[tokens.length - 1];
    if (prev === undefined) return true;
    if (prev.kind === 'name') return BEFORE_REGEX.has(prev.value);
    if (prev.kind === 'punct') return prev.value !== ')' && prev.value !== ']' && prev.value !== '}';
    return false;
  };

  /** Scans template text from `i` to its closing backtick or to a `${`; returns which one ended it. */
  const templateRest = (): 'end' | 'substitution' => {
    while (i < text.length) {
      const c = text[i]!;
      if (c === '\\') i += 2;
      else if (c === '`') {
        i++;
        return 'end';
      } else if (c === '$' && text[i + 1] === '{') {
        i += 2;
        braces.push(true);
        return 'substitution';
      } else i++;
    }
    return 'end';
  };

  while (i < text.length) {
    const c = text[i]!;
    const start = i;
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f' || c === '\v' || c === '\ufeff') {
      i++;
    } else if (c === '/' && text[i + 1] === '/') {
      const end = text.indexOf('\n', i);
      i = end === -1 ? text.length : end;
    } else if (c === '/' && text[i + 1] === '*') {
      const end = text.indexOf('*/', i + 2);
      i = end === -1 ? text.length : end + 2;
    } else if (c === '"' || c === "'") {
      let value = '';
      i++;
      while (i < text.length && text[i] !== c && text[i] !== '\n') {
        if (text[i] === '\\') {
          value += text[i + 1] ?? '';
          i += 2;
        } else value += text[i++];
      }
      i++;
      tokens.push({ kind: 'string', value, offset: start });
    } else if (c === '`') {
      i++;
      const bodyStart = i;
      const ended = templateRest();
      // A template without substitutions is as static as a quoted string.
      if (ended === 'end') tokens.push({ kind: 'string', value: text.slice(bodyStart, i - 1), offset: start });
      else tokens.push({ kind: 'template', value: '', offset: start });
    } else if (c === '}' && braces[braces.length - 1] === true) {
      braces.pop();
      i++;
      // Back in the template's text; once it ends, the template is one value (for the `/` test).
      if (templateRest() === 'end') tokens.push({ kind: 'template', value: '', offset: start });
    } else if (IDENT_START.test(c)) {
      i++;
      while (i < text.length && IDENT_PART.test(text[i]!)) i++;
      tokens.push({ kind: 'name', value: text.slice(start, i), offset: start });
    } else if (c >= '0' && c <= '9') {
      i++;
      while (i < text.length && /[\w.]/.test(text[i]!)) i++;
      tokens.push({ kind: 'number', value: text.slice(start, i), offset: start });
    } else if (c === '/' && regexAllowed()) {
      i++;
      let inClass = false;
      while (i < text.length && text[i] !== '\n') {
        const r = text[i]!;
        if (r === '\\') i++;
        else if (r === '[') inClass = true;
        else if (r === ']') inClass = false;
        else if (r === '/' && !inClass) break;
        i++;
      }
      i++;
      while (i < text.length && IDENT_PART.test(text[i]!)) i++;
      tokens.push({ kind: 'regex', value: '', offset: start });
    } else {
      if (c === '{') braces.push(false);
      else if (c === '}') braces.pop();
      i++;
      tokens.push({ kind: 'punct', value: c, offset: start });
    }
  }
  return tokens;
}

function lineStarts(text: string): number[] {
  const starts = [0];
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) starts.push(i + 1);
  return starts;
}

function lineOf(starts: readonly number[], offset: number): number {
  let lo = 0;
  let hi = starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (starts[mid]! <= offset) lo = mid;
    else hi = mid - 1;
  }
  return lo + 1;
}

const isPunct = (token: Token | undefined, value: string): boolean =>
  token !== undefined && token.kind === 'punct' && token.value === value;

/**
 * Returns the module specifiers of every `import … from`, side-effect `import '…'`,
 * `export … from`, and `import('…')` with a literal argument in `text`, with the line of each
 * `import`/`export` keyword.
 */
export function findImports(text: string): ImportRef[] {
  const tokens = tokenize(text);
  const starts = lineStarts(text);
  const found: ImportRef[] = [];
  const add = (keyword: Token, specifier: Token): void => {
    found.push({ specifier: specifier.value, line: lineOf(starts, keyword.offset) });
  };

  for (let k = 0; k < tokens.length; k++) {
    const keyword = tokens[k]!;
    if (keyword.kind !== 'name' || (keyword.value !== 'import' && keyword.value !== 'export')) continue;
    if (isPunct(tokens[k - 1], '.')) continue; // a property such as `loader.import(…)`
    let j = k + 1;
    const next = tokens[j];
    if (next === undefined) break;
    if (keyword.value === 'import') {
      if (isPunct(next, '(')) {
        const argument = tokens[j + 1];
        if (argument?.kind === 'string') add(keyword, argument);
        continue;
      }
      if (next.kind === 'string') {
        add(keyword, next);
        continue;
      }
      if (isPunct(next, '.')) continue; // import.meta
    } else {
      // Only `export {…} from`, `export * from` and their `export type` forms name a module.
      if (next.kind === 'name' && next.value === 'type') j++;
      if (!isPunct(tokens[j], '{') && !isPunct(tokens[j], '*')) continue;
    }
    // The import clause holds names, `type`, `as`, `*`, commas, braces (and quoted export names
    // inside the braces); it ends at `from '…'`.
    let inBraces = false;
    for (; j < tokens.length; j++) {
      const token = tokens[j]!;
      if (token.kind === 'name') {
        const after = tokens[j + 1];
        if (token.value === 'from' && !inBraces && after?.kind === 'string') {
          add(keyword, after);
          break;
        }
      } else if (isPunct(token, '{')) inBraces = true;
      else if (isPunct(token, '}')) inBraces = false;
      else if (!(isPunct(token, ',') || isPunct(token, '*') || (inBraces && token.kind === 'string'))) break;
    }
  }
  return found;
}

// ---------------------------------------------------------------------------------------------
// Resolving and placing files

const SOURCE_FILE = /\.(?:ts|tsx|mts|cts)$/;
const EXAMPLE_FILE = /\.(?:ts|tsx|mts|cts|js|jsx|mjs|cjs)$/;

/** Files under `dir` whose names match `pattern`, sorted; skips `node_modules` and dot folders. */
function walk(dir: string, pattern: RegExp, out: string[] = []): string[] {
  if (!fs.existsSync(dir)) return out;
  const entries = fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1));
  for (const entry of entries) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== 'node_modules' && !entry.name.startsWith('.')) walk(full, pattern, out);
    } else if (pattern.test(entry.name)) out.push(full);
  }
  return out;
}

const isRelative = (specifier: string): boolean =>
  specifier === '.' || specifier === '..' || specifier.startsWith('./') || specifier.startsWith('../');

/** The TypeScript sources a relative specifier may name, most likely first. */
function candidates(target: string): string[] {
  const list: string[] = [];
  const swapped: Record<string, string[]> = {
    '.js': ['.ts', '.tsx', '.d.ts'],
    '.jsx': ['.tsx'],
    '.mjs': ['.mts', '.d.mts'],
    '.cjs': ['.cts', '.d.cts'],
  };
  const ext = path.extname(target);
  for (const replacement of swapped[ext] ?? []) list.push(target.slice(0, -ext.length) + replacement);
  list.push(target);
  return list;
}

function isFile(file: string): boolean {
  try {
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** The file a relative specifier in `from` names, or undefined when none exists. */
function resolveImport(from: string, specifier: string): string | undefined {
  return candidates(path.resolve(path.dirname(from), specifier)).find(isFile);
}

/** Where a file sits: the public entry, a shared file directly in src/, a layer, or elsewhere. */
type Place =
  | { readonly kind: 'entry' }
  | { readonly kind: 'shared' }
  | { readonly kind: 'layer'; readonly name: string; readonly rank: number }
  | { readonly kind: 'other'; readonly folder: string };

function placeOf(src: string, file: string): Place {
  const parts = path.relative(src, file).split(path.sep);
  if (parts.length === 1) return parts[0] === 'index.ts' ? { kind: 'entry' } : { kind: 'shared' };
  const rank = (LAYERS as readonly string[]).indexOf(parts[0]!);
  return rank === -1 ? { kind: 'other', folder: parts[0]! } : { kind: 'layer', name: parts[0]!, rank };
}

const describe = (place: Place): string =>
  place.kind === 'layer' ? place.name : place.kind === 'entry' ? 'the public entry' : 'a shared file';

// ---------------------------------------------------------------------------------------------
// Cycles

interface Edge {
  readonly from: string;
  readonly to: string;
  readonly line: number;
  readonly specifier: string;
}

/** Strongly connected components of the import graph (Tarjan), in a stable order. */
function components(files: readonly string[], graph: ReadonlyMap<string, readonly Edge[]>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const result: string[][] = [];
  let counter = 0;
  const connect = (file: string): void => {
    index.set(file, counter);
    low.set(file, counter);
    counter++;
    stack.push(file);
    onStack.add(file);
    for (const { to } of graph.get(file) ?? []) {
      if (!index.has(to)) {
        connect(to);
        low.set(file, Math.min(low.get(file)!, low.get(to)!));
      } else if (onStack.has(to)) low.set(file, Math.min(low.get(file)!, index.get(to)!));
    }
    if (low.get(file) === index.get(file)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== file);
      result.push(component.sort());
    }
  };
  for (const file of files) if (!index.has(file)) connect(file);
  return result.sort((a, b) => (a[0]! < b[0]! ? -1 : 1));
}

/** The shortest chain of imports from `start` back to itself inside `members` (breadth first). */
function shortestCycle(start: string, members: ReadonlySet<string>, graph: ReadonlyMap<string, readonly Edge[]>): Edge[] {
  const via = new Map<string, Edge>();
  let frontier = [start];
  while (frontier.length > 0) {
    const nextFrontier: string[] = [];
    for (const file of frontier) {
      for (const edge of graph.get(file) ?? []) {
        if (!members.has(edge.to)) continue;
        if (edge.to === start) {
          const chain = [edge];
          for (let at = file; at !== start; at = via.get(at)!.from) chain.unshift(via.get(at)!);
          return chain;
        }
        if (!via.has(edge.to)) {
          via.set(edge.to, edge);
          nextFrontier.push(edge.to);
        }
      }
    }
    frontier = nextFrontier;
  }
  return [];
}

// ---------------------------------------------------------------------------------------------
// The check

/** Checks the tree at `root` (the folder holding `src/` and `examples/`). */
export function checkLayers(root: string): LayerReport {
  const src = path.join(root, 'src');
  const files = walk(src, SOURCE_FILE);
  const violations: Violation[] = [];
  const rel = (file: string): string => path.relative(root, file).split(path.sep).join('/');
  const report = (rule: Rule, file: string, ref: ImportRef, problem: string): void => {
    const message = `${rel(file)}:${ref.line}: import '${ref.specifier}': ${problem}`;
    violations.push({ rule, file: rel(file), line: ref.line, specifier: ref.specifier, message });
  };

  const graph = new Map<string, Edge[]>();
  for (const file of files) {
    const from = placeOf(src, file);
    if (from.kind === 'other') {
      const message = `${rel(file)}:1: src/${from.folder}/ is not a layer; files in src/ live directly in it or in ${LAYERS.map((l) => `src/${l}/`).join(', ')}`;
      violations.push({ rule: 'outside-layers', file: rel(file), line: 1, specifier: '', message });
    }
    const edges: Edge[] = [];
    for (const ref of findImports(fs.readFileSync(file, 'utf8'))) {
      if (!isRelative(ref.specifier)) continue; // packages and node: builtins
      const target = resolveImport(file, ref.specifier);
      if (target === undefined) {
        report('unresolved-import', file, ref, 'names no file, so its layer cannot be checked');
        continue;
      }
      if (!target.startsWith(src + path.sep)) {
        report('outside-src', file, ref, `reaches ${rel(target)}, outside src/ (only src/ is published)`);
        continue;
      }
      if (!edges.some((edge) => edge.to === target)) edges.push({ from: file, to: target, ...ref });
      const to = placeOf(src, target);
      if (to.kind === 'entry') {
        report('imports-entry', file, ref, 'nothing inside src/ may import the public entry src/index.ts; import the module that defines the name');
      } else if (from.kind === 'shared' && to.kind === 'layer') {
        report('shared-imports-layer', file, ref, `shared files directly in src/ may be imported by every layer but must not import a layer (this one imports ${to.name})`);
      } else if (from.kind === 'entry' && to.kind === 'layer' && !ENTRY_MAY_IMPORT.includes(to.name)) {
        report('entry-imports-layer', file, ref, `the public entry may import only ${ENTRY_MAY_IMPORT.join(' and ')}, not ${to.name}`);
      } else if (from.kind === 'layer' && to.kind === 'layer' && to.rank > from.rank) {
        report('upward-import', file, ref, `${describe(from)} may not import ${to.name}; imports point down the layers ${LAYERS.join(' < ')}`);
      }
    }
    graph.set(file, edges);
  }

  for (const component of components(files, graph)) {
    const start = component[0]!;
    const selfImport = (graph.get(start) ?? []).find((edge) => edge.to === start);
    if (component.length === 1 && selfImport === undefined) continue;
    const cycle = selfImport === undefined ? shortestCycle(start, new Set(component), graph) : [selfImport];
    const first = cycle[0]!;
    const chain = [...cycle.map((edge) => rel(edge.from)), rel(start)].join(' → ');
    const more = component.length > cycle.length ? ` (${component.length} files import each other in a loop: ${component.map(rel).join(', ')})` : '';
    report('import-cycle', first.from, first, `starts an import cycle ${chain}; src/ has no import cycles${more}`);
  }

  for (const file of walk(path.join(root, 'examples'), EXAMPLE_FILE)) {
    for (const ref of findImports(fs.readFileSync(file, 'utf8'))) {
      if (!isRelative(ref.specifier)) continue;
      const target = path.resolve(path.dirname(file), ref.specifier);
      if (target === src || target.startsWith(src + path.sep)) {
        report('example-imports-src', file, ref, "examples import the package by name ('noatun'), never ../src");
      }
    }
  }

  return { files: files.length, violations };
}

function main(): void {
  const root = path.resolve(process.argv[2] ?? path.join(import.meta.dirname, '..'));
  if (!fs.existsSync(path.join(root, 'src'))) {
    console.error(`check-layers: no src/ folder in ${root}`);
    process.exitCode = 1;
    return;
  }
  const { files, violations } = checkLayers(root);
  for (const violation of violations) console.error(violation.message);
  if (violations.length > 0) {
    console.error(`check-layers: ${violations.length} violation${violations.length === 1 ? '' : 's'} in ${files} files`);
    process.exitCode = 1;
  } else console.log(`layers ok (${files} files)`);
}

/** True when this file is the program node was started with, not a module imported by a test. */
function isMain(): boolean {
  const invoked = process.argv[1];
  if (invoked === undefined) return false;
  try {
    return fs.realpathSync(path.resolve(invoked)) === fs.realpathSync(import.meta.filename);
  } catch {
    return false;
  }
}

if (isMain()) main();
