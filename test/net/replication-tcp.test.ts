/**
 * Real TCP: three peers in separate processes on 127.0.0.1 find each other through a bootstrap
 * address, write concurrently and converge; one stops, the others write, it restarts (same data,
 * same identity) and catches up.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { removeTempDirs, tempDir } from '../helpers/temp.js';

test.after.always(removeTempDirs);

const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'peer.ts');

interface Reply {
  type: string;
  [key: string]: unknown;
}

/** A peer process and a way to talk to it. */
class PeerProcess {
  readonly child: ChildProcessWithoutNullStreams;
  readonly #replies: Reply[] = [];
  readonly #waiting: ((reply: Reply) => void)[] = [];
  stderr = '';

  constructor(dir: string, topic: string, bootstrap: string[]) {
    this.child = spawn(process.execPath, ['--import=tsx', script, dir, topic, bootstrap.length === 0 ? '-' : bootstrap.join(',')]);
    this.child.stderr.on('data', (chunk: Buffer) => {
      this.stderr += chunk.toString();
    });
    createInterface({ input: this.child.stdout }).on('line', (line) => {
      const reply = JSON.parse(line) as Reply;
      const waiter = this.#waiting.shift();
      if (waiter === undefined) this.#replies.push(reply);
      else waiter(reply);
    });
  }

  next(): Promise<Reply> {
    const reply = this.#replies.shift();
    if (reply !== undefined) return Promise.resolve(reply);
    return new Promise((resolve, reject) => {
      this.#waiting.push(resolve);
      this.child.once('exit', (code) => reject(new Error(`peer exited with ${code}: ${this.stderr}`)));
    });
  }

  async ask(command: object, type: string): Promise<Reply> {
    this.child.stdin.write(`${JSON.stringify(command)}\n`);
    const reply = await this.next();
    if (reply.type !== type) throw new Error(`expected ${type}, got ${JSON.stringify(reply)}`);
    return reply;
  }
}

async function startPeer(dir: string, bootstrap: string[]): Promise<{ process: PeerProcess; peerId: string; address: string }> {
  const peer = new PeerProcess(dir, 'tcp-test', bootstrap);
  const ready = await peer.next();
  if (ready.type !== 'ready') throw new Error(`peer did not start: ${JSON.stringify(ready)} ${peer.stderr}`);
  return { process: peer, peerId: ready.peerId as string, address: (ready.multiaddrs as string[])[0]! };
}

test('three processes converge over TCP; a stopped peer catches up after a restart', async (t) => {
  const dirs = [tempDir(), tempDir(), tempDir()];
  const a = await startPeer(dirs[0]!, []);
  t.true(a.address.startsWith('/ip4/127.0.0.1/tcp/'));
  const b = await startPeer(dirs[1]!, [a.address]);
  let c = await startPeer(dirs[2]!, [a.address]);
  const all = () => [a, b, c];
  try {
    await Promise.all(all().map((p, i) => p.process.ask({ cmd: 'write', n: 30, seed: i + 1 }, 'wrote')));
    for (const p of all()) {
      await p.process.ask({ cmd: 'sync', peers: all().filter((q) => q !== p).map((q) => q.peerId) }, 'synced');
    }
    let states = await Promise.all(all().map((p) => p.process.ask({ cmd: 'state' }, 'state')));
    t.is(states[0]!.stored, 90);
    for (const state of states) {
      t.is(state.ids, states[0]!.ids);
      t.is(state.view, states[0]!.view);
    }

    // C stops; A and B write; C restarts with its data and identity and catches up.
    await c.process.ask({ cmd: 'stop' }, 'stopped');
    await a.process.ask({ cmd: 'write', n: 20, seed: 11 }, 'wrote');
    await b.process.ask({ cmd: 'write', n: 20, seed: 12 }, 'wrote');
    const restarted = await startPeer(dirs[2]!, [a.address]);
    t.is(restarted.peerId, c.peerId, 'the identity survives a restart');
    c = restarted;
    await c.process.ask({ cmd: 'sync', peers: [a.peerId, b.peerId] }, 'synced');
    await a.process.ask({ cmd: 'sync', peers: [b.peerId, c.peerId] }, 'synced');
    states = await Promise.all(all().map((p) => p.process.ask({ cmd: 'state' }, 'state')));
    t.is(states[0]!.stored, 130);
    for (const state of states) {
      t.is(state.ids, states[0]!.ids);
      t.is(state.view, states[0]!.view);
    }
  } finally {
    for (const p of all()) {
      if (p.process.child.exitCode === null) {
        await p.process.ask({ cmd: 'stop' }, 'stopped').catch(() => p.process.child.kill('SIGKILL'));
      }
    }
  }
});
