/**
 * The log's writer thread: a worker that holds the same LMDB environment and commits the writes
 * the log has already worked out (puts and removals of whole values) with a synchronous LMDB
 * transaction, durable when it reports back.
 *
 * Why a thread of our own: lmdb-js's own writer thread starts a commit only at the next
 * `setImmediate` turn, and needs this thread while it runs, so a commit never overlapped with
 * the work that followed it. A commit handed here runs while this thread goes on: the database
 * hands a transaction's events over before it applies them (BENCHMARKS.md, run V).
 *
 * The worker is plain JavaScript evaluated from a string (no file to resolve, no TypeScript
 * loader in the worker), and loads the same lmdb-js this module does: lmdb-js shares one LMDB
 * environment between the threads of a process, and LMDB's write lock orders their transactions.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/** The log's LMDB databases a write can address (see {@link WriteOps}). */
export const RUNS = 0;
export const META = 1;
type Target = typeof RUNS | typeof META;

/**
 * The writes of one commit, in order: puts, and removals (a null value), of whole values. Meta
 * values are encoded already: the thread writes bytes.
 */
export class WriteOps {
  readonly #targets: Target[] = [];
  readonly #keys: (Uint8Array | string)[] = [];
  readonly #values: (Uint8Array | null)[] = [];
  #bytes = 0;

  put(target: Target, key: Uint8Array | string, value: Uint8Array): void {
    this.#targets.push(target);
    this.#keys.push(key);
    this.#values.push(value);
    this.#bytes += (typeof key === 'string' ? 0 : key.byteLength) + value.byteLength;
  }

  remove(target: Target, key: Uint8Array | string): void {
    this.#targets.push(target);
    this.#keys.push(key);
    this.#values.push(null);
    if (typeof key !== 'string') this.#bytes += key.byteLength;
  }

  /** Bytes of the binary keys and values (what {@link pack} copies). */
  get byteLength(): number {
    return this.#bytes;
  }

