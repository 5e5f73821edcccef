/**
 * The `swarm` benchmark (issue 17): N peers, each in its own process (bench/swarm-peer.ts), on
 * 127.0.0.1 over TCP (port 0; no mDNS). Peer i is bootstrapped to two random earlier peers (peer 0
 * to none, peer 1 to peer 0). Once all are connected, each appends 100 events of a ~100-byte
 * payload, one by one. Per run it measures:
 *
 * - converged: from the start of the appends until every peer holds all N×100 events;
 * - synced: until every peer's `syncedWith(other)` has resolved for every other peer (each peer
 *   calls it for all others as soon as it holds all events); also after convergence;
 * - wire bytes per delivered event: bytes sent by all peers from the start of the appends until
 *   convergence, over N×100×(N−1) deliveries, and as a multiple of the mean envelope size
 *   (`db.messages()` → `.bytes.length`);
 * - idle, after convergence and sync and a 3 s pause, over 15 s with nothing written: bytes sent
 *   per peer per second (mean and max), CPU per peer (`process.cpuUsage`, % of one core) and RSS;
 * - links lost for good: peers left with no connection at the end (a run that does not converge
 *   within 60 s is reported as "never", and measured on).
 *
 * Wire bytes are the kernel's per-socket TCP counters (`ss -tinpH`: `bytes_sent`,
 * `bytes_received` of every socket owned by a peer's pid), so they include everything libp2p puts
 * on the connection (multistream-select, Noise, Yamux, identify, ping, gossipsub) but not the
 * TCP/IP headers. A socket's counters vanish when it closes, so the sockets are sampled every
 * half second and a socket gone between samples counts what it had at its last one (the rows say how
 * many closed). Runs as root, or as the user owning the peers (ss shows only one's own pids).
 *
 * Options (after `npm run bench -- swarm`): `--n=2,4,8,16`, `--runs=K` (per N; default 1),
 * `--idle-s=15`, `--events=100` (per peer), `--status-ms=<ms>` (the replicators'
 * `statusIntervalMs`; default: the replicator's own, 15000). `--quick`: N = 2 only, 3 s idle.
 */
import { type ChildProcessWithoutNullStreams, execFileSync, spawn } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { benchDir, cleanup, type Row, seeded } from './harness.js';

const PEER_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'swarm-peer.ts');
/** Waits: for all peers to be connected to their bootstrap peers, convergence, and sync. */
const CONNECT_TIMEOUT_MS = 30_000;
const CONVERGE_TIMEOUT_MS = 60_000;
const SYNC_TIMEOUT_MS = 60_000;
/** After the connections are up, so that gossipsub's meshes form (its heartbeat is 1 s). */
const SETTLE_MS = 2_000;
/** After convergence and sync, before the idle window. */
const PAUSE_MS = 3_000;
const SAMPLE_MS = 500;

function wallMs(): number {
  return performance.timeOrigin + performance.now();
}

interface Message {
  readonly type: string;
  readonly [key: string]: unknown;
}

/** A peer process and the JSON lines it says. */
class PeerProcess {
  readonly child: ChildProcessWithoutNullStreams;
  readonly #messages: Message[] = [];
  readonly #waiters = new Set<() => void>();
  connections = 0;
  stderr = '';
  exited = false;
  peerId = '';
  multiaddr = '';

