/**
 * Test helper: a program run as a child process whose output lines the test waits on (never on
 * sleeps), killed at the end of the test if it is still running.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { fileURLToPath } from 'node:url';

/** The repository's root: children run from there, as a user following the README would. */
export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

interface Waiter {
  readonly pattern: RegExp;
  readonly resolve: (match: RegExpMatchArray) => void;
}

/** A running child process and the lines it has printed so far. */
export class Child {
  readonly process: ChildProcess;
  /** Lines of stdout and stderr as they came, stderr lines prefixed with `! `. */
  readonly lines: string[] = [];
  readonly #waiters = new Set<Waiter>();
  readonly #exited: Promise<number | null>;
  #exitCode: number | null | undefined;

  /** Runs `node <args>` (the Node running the tests) in the repository root. */
  constructor(args: readonly string[], options: { readonly input?: string; readonly env?: NodeJS.ProcessEnv } = {}) {
    this.process = spawn(process.execPath, args, {
      cwd: REPO,
      env: { ...process.env, FORCE_COLOR: '0', NO_COLOR: '1', ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.#exited = new Promise((resolve) => {
      // 'close' (stdio done), not 'exit': 'exit' can come before the last output is read.
      this.process.once('close', (code, signal) => {
        this.#exitCode = code ?? (signal === null ? null : 128);
        resolve(this.#exitCode);
      });
    });
    readline.createInterface({ input: this.process.stdout! }).on('line', (line) => this.#add(line));
    readline.createInterface({ input: this.process.stderr! }).on('line', (line) => this.#add(`! ${line}`));
    if (options.input !== undefined) this.process.stdin!.end(options.input);
  }

  #add(line: string): void {
    this.lines.push(line);
    for (const waiter of this.#waiters) {
      const match = line.match(waiter.pattern);
      if (match !== null) {
        this.#waiters.delete(waiter);
        waiter.resolve(match);
      }
    }
  }

  /** Everything printed so far, one string. */
  get output(): string {
    return this.lines.join('\n');
  }

  /**
   * The first line (printed so far or later) that matches `pattern`; rejects after `timeoutMs`
   * or when the process exits without printing one, showing what it did print.
   */
  waitFor(pattern: RegExp, timeoutMs = 60_000): Promise<RegExpMatchArray> {
    for (const line of this.lines) {
      const match = line.match(pattern);
      if (match !== null) return Promise.resolve(match);
    }
    return new Promise((resolve, reject) => {
      const fail = (why: string) => {
        this.#waiters.delete(waiter);
        clearTimeout(timer);
        reject(new Error(`${why} waiting for ${pattern}; output so far:\n${this.output}`));
      };
      const waiter: Waiter = {
        pattern,
        resolve: (match) => {
          clearTimeout(timer);
          resolve(match);
        },
      };
      const timer = setTimeout(() => fail(`timed out after ${timeoutMs} ms`), timeoutMs);
      this.#waiters.add(waiter);
      void this.#exited.then(() => {
        // Let the last lines through readline first.
        setTimeout(() => {
          if (this.#waiters.has(waiter)) fail(`the process exited (${this.#exitCode})`);
        }, 100);
      });
    });
  }

  /** Writes a line to the child's stdin. */
  send(line: string): void {
    this.process.stdin!.write(`${line}\n`);
  }

  /** The exit status once it exits (128 when killed by a signal). */
  exited(): Promise<number | null> {
    return this.#exited;
  }

  /** Sends `signal` (SIGTERM: a graceful stop) and resolves with the exit status. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.#exitCode === undefined) this.process.kill(signal);
    return this.#exited;
  }
}

/** Children started by {@link run}, killed by {@link killAll}. */
const running = new Set<Child>();

/** Starts a child (see {@link Child}) that {@link killAll} will kill. */
export function run(args: readonly string[], options?: { readonly input?: string; readonly env?: NodeJS.ProcessEnv }): Child {
  const child = new Child(args, options);
  running.add(child);
  void child.exited().then(() => running.delete(child));
  return child;
}

/** Kills every child still running (for `test.after.always`). */
export function killAll(): void {
  for (const child of running) child.process.kill('SIGKILL');
  running.clear();
}