  /**
   * The writes as one message: every binary key and value copied into one buffer (handed over,
   * not cloned: a view posted as it is would clone the whole buffer it is a view of, a batch's or
   * Node's pool), their places in a table of five words per write (target, key start and length
   * or -1 for a string key, value start and length or -1 for a removal). `into`, when given, is
   * the buffer to copy them into (at least {@link byteLength} bytes); else a new one.
   */
  pack<B extends ArrayBufferLike = ArrayBuffer>(
    into?: Uint8Array<B>,
  ): { readonly table: Int32Array<ArrayBuffer>; readonly bytes: Uint8Array<B>; readonly strings: (string | null)[] } {
    const n = this.#targets.length;
    const table = new Int32Array(n * 5);
    const bytes = into ?? (new Uint8Array(this.#bytes) as Uint8Array<B>);
    const strings: (string | null)[] = new Array<string | null>(n).fill(null);
    let at = 0;
    for (let i = 0; i < n; i++) {
      const key = this.#keys[i]!;
      const value = this.#values[i]!;
      table[i * 5] = this.#targets[i]!;
      if (typeof key === 'string') {
        strings[i] = key;
        table[i * 5 + 2] = -1;
      } else {
        bytes.set(key, at);
        table[i * 5 + 1] = at;
        table[i * 5 + 2] = key.byteLength;
        at += key.byteLength;
      }
      if (value === null) table[i * 5 + 4] = -1;
      else {
        bytes.set(value, at);
        table[i * 5 + 3] = at;
        table[i * 5 + 4] = value.byteLength;
        at += value.byteLength;
      }
    }
    return { table, bytes, strings };
  }
}

/** An error the worker met, as it crosses the thread: what the log's failure report reads. */
interface ThreadError {
  readonly message: string;
  readonly code?: unknown;
  readonly errno?: unknown;
}

type FromWorker = { readonly ready: true } | { readonly done: number; readonly error?: ThreadError };

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { open } = require(workerData.lmdb);
let env;
let dbs;
try {
  env = open({ path: workerData.file, compression: false, maxDbs: 8, eventTurnBatching: false });
  dbs = [
    env.openDB({ name: 'runs', encoding: 'binary', keyEncoding: 'binary' }),
    env.openDB({ name: 'meta', encoding: 'binary' }),
  ];
} catch (error) {
  parentPort.postMessage({ failed: String(error && error.message || error) });
  throw error;
}
parentPort.on('message', (message) => {
  if (message === 'close') {
    env.close().then(() => parentPort.close(), () => parentPort.close());
    return;
  }
  const { id, table, bytes, strings } = message;
  // (A shared buffer, when the commit came in the thread's reused one: see LogWriter.commit.)
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  try {
    env.transactionSync(() => {
      for (let i = 0; i < strings.length; i++) {
        const db = dbs[table[i * 5]];
        const key = table[i * 5 + 2] < 0 ? strings[i] : buffer.subarray(table[i * 5 + 1], table[i * 5 + 1] + table[i * 5 + 2]);
        if (table[i * 5 + 4] < 0) db.remove(key);
        else db.put(key, buffer.subarray(table[i * 5 + 3], table[i * 5 + 3] + table[i * 5 + 4]));
      }
    });
    parentPort.postMessage({ done: id });
  } catch (error) {
    parentPort.postMessage({ done: id, error: { message: String(error && error.message || error), code: error && error.code, errno: error && error.errno } });
  }
});
parentPort.postMessage({ ready: true });
`;

/** The shared buffer of a writer thread's commits (see `LogWriter.commit`): its first size. */
const MIN_SHARED_BYTES = 64 * 1024;
/** Larger commits come in a buffer of their own (a huge event would keep its size alive). */
const MAX_SHARED_BYTES = 8 * 2 ** 20;

/** Writer threads running (or starting) in this process (this JavaScript thread's). */
let running = 0;

/** The writer thread of one log file. */
export class LogWriter {
  /** Writer threads running (or starting) in this process: see `EventLog.maxWriterThreads`. */
  static get running(): number {
    return running;
  }

  readonly #worker: Worker;
  readonly #waiting = new Map<number, { resolve: () => void; reject: (error: Error) => void }>();
  /**
   * The buffer a commit's bytes are copied into for the thread, shared with it and used again by
   * the next commit (see {@link commit}). A fresh buffer per commit, handed over, cost this thread
   * a page fault per 4 KiB of it (about 12% of its page faults in the key-value benchmark).
   */
  #shared: Uint8Array<SharedArrayBuffer> | undefined;
  #next = 0;
  #ready = false;
  #closing = false;
  #dead: Error | undefined;
  #started!: () => void;
  /** Settles once the thread takes commits, or has stopped (see {@link ready}). */
  readonly started = new Promise<void>((resolve) => {
    this.#started = resolve;
  });

  /** Starts the thread for the LMDB file `file`; it takes commits once {@link ready}. */
  constructor(file: string) {
    const lmdb = createRequire(import.meta.url).resolve('lmdb');
    // No loader flags of this process: the worker runs plain JavaScript.
    this.#worker = new Worker(WORKER_SOURCE, { eval: true, execArgv: [], workerData: { file, lmdb } });
    running++;
    this.#worker.on('message', (message: FromWorker | { failed: string }) => {
      if ('ready' in message) {
        this.#ready = true;
        this.#started();
        this.#keepAlive();
        return;
      }
      if ('failed' in message) {
        this.#dead = new Error(`the log's writer thread could not open the log: ${message.failed}`);
        this.#started();
        this.#keepAlive();
        return;
      }
      const waiter = this.#waiting.get(message.done);
      if (waiter === undefined) return;
      this.#waiting.delete(message.done);
      this.#keepAlive();
      if (message.error === undefined) waiter.resolve();
      else waiter.reject(Object.assign(new Error(message.error.message), { code: message.error.code, errno: message.error.errno }));
    });
    const fail = (error: Error) => {
      this.#dead ??= error;
      this.#ready = false;
      this.#started();
      for (const waiter of this.#waiting.values()) waiter.reject(error);
      this.#waiting.clear();
    };
    this.#worker.on('error', fail);
    this.#worker.on('exit', () => {
      running--;
      fail(new Error("the log's writer thread stopped"));
    });
    // (The listener above refs the worker: see #keepAlive.)
    this.#keepAlive();
  }

  /**
   * Refs the thread while something waits for it: its start (`started` may be awaited), a commit,
   * or its close; else unrefs it. Left ref'd (a 'message' listener refs a worker), a process that
   * wrote and never closed its database never exited; unref'd at the wrong moment, a process that
   * awaited the close exited before it was done.
   */
  #keepAlive(): void {
    if (this.#closing || this.#waiting.size !== 0 || (!this.#ready && this.#dead === undefined)) this.#worker.ref();
    else this.#worker.unref();
  }

  /** Whether the thread has stopped, or could not start. */
  get stopped(): boolean {
    return this.#dead !== undefined;
  }

  /** Whether the thread takes commits (it has opened the environment and has not stopped). */
  get ready(): boolean {
    return this.#ready && this.#dead === undefined;
  }

  /**
   * Commits `ops` in one LMDB transaction on the thread; resolves once it is durable (LMDB syncs
   * the data, then its meta page), rejects with the system's error when it failed (nothing of it
   * is written then). Keeps the process alive until it settles.
   */
  commit(ops: WriteOps): Promise<void> {
    if (this.#dead !== undefined) return Promise.reject(this.#dead);
    const id = this.#next++;
    return new Promise<void>((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      this.#keepAlive();
      const size = ops.byteLength;
      if (size <= MAX_SHARED_BYTES && this.#waiting.size === 1) {
        // Nothing else in flight: the thread is done with the shared buffer (it answered every
        // commit before, after its transaction had copied the bytes into LMDB's pages).
        if (this.#shared === undefined || this.#shared.byteLength < size) {
          this.#shared = new Uint8Array(new SharedArrayBuffer(Math.max(MIN_SHARED_BYTES, 2 ** Math.ceil(Math.log2(Math.max(1, size))))));
        }
        const { table, bytes, strings } = ops.pack(this.#shared.subarray(0, size));
        this.#worker.postMessage({ id, table, bytes, strings }, [table.buffer]);
      } else {
        const { table, bytes, strings } = ops.pack();
        this.#worker.postMessage({ id, table, bytes, strings }, [table.buffer, bytes.buffer]);
      }
    });
  }

  /** Stops the thread once its commits are done (call after awaiting them). */
  async close(): Promise<void> {
    if (this.#dead !== undefined) return;
    const exited = new Promise<void>((resolve) => this.#worker.once('exit', () => resolve()));
    this.#closing = true;
    this.#keepAlive();
    this.#worker.postMessage('close');
    await exited;
  }
}
