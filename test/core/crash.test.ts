/**
 * Crash safety: a child process appends in a loop and is killed with SIGKILL at random moments.
 * After each kill the database reopens with every acknowledged event stored, and its view equals
 * a plain replay of the log. Rounds: NOATUN_KILL_ROUNDS (default 20).
 *
 * A second writer prunes: its clock runs fast, it ingests late events and compacts, so kills land
 * inside rewinds, pruning passes and compactions (half as many rounds; in every other one, costly
 * late events wait in memory for the re-application budget, with their children).
 */
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { MessageId, messagePackCodec } from '../../src/index.js';
import { cutoffHashMismatch } from '../helpers/convergence.js';
import { prng, removeTempDirs, T0, tempDir, testSeed } from '../helpers/temp.js';
import { type CrashEvent, openCrashDb, replay } from './fixtures/crash-app.js';
import { openPruneCrashDb, type PruneCrashEvent, replayPruneCrash } from './fixtures/prune-crash-app.js';

test.after.always(removeTempDirs);

const writer = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'crash-writer.ts');
const rounds = Number.parseInt(process.env.NOATUN_KILL_ROUNDS ?? '20', 10);

/**
 * Runs a writer script (`args` after its path) and kills it with SIGKILL `delayMs` after it says
 * `ready`; resolves with what followed `ack ` on each line it printed before.
 */
function runAndKill(script: string, args: readonly string[], delayMs: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import=tsx', script, ...args], {
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
    // 'close', not 'exit': 'exit' can come before the last acknowledgements are read from the
    // pipe, and the events they name would go unchecked.
    child.on('close', (_code, signal) => {
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
    const acked = await runAndKill(writer, [dir, String(seed + round)], 150 + Math.floor(random() * 600));
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

type Acked = { id: string; event: PruneCrashEvent };

const pruneWriter = path.join(path.dirname(writer), 'prune-crash-writer.ts');

test('killed inside rewinds, pruning and compaction: every acknowledged event is stored or overwritten by a stored one, and the stored set is a fixed point', async (t) => {
  const seed = testSeed();
  const random = prng(seed);
  const dir = tempDir();
  const codec = messagePackCodec<PruneCrashEvent>();
  const everAcked: Acked[] = [];
  // Each round starts an hour after the last began: the writer's clock runs 5 s per operation.
  let start = T0;
  let pruned = 0;
  for (let round = 0; round < Math.ceil(rounds / 2); round++) {
    // In odd rounds late events wait for a share of 0.5% of the time: kills land while they wait.
    const args = [dir, String(seed + round), String(start), ...(round % 2 === 1 ? ['0.005'] : [])];
    const acked = (await runAndKill(pruneWriter, args, 200 + Math.floor(random() * 900))).map((line): Acked => {
      const [id, key, value] = line.split(' ');
      return { id: id!, event: { key: Number(key), value: Number(value) } };
    });
    // The log as the kill left it, opened at about the writer's last time: every event after the
    // cutoff has its parents stored (an event whose parent waited for the budget used to be stored
    // alone, and the kill lost the parent).
    if (acked.length !== 0) {
      const last = Math.max(...acked.map(({ id }) => MessageId.parse(id).timestamp));
      const atKill = await openPruneCrashDb(dir, () => last);
      const cutoff = atKill.cutoffTime;
      const present = [...atKill.messages()];
      const ids = new Set(present.map((m) => m.id.toString()));
      const orphans = present.filter((m) => m.id.timestamp >= cutoff && m.parents.some((p) => p.timestamp >= cutoff && !ids.has(p.toString())));
      t.deepEqual(orphans.map((m) => m.id.toString()), [], `round ${round}, seed ${seed}: stored after the cutoff without a parent`);
      // The cutoff hashes cover exactly the stored events (events stored behind the cutoff, and
      // pruned ones, were saved a commit apart from their hashes: a kill between left a hash no
      // open ever mended, and peers with the same events never synced).
      t.is(cutoffHashMismatch(atKill), undefined, `round ${round}, seed ${seed}: cutoff hashes after the kill (opened by ${atKill.stats().openedBy})`);
      await atKill.close();
    }
    start += 3_600_000;
    everAcked.push(...acked);
    const db = await openPruneCrashDb(dir, () => start);
    const stored = [...db.messages()];
    t.is(cutoffHashMismatch(db), undefined, `round ${round}, seed ${seed}: cutoff hashes`);
    const events = stored.map((m) => ({ id: m.id.toString(), event: codec.decode(m.payload) }));
    // Nothing acknowledged is lost: replaying the acknowledged and the stored events together gives
    // the view (an acknowledged event that is not stored was overwritten by stored ones).
    const storedIds = new Set(events.map((e) => e.id));
    const union = new Map([...everAcked, ...events].map((e) => [e.id, e.event]));
    const byKey = (entries: [number, unknown][]) => entries.sort(([a], [b]) => a - b);
    const withAcked = replayPruneCrash([...union].sort(([a], [b]) => (a < b ? -1 : 1)).map(([, e]) => e));
    t.deepEqual(byKey([...db.read((root) => root.byKey.export())]), byKey(withAcked), `round ${round}, seed ${seed}: acknowledged events lost`);
    pruned += everAcked.filter(({ id }) => !storedIds.has(id)).length;
    // The view is the replay of the stored events, in the map's iteration order too.
    const expected = replayPruneCrash(events.map((e) => e.event));
    t.deepEqual([...db.read((root) => root.byKey.export())], expected, `round ${round}, seed ${seed}: view`);
    // A fresh peer given the stored events keeps exactly them and reaches the same view.
    const fresh = await openPruneCrashDb(tempDir(), () => start);
    await fresh.ingest(stored.map((m) => m.bytes));
    t.deepEqual([...fresh.messages()].map((m) => m.id.toString()), events.map((e) => e.id), `round ${round}, seed ${seed}: fixed point`);
    t.deepEqual([...fresh.read((root) => root.byKey.export())], expected, `round ${round}, seed ${seed}: fresh view`);
    t.log(`round ${round}: ${acked.length} acknowledged, ${stored.length} stored, opened by ${db.stats().openedBy}`);
    await fresh.close();
    await db.close();
  }
  t.true(everAcked.length > 0);
  t.true(pruned > 0, 'nothing was ever pruned: the test would not reach pruning');
});
