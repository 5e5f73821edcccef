/**
 * The `noatun` command line: `noatun peer` runs a peer of an app, `noatun inspect` shows what a
 * database directory holds. `bin/noatun.js` starts it.
 *
 * Exit status: 0 when the command did its work, 2 for a usage error or a `NoatunError` (a wrong
 * path, a module without an app, a busy port, a bad key, a locked database: the message says
 * which and its code is printed in brackets, e.g. `[NOT_FOUND]`), 1 for anything unexpected.
 */
import * as fs from 'node:fs';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { ErrorCode, NoatunError } from '../errors.js';
import { runInspect } from './inspect.js';
import { runPeer } from './peer.js';

/** Exit status of usage errors and of refused input (see the module comment). */
export const EXIT_USAGE = 2;

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function port(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > 65535) throw new InvalidArgumentError('a TCP port is a number from 0 to 65535.');
  return n;
}

function positive(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1) throw new InvalidArgumentError('expected a whole number of at least 1.');
  return n;
}

function version(): string {
  const text = fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8');
  return (JSON.parse(text) as { version: string }).version;
}

/** The command tree. Actions reject with `NoatunError`s; {@link main} turns them into exit statuses. */
export function program(): Command {
  const root = new Command('noatun')
    .description('Noatun: an embedded, event-sourced database that replicates peer to peer')
    .version(version())
    // A mistake on the command line is one line with its code, like every other (subcommands
    // inherit this): `noatun: error: required option '--db <dir>' not specified (add --help for
    // usage) [INVALID_ARGUMENT]`.
    .configureOutput({
      outputError: (text, write) => write(`noatun: ${shortWords(text.trim())} (add --help for usage) [${ErrorCode.INVALID_ARGUMENT}]\n`),
    })
    .exitOverride();

  root
    .command('peer')
    .description('run a peer of an app: open its database, join the swarm, print what happens until Ctrl-C')
    .requiredOption('--app <module>', 'the app module (exports `app = defineApp({...})`)')
    .requiredOption('--db <dir>', 'the database directory (created if missing)')
    .addOption(
      new Option('--listen <addr>', 'listen on a multiaddr, or on 127.0.0.1 at a port number (repeatable)')
        .argParser(collect)
        .default([], '127.0.0.1, any port'),
    )
    // (A default given to .option() is shown as it is: "(default: [])".)
    .addOption(new Option('--bootstrap <addr>', "a peer's multiaddr to connect to (repeatable)").argParser(collect).default([], 'none'))
    .option('--mdns', 'also discover peers on the LAN by multicast DNS', false)
    .option('--psk-file <file>', 'a private swarm key: only peers with the same key connect')
    .addOption(new Option('--allow <peerId>', 'only this peer may connect (repeatable)').argParser(collect).default([], 'everyone'))
    .option('--topic <name>', "the swarm's name (default: the app's name)")
    .option('--inspect <port>', 'serve the inspector page on this port of 127.0.0.1 (0: any)', port)
    .action(async (options: { app: string; db: string; listen: string[]; bootstrap: string[]; mdns: boolean; pskFile?: string; allow: string[]; topic?: string; inspect?: number }) => {
      await runPeer(options);
    });

  root
    .command('inspect')
    .description('show what a database directory holds: events, heads, cutoff, pruning, the view, why an event is kept')
    .argument('<dir>', 'the database directory')
    .option('--app <module>', 'the app module (default: the one `noatun peer` recorded in the directory)')
    .option('--events <n>', 'how many of the newest events to list', positive, 20)
    .option('--explain <id>', 'explain one event: what it wrote and read, and why it is kept')
    .option('--view', 'print the view, each value with the event that wrote it', false)
    .option('--web', 'serve the inspector page instead of printing (until Ctrl-C)', false)
    .option('--port <port>', 'the page port (0: any free one)', port, 0)
    .option('--host <host>', 'the page interface (anything but loopback exposes the data)', '127.0.0.1')
    .action(async (dir: string, options: { app?: string; events: number; explain?: string; view: boolean; web: boolean; port: number; host: string }) => {
      await runInspect(dir, options);
    });

  return root;
}

const quietStreams = new WeakSet<NodeJS.WritableStream>();

/**
 * Makes a closed pipe on `stream` end the output quietly: `noatun inspect … | head` closes the
 * pipe after ten lines, and Node reports that as an EPIPE error on the stream, which unhandled
 * would crash the command with a stack trace. The rest of the output is dropped (a reader that left
 * wants none of it) and the command finishes normally. Any other error on the stream is thrown as
 * before.
 */
function quietOnClosedPipe(stream: NodeJS.WritableStream): void {
  if (quietStreams.has(stream)) return;
  quietStreams.add(stream);
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
  });
}

/** A word (a run without spaces) of more than 160 characters: an error line shortens it. */
const LONG_WORD = /\S{161,}/g;

/**
 * `message` with each word longer than 160 characters cut to its start and its length: a
 * path or an address of 100 kB (a file's contents pasted in its place) would otherwise fill the
 * terminal and hide what the line says about it.
 */
export function shortWords(message: string): string {
  return message.replace(LONG_WORD, (word) => `${word.slice(0, 120)}…(${word.length} characters)`);
}

/**
 * Runs the command line `argv` (as `process.argv`: node, script, arguments) and resolves with the
 * exit status. Prints errors to stderr as `noatun: error: <message> [<CODE>]`.
 */
export async function main(argv: readonly string[]): Promise<number> {
  quietOnClosedPipe(process.stdout);
  quietOnClosedPipe(process.stderr);
  try {
    await program().parseAsync([...argv]);
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander has printed the message (or the help, or the version) already.
      return error.exitCode === 0 ? 0 : EXIT_USAGE;
    }
    if (error instanceof NoatunError) {
      process.stderr.write(`noatun: error: ${shortWords(error.message)} [${error.code}]\n`);
      return EXIT_USAGE;
    }
    process.stderr.write(`noatun: unexpected failure: ${(error as Error)?.stack ?? String(error)}\n`);
    return 1;
  }
}
