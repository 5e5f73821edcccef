/**
 * `noatun inspect <dir>`: what a database directory holds, as text (events, heads, cutoff,
 * pruning counts, the view with the event that wrote each field, and `explain` for one event) or
 * as the inspector page in a browser (`--web`).
 *
 * It opens the database like any program would, so it needs the app (its schema and codec): from
 * `--app`, or from the `app.json` that `noatun peer` leaves in the directory. A database that a
 * running peer holds is locked; `noatun peer --inspect <port>` shows a live one instead.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Codec, messagePackCodec } from '../core/codec.js';
import { Database } from '../core/database.js';
import { type Explanation, INSPECTING } from '../core/database-contract.js';
import { MessageId } from '../core/message-id.js';
import { ErrorCode, NoatunError, quote, systemErrorFrom } from '../errors.js';
import type { ViewNode } from '../view/inspect.js';
import { loadApp, recordedAppModule, recordedAppName } from './app-module.js';
import { checkInspectorHost, startInspector } from './inspector/server.js';
import { openingProgress } from './progress.js';
import { type StopSignal, stopSignal } from './signals.js';

/** The options of `noatun inspect`. */
export interface InspectCommandOptions {
  /** The app module; default: the one recorded in the directory. */
  readonly app?: string;
  /** How many of the newest events to list. @default 20 */
  readonly events: number;
  /** Explain why this event (32 hex digits) is kept, what it wrote and read. */
  readonly explain?: string;
  /** Print the view as a tree, each value with the event that wrote it. */
  readonly view: boolean;
  /** Serve the inspector page instead of printing. */
  readonly web: boolean;
  /** The page's port (0: any free one). */
  readonly port: number;
  /** The page's interface. @default '127.0.0.1' */
  readonly host: string;
}

/** Entries shown per map or list by `--view`. */
const VIEW_ENTRIES = 50;

/** A timestamp as the reader's eyes want it: ISO 8601 in UTC, to the millisecond. */
function iso(ms: number): string {
  return Number.isFinite(ms) && ms > 0 ? new Date(ms).toISOString() : '-';
}

function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** An event's payload as one line of JSON (bigints as strings, bytes as hex), cut at 120 characters. */
function summary(codec: Codec<unknown>, payload: Uint8Array): string {
  let text: string;
  try {
    text =
      JSON.stringify(codec.decode(payload), (_key, value: unknown) => {
        if (typeof value === 'bigint') return value.toString();
        if (value instanceof Uint8Array) return Buffer.from(value).toString('hex');
        return value;
      }) ?? 'undefined';
  } catch (error) {
    text = `<${payload.length} bytes that do not decode: ${(error as Error).message}>`;
  }
  return text.length > 120 ? `${text.slice(0, 119)}…` : text;
}

/** The app module for `directory`: the option, else the recorded one, else `APP_INVALID` saying what to do. */
function appModuleFor(directory: string, option: string | undefined): string {
  if (option !== undefined) return option;
  const recorded = recordedAppModule(directory);
  if (recorded === undefined) {
    throw new NoatunError(ErrorCode.APP_INVALID, `${directory} does not say which app wrote it (no app.json): pass --app <module>`);
  }
  return recorded;
}

/** Prints what `directory` holds (or serves the page) per `options`. */
export async function runInspect(directory: string, options: InspectCommandOptions, out: NodeJS.WritableStream = process.stdout): Promise<void> {
  const say = (line = '') => out.write(`${line}\n`);
  const stop = stopSignal();
  try {
    await inspect(directory, options, say, stop);
  } finally {
    stop.dispose();
  }
}

