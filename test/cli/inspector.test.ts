/**
 * The web inspector in a real headless Chromium (Debian's `chromium`, installed by
 * scripts/ensure-chromium.sh when missing; the test fails, never skips, when it cannot be had):
 * the page lists the events, shows which event wrote a field, explains why that event is kept,
 * and refreshes live. Also the JSON endpoints' guards. A screenshot is saved as
 * test-artifacts/inspector.png.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { type Browser, chromium, type Locator } from 'playwright-core';
import { startInspector } from '../../src/cli/inspector/server.js';
import { Database, type MessageId, s } from '../../src/index.js';
import { MemoryNetwork, Replicator } from '../../src/net/index.js';
import { removeTempDirs, tempDir } from '../helpers/temp.js';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const artifacts = path.join(root, 'test-artifacts');

const Employee = s.object({ name: s.string(), salary: s.u32() });
const Company = s.object({ totalSalary: s.u32(), employees: s.map(s.string(), Employee), memo: s.opaque(s.string()) });
type Hire = { name: string; salary: number } | { fail: true } | { memo: string };

function open(dir = tempDir()) {
  return Database.open<Hire, typeof Company>({
    path: dir,
    root: Company,
    apply(event, r) {
      if ('fail' in event) throw new Error('this event is rejected on purpose');
      if ('memo' in event) {
        r.memo = event.memo;
        return;
      }
      const previous = r.employees.get(event.name)?.salary ?? 0;
      r.totalSalary += event.salary - previous;
      r.employees.set(event.name, { name: event.name, salary: event.salary });
    },
  });
}

let browser: Browser | undefined;

/** The text of the first element a locator finds ('' when it has none). */
async function text(locator: Locator): Promise<string> {
  return (await locator.first().textContent()) ?? '';
}

