/**
 * Finding an application for the `noatun` command: loading the module the user names, and
 * remembering it in the database directory (`app.json`) so that `noatun inspect <dir>` knows what
 * schema and codec the directory's events were written with.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { type AnyApp, isApp } from '../core/app.js';
import { ErrorCode, NoatunError } from '../errors.js';

/** The file in a database directory that names its app module. */
export const APP_RECORD = 'app.json';

/** What {@link APP_RECORD} holds. */
export interface AppRecord {
  /** The app's name (as `defineApp` was given it). */
  readonly name: string;
  /** The module, relative to the database directory (so the pair can move together), with `/`. */
  readonly module: string;
}

/**
 * What to do about an import error that comes from Node's own handling of TypeScript (the command
 * runs on plain Node, which loads a `.ts` module only by stripping its types, and only where and
 * as far as it can), or '' for any other error.
 */
export function typeScriptHint(file: string, error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ERR_UNKNOWN_FILE_EXTENSION' && /\.[mc]?ts$/.test(file)) {
    return ' (this Node does not strip types: Node 22.6 to 22.17 do with NODE_OPTIONS=--experimental-strip-types, 22.18 and later by default; or write the app module in JavaScript)';
  }
  if (code === 'ERR_UNSUPPORTED_NODE_MODULES_TYPE_STRIPPING') {
    return ' (Node does not strip types from files under node_modules: use a copy outside it, or a .js module)';
  }
  if (code === 'ERR_UNSUPPORTED_TYPESCRIPT_SYNTAX') {
    return ' (Node only strips types: enums, namespaces and parameter properties need a compiled .js module)';
  }
  // A module imported as `./x.js` that exists as `./x.ts`: the compiler's convention, which Node's
  // type stripping does not follow.
  const missing = /Cannot find module '([^']+)\.js'/.exec(String((error as Error | undefined)?.message ?? ''));
  if (code === 'ERR_MODULE_NOT_FOUND' && missing !== null && fs.existsSync(`${missing[1]}.ts`)) {
    return ` (${missing[1]}.ts exists: where Node strips types, a TypeScript module imports another by its .ts name, so write './${path.basename(missing[1]!)}.ts')`;
  }
  return '';
}

/**
 * Imports the module at `file` (relative to the working directory) and returns the app it exports
 * as `app` or as its default export. JavaScript modules always load; a TypeScript module loads
 * where Node strips types itself (see the README's notes on the `noatun` command).
 *
 * Throws `NOT_FOUND` when there is no such file and `APP_INVALID` when the module exports no app
 * (naming what it does export, which is usually enough to see the mistake) or fails to load.
 */
export async function loadApp(file: string): Promise<AnyApp> {
  // (An empty name resolves to the working directory: "is a directory" would puzzle.)
  if (file.trim() === '') throw new NoatunError(ErrorCode.INVALID_ARGUMENT, '--app must name an app module file, got an empty name');
  const absolute = path.resolve(file);
  if (!fs.existsSync(absolute)) throw new NoatunError(ErrorCode.NOT_FOUND, `no app module at ${file}`);
  if (!fs.statSync(absolute).isFile()) throw new NoatunError(ErrorCode.NOT_FOUND, `${file} is a directory, not an app module`);
  let exports: Record<string, unknown>;
  try {
    exports = (await import(pathToFileURL(absolute).href)) as Record<string, unknown>;
  } catch (error) {
    const reason = `${(error as Error)?.message ?? String(error)}${typeScriptHint(file, error)}`;
    throw new NoatunError(ErrorCode.APP_INVALID, `${file} failed to load: ${reason}`, { cause: error });
  }
  for (const candidate of [exports.app, exports.default]) if (isApp(candidate)) return candidate;
  const names = Object.keys(exports).filter((name) => name !== '__esModule');
  throw new NoatunError(
    ErrorCode.APP_INVALID,
    `${file} exports no app: it should export \`const app = defineApp({ name, root, apply })\`` +
      ` (${names.length === 0 ? 'it exports nothing' : `it exports ${names.join(', ')}, none of them made by defineApp`})`,
  );
}

/**
 * The name of the app recorded in `directory` (what the last `noatun peer` on it ran), or
 * undefined when the directory has no record or it names none.
 */
export function recordedAppName(directory: string): string | undefined {
  try {
    const record = JSON.parse(fs.readFileSync(path.join(directory, APP_RECORD), 'utf8')) as Partial<AppRecord>;
    return typeof record?.name === 'string' ? record.name : undefined;
  } catch {
    return undefined;
  }
}

/** Writes {@link APP_RECORD} in `directory` for the app loaded from `moduleFile`. */
export function writeAppRecord(directory: string, moduleFile: string, app: AnyApp): void {
  const module = path.relative(path.resolve(directory), path.resolve(moduleFile)).split(path.sep).join('/');
  const record: AppRecord = { name: app.name, module };
  const file = path.join(directory, APP_RECORD);
  const temporary = `${file}.tmp`;
  fs.writeFileSync(temporary, `${JSON.stringify(record, null, 2)}\n`);
  fs.renameSync(temporary, file); // never a half-written record
}

/**
 * The app module recorded in `directory`, as a path usable from the working directory, or
 * undefined when the directory has no record. A malformed record is `APP_INVALID`.
 */
export function recordedAppModule(directory: string): string | undefined {
  const file = path.join(directory, APP_RECORD);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  let record: Partial<AppRecord>;
  try {
    record = JSON.parse(text) as Partial<AppRecord>;
  } catch {
    throw new NoatunError(ErrorCode.APP_INVALID, `${file} is not JSON; pass --app <module>`);
  }
  if (typeof record?.module !== 'string' || record.module === '') {
    throw new NoatunError(ErrorCode.APP_INVALID, `${file} names no module; pass --app <module>`);
  }
  return path.resolve(directory, record.module);
}