/** {@link runInspect} once the stop signals are caught. */
async function inspect(directory: string, options: InspectCommandOptions, say: (line?: string) => void, stop: StopSignal): Promise<void> {
  // Never create a database where the user mistyped a path: Database.open would (and LMDB makes
  // an empty log.mdb a new database).
  let logStat: fs.Stats;
  try {
    logStat = fs.statSync(path.join(directory, 'log.mdb'));
  } catch (error) {
    // (A directory this user may not read said "holds no Noatun database".)
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR' && code !== 'ENAMETOOLONG') throw systemErrorFrom(error, 'stat', path.join(directory, 'log.mdb'));
    // (A plain file was said to hold "no Noatun database (no log.mdb)", as if it were a directory.)
    if (code === 'ENOTDIR' && fs.statSync(directory, { throwIfNoEntry: false })?.isDirectory() === false) {
      throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `${directory} is a file, not a database directory`);
    }
    throw new NoatunError(
      ErrorCode.NOT_FOUND,
      fs.existsSync(directory) ? `${directory} holds no Noatun database (no log.mdb)` : `no such directory: ${directory}`,
    );
  }
  if (logStat.size === 0) {
    throw new NoatunError(ErrorCode.NOT_FOUND, `${directory} holds no Noatun database (its log.mdb is empty)`);
  }
  // (Refused before the database is opened; the inspector checks it again.)
  if (options.web) checkInspectorHost(options.host);
  let explainId: MessageId | undefined;
  if (options.explain !== undefined) {
    try {
      // (Ids are printed in lowercase; one typed or copied in uppercase is the same id.)
      explainId = MessageId.parse(options.explain.toLowerCase());
    } catch {
      throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `--explain wants an event id of 32 hex digits, not ${quote(options.explain)}`);
    }
  }
  const app = await loadApp(appModuleFor(directory, options.app));
  // Inspecting must change nothing: with another app's schema, the open would rebuild the view.
  const recordedName = recordedAppName(directory);
  if (options.app !== undefined && recordedName !== undefined && recordedName !== app.name) {
    throw new NoatunError(
      ErrorCode.APP_INVALID,
      `${directory} was written by the app ${JSON.stringify(recordedName)}, and ${options.app} is the app ${JSON.stringify(app.name)}: pass the module of ${JSON.stringify(recordedName)}, or leave --app out to use the one recorded`,
    );
  }
  const codec = (app.codec ?? messagePackCodec<unknown>()) as Codec<unknown>;
  const opening = openingProgress();
  // Inspecting changes nothing: nothing is pruned, no app name is recorded, and a view that
  // would have to be made again is refused unless the database records this app (INSPECTING).
  const inspectOptions = { ...app, path: directory, onProgress: opening.onProgress, autoPrune: false, [INSPECTING]: true };
  const db = await Database.open(inspectOptions).catch((error: unknown) => {
    if (error instanceof NoatunError && error.code === ErrorCode.DATABASE_LOCKED) {
      throw new NoatunError(
        error.code,
        `${error.message}: a peer or another inspect has it open; stop it first (a peer started with --inspect <port> shows it live)`,
      );
    }
    throw error;
  });
  opening.stop();

  try {
    if (options.web) {
      const inspector = await startInspector({ db, port: options.port, host: options.host, codec });
      say(`inspector for ${directory} (app ${app.name}) on ${inspector.url}`);
      say('stop with Ctrl-C');
      await stop.stopped;
      await inspector.close();
      return;
    }
    if (explainId !== undefined) {
      printExplanation(say, db.explain(explainId), db.message(explainId), codec);
      return;
    }
    printSummary(say, directory, app.name, db, codec, options.events);
    if (options.view) {
      say();
      say('view (each value with the event that wrote it):');
      printNode(say, db.inspectView({ maxEntries: VIEW_ENTRIES }), '  ', 'root');
    }
  } finally {
    await db.close();
  }
}

// biome-ignore lint/suspicious/noExplicitAny: inspect shows databases of every app
type AnyDatabase = Database<any, any>;