test.before(async () => {
  let executablePath: string;
  try {
    const out = execFileSync('sh', [path.join(root, 'scripts', 'ensure-chromium.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    executablePath = out.trim().split('\n').pop()!;
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? String(error);
    throw new Error(`the inspector test needs Chromium and scripts/ensure-chromium.sh could not provide it:\n${stderr}`);
  }
  // Root in a container has no user namespaces for Chromium's sandbox; the page is our own.
  browser = await chromium.launch({ executablePath, headless: true, args: ['--no-sandbox', '--disable-gpu'] });
});

test.after.always(async () => {
  await browser?.close();
  removeTempDirs();
});

test('the page lists the events, shows who wrote each field, explains why it is kept, and refreshes live', async (t) => {
  const db = await open();
  const network = new MemoryNetwork();
  const peer = await open();
  const replicator = new Replicator(db, network.join('inspected'), { statusIntervalMs: 100 });
  const other = new Replicator(peer, network.join('other-peer'), { statusIntervalMs: 100 });
  const ids: MessageId[] = [];
  ids.push(await db.append({ name: 'Andersen', salary: 25 }));
  ids.push(await db.append({ name: 'Berg', salary: 30 }));
  // A failed event is one whose apply throws here but did not for its author (whose own apply
  // throwing would refuse it): made by a build whose apply accepts it, then received.
  const author = await Database.open<Hire, typeof Company>({ path: tempDir(), root: Company, apply() {} });
  const failed = await author.append({ fail: true });
  await db.ingest([author.message(failed)!.bytes]);
  await author.close();
  ids.push(await db.append({ memo: 'quarterly review' }));
  const raise = await db.append({ name: 'Andersen', salary: 40 });
  await other.syncedWith('inspected', { signal: AbortSignal.timeout(10_000) });

  const inspector = await startInspector({ db, replicator });
  const page = await browser!.newPage({ viewport: { width: 1400, height: 1000 } });
  try {
    t.regex(inspector.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    await page.goto(inspector.url);
    await page.waitForSelector('body[data-loaded]');

    // The timeline: every stored event, newest first, the failed one marked.
    const rows = page.locator('#events tbody tr');
    t.is(await rows.count(), 5);
    t.is(await rows.first().getAttribute('data-id'), raise.toString());
    t.is(await page.locator(`#events tr[data-id="${failed}"] .mark.failed`).count(), 1);
    t.regex(await text(page.locator(`#events tr[data-id="${ids[0]}"] .payload`)), /"name":"Andersen","salary":25/);
    t.is(await text(page.locator('[data-stat="stored"] b')), '5');
    t.is(await text(page.locator('[data-stat="failed applies"] b')), '1');

    // Provenance: the total and Andersen's salary were last written by the raise; Berg's by its hire.
    const writerOf = (leafPath: string) => page.locator(`.leaf[data-path='${leafPath}'] a.writer`).first().getAttribute('data-writer');
    t.is(await writerOf('totalSalary'), raise.toString());
    t.is(await writerOf('employees["Andersen"].salary'), raise.toString());
    t.is(await writerOf('employees["Berg"].salary'), ids[1]!.toString());
    t.is(await writerOf('memo'), ids[2]!.toString());
    t.is(await page.locator(".leaf[data-path='memo'] .opaque").count(), 1);
    t.is(await text(page.locator(".leaf[data-path='totalSalary'] .value")), '70');

    // Clicking the writer selects the event and explains why it is kept.
    await page.locator(".leaf[data-path='totalSalary'] a.writer").click();
    await page.waitForSelector(`#explain[data-id="${raise}"]`);
    t.regex(await text(page.locator('#kept-because')), /it wrote \d+ current values? of the view/);
    t.is(await page.locator(`#events tr.selected`).getAttribute('data-id'), raise.toString());
    // The database agrees with what the page shows.
    t.true(db.explain(raise).keptBecause.some((line) => /current value/.test(line)));

    // Clicking a timeline row explains that event (the first hire is still read by the raise).
    await page.locator(`#events tr[data-id="${ids[0]}"]`).click();
    await page.waitForSelector(`#explain[data-id="${ids[0]}"]`);
    t.regex(await text(page.locator('#explain')), /read by/);

    // Heads, cutoff and the peer with its sync state.
    t.regex(await text(page.locator('#heads')), /1 head/);
    await page.waitForSelector('#peers tr[data-peer="other-peer"]');
    t.regex(await text(page.locator('#peers tr[data-peer="other-peer"]')), /synced|connected|syncing/);

    // Live: a new event shows up without a reload.
    const hire = await db.append({ name: 'Dahl', salary: 31 });
    await page.waitForSelector(`#events tr[data-id="${hire}"]`, { timeout: 10_000 });
    await page.waitForSelector(`.leaf[data-path='employees["Dahl"].name'] a.writer[data-writer="${hire}"]`);
    t.is(await text(page.locator(".leaf[data-path='totalSalary'] .value")), '101');

    await page.locator(".leaf[data-path='totalSalary'] a.writer").click();
    await page.waitForSelector(`#explain[data-id="${hire}"]`);
    fs.mkdirSync(artifacts, { recursive: true });
    await page.screenshot({ path: path.join(artifacts, 'inspector.png'), fullPage: true });
    t.true(fs.statSync(path.join(artifacts, 'inspector.png')).size > 10_000);
  } finally {
    await page.close();
    await inspector.close();
    await other.stop();
    await replicator.stop();
    await db.close();
    await peer.close();
  }
});

test('the JSON endpoints are read-only, validate input, and refuse foreign Host headers', async (t) => {
  const db = await open();
  const id = await db.append({ name: 'Andersen', salary: 25 });
  const inspector = await startInspector({ db });
  try {
    const get = (p: string, init?: RequestInit) => fetch(new URL(p, inspector.url), init);
    const summary = (await (await get('/api/summary')).json()) as { stats: { stored: number }; heads: { id: string }[]; replicator: unknown };
    t.is(summary.stats.stored, 1);
    t.deepEqual(summary.heads.map((h) => h.id), [id.toString()]);
    t.is(summary.replicator, null);

    const view = (await (await get('/api/view')).json()) as { kind: string; fields: { name: string; node: { writer: string } }[] };
    t.is(view.kind, 'object');
    t.is(view.fields.find((f) => f.name === 'totalSalary')?.node.writer, id.toString());

    const explained = (await (await get(`/api/explain?id=${id}`)).json()) as { id: string; stored: boolean; owns: number };
    t.is(explained.id, id.toString());
    t.true(explained.stored);
    t.true(explained.owns > 0);

    t.is((await get('/api/explain?id=nothex')).status, 400);
    t.is((await get('/api/events?limit=0')).status, 400);
    t.is((await get('/api/nope')).status, 404);
    t.is((await get('/api/summary', { method: 'POST' })).status, 405);
    // A page on another origin that rebinds its name to 127.0.0.1 is turned away.
    const { request } = await import('node:http');
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(new URL('/api/summary', inspector.url), { headers: { Host: 'evil.example:80' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });
    t.is(status, 403);

    // Paging: `before` gives older events.
    await db.transaction((tx) => {
      for (let i = 0; i < 5; i++) tx.append({ name: `e${i}`, salary: i });
    });
    const page1 = (await (await get('/api/events?limit=4')).json()) as { events: { id: string }[]; more: boolean; total: number };
    t.is(page1.total, 6);
    t.is(page1.events.length, 4);
    t.true(page1.more);
    const page2 = (await (await get(`/api/events?limit=4&before=${page1.events[3]!.id}`)).json()) as { events: { id: string }[]; more: boolean };
    t.is(page2.events.length, 2);
    t.false(page2.more);
    t.is(page2.events[1]!.id, id.toString());
  } finally {
    await inspector.close();
    await inspector.close();
    await db.close();
  }
});

test('events that leave the log while the inspector runs are marked pruned or removed', async (t) => {
  let now = Date.UTC(2026, 0, 1);
  const db = await Database.open<Hire, typeof Company>({
    path: tempDir(),
    root: Company,
    now: () => now,
    apply(event, r) {
      if ('name' in event) r.totalSalary = event.salary;
    },
  });
  const inspector = await startInspector({ db });
  try {
    const first = await db.append({ name: 'a', salary: 1 });
    now += 1000;
    const second = await db.append({ name: 'b', salary: 2 });
    now += 1000;
    const third = await db.append({ name: 'c', salary: 3 });
    // `first` and `second` were overwritten: once the cutoff passes the overwrites, they are pruned.
    now += 60 * 60_000;
    db.advanceCutoff();
    t.false(db.explain(first).stored);
    await db.remove(third);
    type Events = { events: { id: string }[]; removed: { id: string; reason: string }[] };
    let body: Events | undefined;
    // The inspector learns of removals from the database's listener, just after the call.
    for (let i = 0; i < 100; i++) {
      body = (await (await fetch(new URL('/api/events', inspector.url))).json()) as Events;
      if (body.removed.length === 3) break;
      await new Promise((resolve) => setImmediate(resolve));
    }
    t.deepEqual(body!.events, []);
    t.deepEqual(
      body!.removed.map((r) => [r.id, r.reason]),
      [
        [third.toString(), 'removed'],
        [second.toString(), 'pruned'],
        [first.toString(), 'pruned'],
      ],
    );
    const explained = (await (await fetch(new URL(`/api/explain?id=${first}`, inspector.url))).json()) as { stored: boolean; removal: { reason: string } };
    t.false(explained.stored);
    t.is(explained.removal.reason, 'pruned');
  } finally {
    await inspector.close();
    await db.close();
  }
});
