/**
 * Crash safety: a child process appends in a loop and is killed with SIGKILL at random moments.
 * After each kill the database reopens with every acknowledged event stored, and its view equals
 * a plain replay of the log. Rounds: NOATUN_KILL_ROUNDS (default 20).
 */
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { messagePackCodec } from '../../src/index.js';
import { prng, removeTempDirs, tempDir, testSeed } from '../helpers/temp.js';
import { type CrashEvent, openCrashDb, replay } from './fixtures/crash-app.js';

test.after.always(removeTempDirs);

const writer = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'crash-writer.ts');
const rounds = Number.parseInt(process.env.NOATUN_KILL_ROUNDS ?? '20', 10);

/** Runs the writer until it has acknowledged some events, kills it at a random moment. */
function runAndKill(dir: string, seed: number, delayMs: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import=tsx', writer, dir, String(seed)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const acked: string[] = [];
    let buffered = '';
    let stderr = '';
    let timer: NodeJS.Timeout | undefined;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      buffered += chunk;
      let newline = buffered.indexOf('\n');
      while (newline >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        if (line === 'ready') timer = setTimeout(() => child.kill('SIGKILL'), delayMs);
        else if (line.startsWith('ack ')) acked.push(line.slice(4));
        newline = buffered.indexOf('\n');
      }
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on('error', reject);
    child.on('exit', (_code, signal) => {
      clearTimeout(timer);
      if (signal !== 'SIGKILL') reject(new Error(`writer exited by itself: ${stderr}`));
      else resolve(acked);
    });
  });
}

test('every acknowledged event survives SIGKILL and the reopened view equals a replay of the log', async (t) => {
  const seed = testSeed();
  const random = prng(seed);
  const dir = tempDir();
  const codec = messagePackCodec<CrashEvent>();
  const everAcked: string[] = [];
  for (let round = 0; round < rounds; round++) {
    const acked = await runAndKill(dir, seed + round, 150 + Math.floor(random() * 600));
    everAcked.push(...acked);
    const db = await openCrashDb(dir);
    const stored = new Set([...db.messages()].map((m) => m.id.toString()));
    const lost = everAcked.filter((id) => !stored.has(id));
    t.deepEqual(lost, [], `round ${round}, seed ${seed}: acknowledged events lost`);
    const events = [...db.messages()].map((m) => codec.decode(m.payload));
    const expected = replay(events);
    const view = db.read((root) => root.export());
    t.is(view.count, expected.count, `round ${round}, seed ${seed}`);
    t.is(view.sum, expected.sum, `round ${round}, seed ${seed}`);
    const sorted = (m: Map<number, unknown>) => [...m].sort(([a], [b]) => a - b);
    t.deepEqual(sorted(view.byKey), sorted(expected.byKey), `round ${round}, seed ${seed}`);
    t.deepEqual(view.log, expected.log, `round ${round}, seed ${seed}`);
    t.log(`round ${round}: ${acked.length} acknowledged, ${events.length} stored, opened by ${db.stats().openedBy}`);
    await db.close();
  }
  t.true(everAcked.length > 0);
});

test('a process killed after writes went quiet reopens its view without a rebuild', async (t) => {
  const dir = tempDir();
  const idleWriter = path.join(path.dirname(writer), 'idle-writer.ts');
  await new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, ['--import=tsx', idleWriter, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      // The checkpoint runs one quiet second after the last write; give it a margin.
      if (chunk.includes('idle')) setTimeout(() => child.kill('SIGKILL'), 2500);
    });
    child.on('error', reject);
    child.on('exit', () => resolve());
  });
  const db = await openCrashDb(dir);
  t.is(db.stats().openedBy, 'clean-load');
  t.is(db.stats().stored, 50);
  t.is(db.read((root) => root.count), 50);
  await db.close();
});