function printSummary(say: (line?: string) => void, directory: string, appName: string, db: AnyDatabase, codec: Codec<unknown>, count: number): void {
  const stats = db.stats();
  const cutoff = db.cutoffState();
  say(`database ${directory} (app ${appName})`);
  say(`events: ${stats.stored} stored, ${stats.pruned} pruned, ${stats.failedApplies} failed applies, ${stats.parked} waiting for parents`);
  say(`cutoff: ${iso(cutoff.time)} (events before it are final)`);
  say(`files: view ${bytes(stats.viewBytes)}, undo journal ${bytes(stats.undoBytes)}, log ${bytes(stats.logBytes)}; opened by ${stats.openedBy}`);
  const heads = db.heads();
  say(`heads: ${heads.length}`);
  for (const head of heads) say(`  ${head.toString()}  ${iso(head.timestamp)}`);
  const failures = new Map(db.failures().map((failure) => [failure.id.toString(), failure.error]));
  // The newest `count` events: walk the ids (cheap) to where they start, then read those.
  const total = stats.stored;
  const skip = Math.max(0, total - count);
  say(`${count >= total ? 'all' : `last ${count} of`} ${total} events (oldest first):`);
  let index = 0;
  let after: MessageId | undefined;
  if (skip > 0) {
    for (const id of db.ids()) {
      if (++index === skip) {
        after = MessageId.fromBytes(id);
        break;
      }
    }
  }
  for (const message of db.messages(after === undefined ? {} : { after })) {
    const id = message.id.toString();
    const failed = failures.get(id);
    say(`  ${id}  ${iso(message.id.timestamp)}  parents ${message.parents.length}  ${summary(codec, message.payload)}${failed === undefined ? '' : `  [apply failed: ${failed}]`}`);
  }
}

function printExplanation(
  say: (line?: string) => void,
  explanation: Explanation,
  message: { readonly payload: Uint8Array; readonly parents: readonly MessageId[] } | undefined,
  codec: Codec<unknown>,
): void {
  const ids = (list: readonly MessageId[]) => (list.length === 0 ? 'none' : list.map((id) => id.toString()).join(', '));
  say(`event ${explanation.id.toString()}  ${iso(explanation.id.timestamp)}`);
  if (!explanation.stored) {
    say('  not stored here (never seen, or pruned)');
    return;
  }
  if (message !== undefined) {
    say(`  payload: ${summary(codec, message.payload)}`);
    say(`  parents: ${ids(message.parents)}`);
  }
  say(`  apply ${explanation.failed ? 'FAILED (its writes were rolled back)' : 'succeeded'}`);
  say(`  owns ${explanation.owns} value(s) in the view${explanation.tombstone ? '; a tombstone (it deleted data)' : ''}`);
  if (explanation.deletedDataOf.length > 0) say(`  deleted data of: ${ids(explanation.deletedDataOf)}`);
  say(`  read values written by: ${ids(explanation.read)}`);
  say(`  its values were read by: ${ids(explanation.readBy)}`);
  say(`  overwritten at: ${explanation.overwrittenAt === null ? 'not (yet)' : iso(explanation.overwrittenAt)}; cutoff ${iso(explanation.cutoffTime)}`);
  // (Inspecting prunes nothing itself, and leaves that out of the reasons: the database's own
  // program prunes, unless it turned autoPrune off.)
  say(`  kept because: ${explanation.keptBecause.length === 0 ? 'nothing: it will be pruned (where autoPrune is on, the default)' : explanation.keptBecause.join('; ')}`);
}

/** Prints one node of the view tree, indented, each value with its writer. */
function printNode(say: (line?: string) => void, node: ViewNode, indent: string, label: string): void {
  const by = (writer: string | null) => (writer === null ? '' : `  ← ${writer}`);
  switch (node.kind) {
    case 'leaf':
      say(`${indent}${label}: ${JSON.stringify(node.value)}${node.type === 'time' && typeof node.value === 'number' ? ` (${iso(node.value)})` : ''}${by(node.writer)}`);
      return;
    case 'object':
      say(`${indent}${label}:`);
      for (const field of node.fields) printNode(say, field.node, `${indent}  `, field.name);
      return;
    case 'optional':
      if (node.value === null) say(`${indent}${label}: null${by(node.writer)}`);
      else printNode(say, node.value, indent, `${label}?`);
      return;
    case 'map':
      say(`${indent}${label}: map of ${node.size}${by(node.writer)}`);
      for (const entry of node.entries) printNode(say, entry.value, `${indent}  `, `[${JSON.stringify(entry.key)}]`);
      if (node.truncated > 0) say(`${indent}  … ${node.truncated} more`);
      return;
    case 'list':
    case 'opaqueList':
      say(`${indent}${label}: ${node.kind === 'list' ? 'list' : 'opaque list'} of ${node.length}${by(node.writer)}`);
      for (const [i, item] of node.items.entries()) printNode(say, item, `${indent}  `, `[${i}]`);
      if (node.truncated > 0) say(`${indent}  … ${node.truncated} more`);
      return;
  }
}