  constructor(dir: string, topic: string, index: number, statusMs: number | undefined) {
    const args = [...process.execArgv, PEER_SCRIPT, dir, topic, String(index), ...(statusMs === undefined ? [] : [String(statusMs)])];
    this.child = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stderr.on('data', (chunk: Buffer) => {
      this.stderr = (this.stderr + chunk.toString()).slice(-4000);
    });
    createInterface({ input: this.child.stdout }).on('line', (line) => {
      let message: Message;
      try {
        message = JSON.parse(line) as Message;
      } catch {
        console.log(`swarm peer ${index}: ${line}`);
        return;
      }
      if (message.type === 'conn') this.connections = message.connections as number;
      else this.#messages.push(message);
      for (const wake of this.#waiters) wake();
    });
    this.child.on('exit', () => {
      this.exited = true;
      for (const wake of this.#waiters) wake();
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  send(command: object): void {
    if (!this.exited) this.child.stdin.write(`${JSON.stringify(command)}\n`);
  }

  /** The first message of `type` (taken), or undefined once `deadline` (wall ms) passes. */
  async next(type: string, deadline: number): Promise<Message | undefined> {
    for (;;) {
      const at = this.#messages.findIndex((m) => m.type === type);
      if (at >= 0) return this.#messages.splice(at, 1)[0];
      if (this.exited) throw new Error(`swarm: a peer exited: ${this.stderr}`);
      const left = deadline - wallMs();
      if (left <= 0) return undefined;
      await this.#changed(left);
    }
  }

  /** Resolves when a message arrives or the process exits, or after `ms`. */
  #changed(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#waiters.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.#waiters.add(wake);
    });
  }

  /** Resolves once `test()` holds after some message, or returns false at `deadline`. */
  async until(test: () => boolean, deadline: number): Promise<boolean> {
    while (!test()) {
      if (this.exited) throw new Error(`swarm: a peer exited: ${this.stderr}`);
      const left = deadline - wallMs();
      if (left <= 0) return false;
      await this.#changed(left);
    }
    return true;
  }

  async ask(command: object, type: string, timeoutMs = 30_000): Promise<Message> {
    this.send(command);
    const reply = await this.next(type, wallMs() + timeoutMs);
    if (reply === undefined) throw new Error(`swarm: no ${type} from a peer within ${timeoutMs} ms: ${this.stderr}`);
    return reply;
  }

  async stop(): Promise<void> {
    if (this.exited) return;
    this.child.stdin.end(`${JSON.stringify({ cmd: 'stop' })}\n`);
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
}

// ------------------------------------------------------------------ wire bytes (ss)

interface SocketCounters {
  readonly pid: number;
  readonly sent: number;
  readonly received: number;
}

/** Every TCP socket of the given pids, by its address pair, with its byte counters. */
export function sampleSockets(pids: ReadonlySet<number>): Map<string, SocketCounters> {
  const out = execFileSync('ss', ['-tinpH'], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const sockets = new Map<string, SocketCounters>();
  const lines = out.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line === '' || /^\s/.test(line)) continue;
    const pid = /pid=(\d+)/.exec(line);
    if (pid === null || !pids.has(Number(pid[1]))) continue;
    const fields = line.trim().split(/\s+/);
    // State, Recv-Q, Send-Q, local, peer, users…; the counters are on the indented next line.
    const info = /^\s/.test(lines[i + 1] ?? '') ? lines[i + 1]! : '';
    const sent = /\bbytes_sent:(\d+)/.exec(info);
    const received = /\bbytes_received:(\d+)/.exec(info);
    sockets.set(`${fields[3]}>${fields[4]}`, {
      pid: Number(pid[1]),
      sent: sent === null ? 0 : Number(sent[1]),
      received: received === null ? 0 : Number(received[1]),
    });
  }
  return sockets;
}

/** Bytes sent and received per pid over a window, from samples of the sockets' counters. */
class ByteMeter {
  readonly #pids: ReadonlySet<number>;
  #start = new Map<string, SocketCounters>();
  #last = new Map<string, SocketCounters>();
  #live = new Set<string>();
  closed = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(pids: ReadonlySet<number>) {
    this.#pids = pids;
  }

  /** Starts a window now, sampling every {@link SAMPLE_MS} until {@link end}. */
  begin(): void {
    const now = sampleSockets(this.#pids);
    this.#start = now;
    this.#last = new Map(now);
    this.#live = new Set(now.keys());
    this.closed = 0;
    this.#timer = setInterval(() => this.#sample(), SAMPLE_MS);
  }

  #sample(): void {
    const now = sampleSockets(this.#pids);
    for (const key of this.#live) if (!now.has(key)) this.closed++;
    for (const [key, counters] of now) this.#last.set(key, counters);
    this.#live = new Set(now.keys());
  }

  /** Ends the window: bytes per pid since {@link begin} (a socket new since then counts from 0). */
  end(): Map<number, { sent: number; received: number }> {
    clearInterval(this.#timer);
    this.#sample();
    const perPid = new Map<number, { sent: number; received: number }>();
    for (const pid of this.#pids) perPid.set(pid, { sent: 0, received: 0 });
    for (const [key, last] of this.#last) {
      const first = this.#start.get(key);
      const total = perPid.get(last.pid)!;
      total.sent += last.sent - (first?.sent ?? 0);
      total.received += last.received - (first?.received ?? 0);
    }
    return perPid;
  }
}

// ------------------------------------------------------------------ one run

/** What one run of N peers measured (times in ms; undefined: never, within the timeout). */
export interface SwarmResult {
  readonly n: number;
  readonly run: number;
  readonly appendsMs: number;
  readonly convergedMs: number | undefined;
  readonly syncedMs: number | undefined;
  readonly appendBytes: number;
  readonly bytesPerDelivery: number | undefined;
  readonly envelopeBytes: number;
  readonly payloadBytes: number;
  readonly idleBytesPerSecond: { readonly mean: number; readonly max: number };
  readonly idleCpuPercent: { readonly mean: number; readonly max: number };
  readonly rss: { readonly mean: number; readonly max: number; readonly peak: number };
  readonly connections: { readonly mean: number; readonly min: number };
  readonly isolated: number;
  readonly disconnects: number;
  /** When connections were lost, in ms from the start of the appends. */
  readonly disconnectedAt: readonly number[];
  readonly failures: readonly string[];
  readonly closedSockets: number;
  readonly idleStatusPerPeerPerSecond: number;
  /** Mean bytes of a status frame (the gossip message's data, before gossipsub's own fields). */
  readonly statusFrameBytes: number;
  readonly idleSessions: number;
  readonly notes: readonly string[];
}

interface RunOptions {
  readonly n: number;
  readonly run: number;
  readonly events: number;
  readonly idleMs: number;
  readonly statusMs: number | undefined;
}

const mean = (values: readonly number[]) => values.reduce((a, b) => a + b, 0) / values.length;

async function runSwarm(options: RunOptions): Promise<SwarmResult> {
  const { n, events } = options;
  const topic = `bench-swarm-${n}-${options.run}-${process.pid}`;
  const random = seeded(1000 * n + options.run);
  const notes: string[] = [];
  const base = benchDir(`swarm-${n}`);
  // Every process at once: their module loading overlaps; they start listening one by one below.
  const peers = Array.from({ length: n }, (_, i) => new PeerProcess(path.join(base, `peer-${i}`), topic, i, options.statusMs));
  try {
    await Promise.all(peers.map((peer) => peer.next('loaded', wallMs() + 120_000)));
    // Peer 0 to none, peer 1 to peer 0, every later peer to two random earlier ones.
    const degree = new Array<number>(n).fill(0);
    for (let i = 0; i < n; i++) {
      const earlier = Array.from({ length: i }, (_, j) => j);
      const chosen: number[] = [];
      while (chosen.length < Math.min(2, i)) chosen.push(earlier.splice(Math.floor(random() * earlier.length), 1)[0]!);
      for (const j of chosen) {
        degree[i]!++;
        degree[j]!++;
      }
      const ready = await peers[i]!.ask({ cmd: 'start', bootstrap: chosen.map((j) => peers[j]!.multiaddr) }, 'ready');
      peers[i]!.peerId = ready.peerId as string;
      peers[i]!.multiaddr = ready.multiaddr as string;
      if (!peers[i]!.multiaddr.startsWith('/ip4/127.0.0.1/tcp/')) throw new Error(`swarm: a peer listens on ${peers[i]!.multiaddr}`);
    }
    const connectDeadline = wallMs() + CONNECT_TIMEOUT_MS;
    const connected = await Promise.all(peers.map((peer, i) => peer.until(() => peer.connections >= degree[i]!, connectDeadline)));
    if (!connected.every(Boolean)) notes.push(`${connected.filter((c) => !c).length} peers not connected to all their bootstrap links after ${CONNECT_TIMEOUT_MS / 1000} s`);
    await sleep(SETTLE_MS);

    // The appends, until convergence and sync.
    const pids = new Set(peers.map((peer) => peer.pid));
    const meter = new ByteMeter(pids);
    const target = n * events;
    meter.begin();
    const start = wallMs();
    const convergeDeadline = start + CONVERGE_TIMEOUT_MS;
    const syncDeadline = Date.now() + CONVERGE_TIMEOUT_MS + SYNC_TIMEOUT_MS;
    for (const peer of peers) {
      peer.send({ cmd: 'go', events, target, others: peers.filter((p) => p !== peer).map((p) => p.peerId), deadline: syncDeadline });
    }
    const appended = await Promise.all(peers.map((peer) => peer.next('appended', convergeDeadline)));
    const appendsMs = Math.max(...appended.map((m) => (m === undefined ? CONVERGE_TIMEOUT_MS : (m.at as number) - start)));
    const converged = await Promise.all(peers.map((peer) => peer.next('converged', convergeDeadline)));
    const appendBytesPerPid = meter.end();
    const appendClosed = meter.closed;
    const appendBytes = [...appendBytesPerPid.values()].reduce((sum, b) => sum + b.sent, 0);
    const convergedMs = converged.every((m) => m !== undefined) ? Math.max(...converged.map((m) => (m!.at as number) - start)) : undefined;
    if (convergedMs === undefined) notes.push(`${converged.filter((m) => m === undefined).length} peers never held all ${target} events`);
    // Our frames (before libp2p's framing), summed over the peers, each until it converged.
    const frames = new Map<string, { count: number; bytes: number }>();
    for (const m of converged) {
      for (const [key, { count, bytes }] of Object.entries((m?.frames ?? {}) as Record<string, { count: number; bytes: number }>)) {
        const entry = frames.get(key) ?? { count: 0, bytes: 0 };
        entry.count += count;
        entry.bytes += bytes;
        frames.set(key, entry);
      }
    }
    const sortedFrames = [...frames].sort((a, b) => b[1].bytes - a[1].bytes);
    notes.push(`frames sent until convergence: ${sortedFrames.map(([key, { count, bytes }]) => `${key} ${count} (${kib(bytes)})`).join(', ')}`);
    const relays = converged.map((m) => m?.relay as { copies: number; retries: number } | undefined);
    notes.push(`relay: ${relays.reduce((a, r) => a + (r?.copies ?? 0), 0)} copies received, ${relays.reduce((a, r) => a + (r?.retries ?? 0), 0)} retries`);
    const synced = await Promise.all(peers.map((peer) => (convergedMs === undefined ? undefined : peer.next('synced', start + CONVERGE_TIMEOUT_MS + SYNC_TIMEOUT_MS))));
    const syncedMs = synced.every((m) => m !== undefined) ? Math.max(...synced.map((m) => (m!.at as number) - start)) : undefined;

    // Idle: nothing written.
    await sleep(PAUSE_MS);
    const idleMeter = new ByteMeter(pids);
    await Promise.all(peers.map((peer) => peer.ask({ cmd: 'idle-start' }, 'idle-started')));
    idleMeter.begin();
    const idleFrom = wallMs();
    await sleep(options.idleMs);
    const idleBytes = idleMeter.end();
    const idleSeconds = (wallMs() - idleFrom) / 1000;
    const idle = await Promise.all(peers.map((peer) => peer.ask({ cmd: 'idle-end' }, 'idle')));
    const envelope = await peers[0]!.ask({ cmd: 'envelope' }, 'envelope');

    const sentPerSecond = peers.map((peer) => idleBytes.get(peer.pid)!.sent / idleSeconds);
    const cpu = idle.map((m) => ((m.cpuMicros as number) / 1000 / (m.ms as number)) * 100);
    const rss = idle.map((m) => m.rss as number);
    const connections = idle.map((m) => m.connections as number);
    const stored = idle.map((m) => m.stored as number);
    if (stored.some((count) => count !== target)) notes.push(`stored at the end: ${stored.join(',')} (expected ${target})`);
    const deliveries = n * events * (n - 1);
    const envelopeBytes = envelope.meanBytes as number;
    return {
      n,
      run: options.run,
      appendsMs,
      convergedMs,
      syncedMs,
      appendBytes,
      bytesPerDelivery: convergedMs === undefined || n < 2 ? undefined : appendBytes / deliveries,
      envelopeBytes,
      payloadBytes: envelope.meanPayload as number,
      idleBytesPerSecond: { mean: mean(sentPerSecond), max: Math.max(...sentPerSecond) },
      idleCpuPercent: { mean: mean(cpu), max: Math.max(...cpu) },
      rss: { mean: mean(rss), max: Math.max(...rss), peak: Math.max(...idle.map((m) => m.peakRss as number)) },
      connections: { mean: mean(connections), min: Math.min(...connections) },
      isolated: connections.filter((c) => c === 0).length,
      disconnects: idle.reduce((sum, m) => sum + (m.disconnectsTotal as number), 0),
      disconnectedAt: idle.flatMap((m) => (m.disconnectedAt as number[]).map((at) => at - start)).sort((a, b) => a - b),
      failures: [...new Set(idle.flatMap((m) => m.failures as string[]))],
      closedSockets: appendClosed + idleMeter.closed,
      idleStatusPerPeerPerSecond: mean(idle.map((m) => m.statusReceived as number)) / idleSeconds,
      statusFrameBytes:
        idle.reduce((sum, m) => sum + (m.statusBytes as number), 0) / Math.max(1, idle.reduce((sum, m) => sum + (m.statusReceived as number), 0)),
      idleSessions: idle.reduce((sum, m) => sum + (m.sessions as number), 0),
      notes,
    };
  } finally {
    await Promise.all(peers.map((peer) => peer.stop()));
  }
}

// ------------------------------------------------------------------ the table

const seconds = (ms: number | undefined) => (ms === undefined ? 'never' : `${(ms / 1000).toFixed(2)} s`);
const kib = (bytes: number) => (bytes >= 1024 ? `${(bytes / 1024).toFixed(1)} KiB` : `${bytes.toFixed(0)} B`);
const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const HEADER = [
  'N',
  'run',
  'appends',
  'converged',
  'synced (after conv.)',
  'idle sent/peer (max)',
  'B/delivery (× envelope)',
  'idle CPU/peer (max)',
  'RSS/peer (max)',
  'conns/peer (min)',
  'links lost',
];

function cells(r: SwarmResult): string[] {
  const synced =
    r.syncedMs === undefined ? 'never' : `${seconds(r.syncedMs)} (+${((r.syncedMs - (r.convergedMs ?? 0)) / 1000).toFixed(2)} s)`;
  const lost = r.convergedMs === undefined ? 'never converged' : r.isolated > 0 ? `${r.isolated} peers isolated` : '0';
  return [
    String(r.n),
    String(r.run),
    seconds(r.appendsMs),
    seconds(r.convergedMs),
    synced,
    `${kib(r.idleBytesPerSecond.mean)}/s (${kib(r.idleBytesPerSecond.max)}/s)`,
    r.bytesPerDelivery === undefined ? 'never' : `${r.bytesPerDelivery.toFixed(0)} B (${(r.bytesPerDelivery / r.envelopeBytes).toFixed(1)}×)`,
    `${r.idleCpuPercent.mean.toFixed(1)}% (${r.idleCpuPercent.max.toFixed(1)}%)`,
    `${mib(r.rss.mean)} (${mib(r.rss.max)})`,
    `${r.connections.mean.toFixed(1)} (${r.connections.min})`,
    lost,
  ];
}

/** The median of several runs of one N (a time that was "never" in any run is "never"). */
function medianCells(results: readonly SwarmResult[]): string[] {
  const times = (pick: (r: SwarmResult) => number | undefined) => {
    const values = results.map(pick);
    return values.some((v) => v === undefined) ? undefined : median(values as number[]);
  };
  const converged = times((r) => r.convergedMs);
  const synced = times((r) => r.syncedMs);
  const relative = times((r) => (r.syncedMs === undefined || r.convergedMs === undefined ? undefined : r.syncedMs - r.convergedMs));
  const perDelivery = times((r) => r.bytesPerDelivery);
  const times2 = times((r) => (r.bytesPerDelivery === undefined ? undefined : r.bytesPerDelivery / r.envelopeBytes));
  const isolated = results.reduce((sum, r) => sum + r.isolated, 0);
  const never = results.filter((r) => r.convergedMs === undefined).length;
  return [
    String(results[0]!.n),
    `median of ${results.length}`,
    seconds(median(results.map((r) => r.appendsMs))),
    seconds(converged),
    synced === undefined ? 'never' : `${seconds(synced)} (+${(relative! / 1000).toFixed(2)} s)`,
    `${kib(median(results.map((r) => r.idleBytesPerSecond.mean)))}/s (${kib(median(results.map((r) => r.idleBytesPerSecond.max)))}/s)`,
    perDelivery === undefined ? 'never' : `${perDelivery.toFixed(0)} B (${times2!.toFixed(1)}×)`,
    `${median(results.map((r) => r.idleCpuPercent.mean)).toFixed(1)}% (${median(results.map((r) => r.idleCpuPercent.max)).toFixed(1)}%)`,
    `${mib(median(results.map((r) => r.rss.mean)))} (${mib(median(results.map((r) => r.rss.max)))})`,
    `${median(results.map((r) => r.connections.mean)).toFixed(1)} (${Math.min(...results.map((r) => r.connections.min))})`,
    never > 0 ? `${never} of ${results.length} never converged` : isolated > 0 ? `${isolated} peers isolated` : '0',
  ];
}

function printSwarmTable(lines: readonly string[][]): void {
  const widths = HEADER.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const show = (row: readonly string[]) => `| ${row.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  console.log(show(HEADER));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const line of lines) console.log(show(line));
}

function option(args: readonly string[], name: string): string | undefined {
  return args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
}

function positiveInteger(text: string, name: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new Error(`swarm: --${name} takes positive integers, not "${text}"`);
  return value;
}

/** The `swarm` benchmark: one table row per N and run (and a median row per N run more than once). */
export async function runSwarmBench(options: { quick: boolean; args: readonly string[] }): Promise<Row[]> {
  const { args, quick } = options;
  const ns = (option(args, 'n') ?? (quick ? '2' : '2,4,8,16')).split(',').map((t) => positiveInteger(t, 'n'));
  if (ns.some((n) => n < 2)) throw new Error('swarm: N must be at least 2');
  const runs = positiveInteger(option(args, 'runs') ?? '1', 'runs');
  const idleMs = Number(option(args, 'idle-s') ?? (quick ? 3 : 15)) * 1000;
  const events = positiveInteger(option(args, 'events') ?? '100', 'events');
  const statusText = option(args, 'status-ms');
  const statusMs = statusText === undefined ? undefined : positiveInteger(statusText, 'status-ms');
  const [load1, load5] = os.loadavg();
  console.log(
    `swarm: N = ${ns.join(', ')}, ${runs} run(s) each, ${events} events per peer, idle window ${idleMs / 1000} s, statusIntervalMs ${statusMs ?? 'default'}; ${os.cpus().length} CPUs, load average ${load1!.toFixed(2)} ${load5!.toFixed(2)}`,
  );
  const lines: string[][] = [];
  const rows: Row[] = [];
  for (const n of ns) {
    const results: SwarmResult[] = [];
    for (let run = 1; run <= runs; run++) {
      const result = await runSwarm({ n, run, events, idleMs, statusMs });
      results.push(result);
      const [l1] = os.loadavg();
      console.log(
        `swarm: N=${n} run ${run}: converged ${seconds(result.convergedMs)}, synced ${seconds(result.syncedMs)}; ` +
          `append phase ${kib(result.appendBytes)} sent in all (envelope ${result.envelopeBytes.toFixed(0)} B, payload ${result.payloadBytes.toFixed(0)} B); ` +
          `idle: ${result.idleStatusPerPeerPerSecond.toFixed(2)} status messages (${result.statusFrameBytes.toFixed(0)} B frames) delivered per peer per s, ${result.idleSessions} sessions; ` +
          `${result.disconnects} disconnects${result.disconnects > 0 ? ` (at ${result.disconnectedAt.map((ms) => (ms / 1000).toFixed(1)).join(', ')} s)` : ''}, ` +
          `${result.closedSockets} sockets closed while measured; load ${l1!.toFixed(2)}` +
          (result.failures.length > 0 ? `; failures: ${result.failures.join(' | ')}` : '') +
          (result.notes.length > 0 ? `; ${result.notes.join('; ')}` : ''),
      );
      lines.push(cells(result));
      const line = cells(result);
      rows.push({
        workload: `swarm: ${n} peers × ${events} events`,
        implementation: `noatun (libp2p, loopback, ${n} processes), run ${run}`,
        peakRssBytes: result.rss.peak,
        note: `converged ${line[3]}, synced ${line[4]}; idle ${line[5]} sent/peer, CPU ${line[7]}; ${line[6]}/delivery; links lost ${line[10]}`,
      });
    }
    if (runs > 1) lines.push(medianCells(results));
  }
  console.log('');
  printSwarmTable(lines);
  console.log('(times from the start of the appends; idle figures per peer: mean (max); RSS at the end of the idle window)\n');
  cleanup();
  return rows;
}
