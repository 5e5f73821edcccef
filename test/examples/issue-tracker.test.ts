/**
 * The issue tracker example: its apply (aliases, renames, removals), its terminal UI driven by key
 * input through ink-testing-library, and two trackers replicating over libp2p on 127.0.0.1.
 */
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { stripVTControlCharacters } from 'node:util';
import test from 'ava';
import { render } from 'ink-testing-library';
import { Replicator } from 'noatun/net';
import React from 'react';
import {
  type IssueEvent,
  type IssueTrackerDb,
  issueDetails,
  listIssues,
  openIssueTracker,
} from '../../examples/issue-tracker/app.js';
import { runScript } from '../../examples/issue-tracker/script.js';
import { IssueTrackerApp } from '../../examples/issue-tracker/ui.js';
import { killAll, run } from '../helpers/child.js';
import { FakeClock, removeTempDirs, tempDir } from '../helpers/temp.js';

test.after.always(() => {
  killAll();
  removeTempDirs();
});

type Ui = ReturnType<typeof render>;

const ENTER = '\r';
const ESC = '\u001B';
const DOWN = '\u001B[B';
const UP = '\u001B[A';

/** A clock that moves 1 s per reading, so every event has its own visible creation time. */
function ticking(): () => number {
  const clock = new FakeClock(Date.UTC(2026, 0, 2, 3, 4, 5));
  return () => {
    clock.advance(1000);
    return clock.time;
  };
}

function open(): Promise<IssueTrackerDb> {
  return openIssueTracker(path.join(tempDir(), 'issues'), { now: ticking() });
}

function frame(ui: Ui): string {
  return stripVTControlCharacters(ui.lastFrame() ?? '');
}

/**
 * Resolves once the rendered frame satisfies `check`. ink-testing-library records frames without
 * telling anyone, so the frame is re-checked every few ms: a wait on a state, with a deadline.
 */
function waitForFrame(ui: Ui, check: (frame: string) => boolean, what: string, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + timeoutMs;
    const poll = () => {
      const current = frame(ui);
      if (check(current)) resolve(current);
      else if (Date.now() > deadline) reject(new Error(`timed out waiting for ${what}; last frame:\n${current}`));
      else setTimeout(poll, 5);
    };
    poll();
  });
}

/** Types `text` into the current prompt and submits it. */
async function typeAndSubmit(ui: Ui, text: string): Promise<void> {
  ui.stdin.write(text);
  await waitForFrame(ui, (f) => f.includes(text), `"${text}" in the prompt`);
  ui.stdin.write(ENTER);
}

/** Presses a key that opens a prompt and waits for the prompt's label. */
async function press(ui: Ui, key: string, label: string): Promise<void> {
  ui.stdin.write(key);
  await waitForFrame(ui, (f) => f.includes(label), `the prompt "${label}"`);
}

// ------------------------------------------------------------------ apply

/** The aliases as sorted [old, current] pairs (a map's iteration order is its table's). */
function aliases(db: IssueTrackerDb): [string, string][] {
  return [...db.read((root) => root.aliases.export())].sort(([a], [b]) => (a < b ? -1 : 1));
}

test('apply: a rename records an alias, so texts sent to the old name still reach the issue', async (t) => {
  const db = await open();
  const append = (event: IssueEvent) => db.append(event);
  await append({ type: 'AddIssue', reporter: 'ann', heading: 'Crash' });
  await append({ type: 'RenameIssue', oldId: 'Crash', newId: 'Crash on save' });
  await append({ type: 'AppendText', id: 'Crash', reporter: 'bob', text: 'seen it too' });
  await append({ type: 'RenameIssue', oldId: 'Crash on save', newId: 'Save crashes' });
  await append({ type: 'ReassignIssue', id: 'Crash', newReporter: 'cid' });
  const details = issueDetails(db, 'Crash');
  t.is(details?.id, 'Save crashes');
  t.is(details?.reporter, 'cid');
  t.deepEqual(details?.description.map((d) => d.text), ['seen it too']);
  t.deepEqual(details?.aliases, ['Crash', 'Crash on save'], 'aliases stay flat: both old names point at the current one');
  t.deepEqual(aliases(db), [['Crash', 'Save crashes'], ['Crash on save', 'Save crashes']]);

  // Taken names are refused: an existing issue, or an alias of another issue.
  await append({ type: 'AddIssue', reporter: 'ann', heading: 'Other' });
  await append({ type: 'RenameIssue', oldId: 'Other', newId: 'Crash' });
  await append({ type: 'AddIssue', reporter: 'eve', heading: 'Crash on save' });
  t.deepEqual(listIssues(db).map((row) => row.id), ['Save crashes', 'Other']);

  // Renaming back to an old name takes the alias over.
  await append({ type: 'RenameIssue', oldId: 'Save crashes', newId: 'Crash' });
  t.deepEqual(aliases(db), [['Crash on save', 'Crash'], ['Save crashes', 'Crash']]);

  // Removing drops the aliases (the names are free again); events about it then change nothing.
  await append({ type: 'RemoveIssue', id: 'Crash on save' });
  await append({ type: 'AppendText', id: 'Crash', reporter: 'bob', text: 'lost' });
  t.deepEqual(listIssues(db).map((row) => row.id), ['Other']);
  t.is(db.read((root) => root.aliases.size), 0);
  await db.close();
});

test('apply: a text that arrives late, addressed to the old name, lands after the rename', async (t) => {
  const db = await open();
  const added = await db.append({ type: 'AddIssue', reporter: 'ann', heading: 'Bug' });
  await db.append({ type: 'RenameIssue', oldId: 'Bug', newId: 'Big bug' });
  // Written "before" the rename (a peer that had not seen it): placed just after the AddIssue.
  await db.append({ type: 'AppendText', id: 'Bug', reporter: 'bob', text: 'early' }, { after: added });
  await db.append({ type: 'AppendText', id: 'Bug', reporter: 'bob', text: 'late' });
  t.deepEqual(issueDetails(db, 'Big bug')?.description.map((d) => d.text), ['early', 'late']);
  await db.close();
});

// ------------------------------------------------------------------ the UI

test('UI: add, comment, rename, reassign and remove an issue by key input', async (t) => {
  const db = await open();
  let quit = false;
  const ui = render(React.createElement(IssueTrackerApp, { db, user: 'ann', onQuit: () => (quit = true) }));
  try {
    let f = await waitForFrame(ui, (x) => x.includes('no issues yet'), 'the empty table');
    t.regex(f, /user ann · 0 messages · offline/);

    await press(ui, 'a', 'New issue heading');
    await typeAndSubmit(ui, 'Crash on save');
    f = await waitForFrame(ui, (x) => x.includes('Heading: Crash on save'), 'the new issue in the details pane');
    t.regex(f, />\s+2026-01-02 03:04:\d\d\s+Crash on save\s+ann\s+0/, 'the table row: time, heading, reporter, texts');
    t.regex(f, /1 messages/);
    t.deepEqual(listIssues(db).map((row) => [row.id, row.reporter]), [['Crash on save', 'ann']]);

    await press(ui, 'a', 'New issue heading');
    await typeAndSubmit(ui, 'Slow start');
    await waitForFrame(ui, (x) => x.includes('Heading: Slow start'), 'the second issue selected');
    ui.stdin.write(UP);
    f = await waitForFrame(ui, (x) => x.includes('Heading: Crash on save'), 'the first issue selected again');
    t.true(f.indexOf('Crash on save') < f.indexOf('Slow start'), 'the table is sorted by creation time');

    await press(ui, 't', 'Text for Crash on save');
    await typeAndSubmit(ui, 'Happens with big files');
    f = await waitForFrame(ui, (x) => /ann\s+Happens with big files/.test(x), 'the text in the texts table');
    t.deepEqual(issueDetails(db, 'Crash on save')?.description.map((d) => [d.addedBy, d.text]), [['ann', 'Happens with big files']]);

    await press(ui, 'n', 'Rename Crash on save to');
    await typeAndSubmit(ui, 'Save crashes');
    f = await waitForFrame(ui, (x) => x.includes('Heading: Save crashes'), 'the renamed issue');
    t.regex(f, /Also known as: Crash on save/);
    t.regex(f, /ann\s+Happens with big files/, 'the texts moved with the issue');
    t.deepEqual(aliases(db), [['Crash on save', 'Save crashes']]);

    await press(ui, 'r', 'Reassign Save crashes to');
    await typeAndSubmit(ui, 'bob');
    f = await waitForFrame(ui, (x) => x.includes('Reporter: bob'), 'the new reporter');
    t.is(issueDetails(db, 'Save crashes')?.reporter, 'bob');
    // The view shows the event at once; the notice comes when its commit is durable. Waiting for
    // it keeps that notice from landing on top of the next step's (seen on a loaded machine).
    await waitForFrame(ui, (x) => x.includes('reassigned Save crashes to bob'), 'the reassign notice');

    // Esc cancels a prompt without an event.
    const before = db.stats().stored;
    await press(ui, 't', 'Text for Save crashes');
    ui.stdin.write(ESC);
    await waitForFrame(ui, (x) => x.includes('cancelled'), 'the cancelled prompt');
    t.is(db.stats().stored, before);

    ui.stdin.write(DOWN);
    await waitForFrame(ui, (x) => x.includes('Heading: Slow start'), 'the second issue selected');
    ui.stdin.write('x');
    await waitForFrame(ui, (x) => x.includes('Remove Slow start? (y/n)'), 'the remove confirmation');
    ui.stdin.write('y');
    f = await waitForFrame(ui, (x) => x.includes('removed Slow start'), 'the removal');
    t.regex(f, /Heading: Save crashes/, 'the selection moved to the remaining issue');
    t.notRegex(f, /Slow start\s+ann/, 'the row is gone');
    t.deepEqual(listIssues(db).map((row) => row.id), ['Save crashes']);
    t.regex(f, /user ann · 6 messages/);

    ui.stdin.write('q');
    await waitForFrame(ui, () => quit, 'quit');
    t.true(quit);
  } finally {
    ui.unmount();
    await db.close();
  }
});

test('UI: a heading that is taken is refused with a message, and nothing is stored', async (t) => {
  const db = await open();
  await db.append({ type: 'AddIssue', reporter: 'ann', heading: 'Dup' });
  const ui = render(React.createElement(IssueTrackerApp, { db, user: 'ann' }));
  try {
    await waitForFrame(ui, (x) => x.includes('Heading: Dup'), 'the existing issue');
    await press(ui, 'a', 'New issue heading');
    await typeAndSubmit(ui, 'Dup');
    await waitForFrame(ui, (x) => x.includes('an issue named "Dup" exists already'), 'the refusal');
    t.is(db.stats().stored, 1);
  } finally {
    ui.unmount();
    await db.close();
  }
});

// ------------------------------------------------------------------ script mode

/** Runs `lines` through the script mode and gives its answers, one per line. */
async function script(db: IssueTrackerDb, lines: readonly string[]): Promise<string[]> {
  const input = new PassThrough();
  const output = new PassThrough();
  let text = '';
  output.on('data', (chunk: Buffer) => (text += chunk.toString()));
  input.end(`${lines.join('\n')}\n`);
  await runScript(db, 'carol', undefined, input, output);
  return text.split('\n').slice(0, -1);
}

test('script: what the app would refuse or make nothing of is an error, as in the UI, and stores nothing', async (t) => {
  const db = await open();
  const answers = await script(db, ['add A', 'add A', 'rename A | B', 'add A', 'remove Zzz', 'comment Zzz | x', 'rename Zzz | Q', 'reassign Zzz | x', 'rename B | B', 'rename B |', 'comment B | seen', 'remove A']);
  // (Before, every one of these answered "ok", and each stored an event that did nothing.)
  t.deepEqual(answers, [
    'ok added A',
    'error: an issue named "A" exists already',
    'ok renamed A to B',
    'error: the name "A" belongs to B',
    'error: no issue Zzz',
    'error: no issue Zzz',
    'error: no issue Zzz',
    'error: no issue Zzz',
    'error: B has that name already',
    'error: rename <issue> | <new heading>',
    'ok commented on B',
    'ok removed B',
  ]);
  t.is(db.stats().stored, 4, 'only the add, the rename, the comment and the removal were stored');
  t.deepEqual(listIssues(db), []);
  await db.close();
});

test('the tracker program: an unknown option is one line and exit status 2', async (t) => {
  const child = run(['--conditions=noatun-source', '--import=tsx', 'examples/issue-tracker/main.ts', '--db', path.join(tempDir(), 't'), '--bogus'], { input: '' });
  await child.waitFor(/^! issue-tracker: /);
  t.is(await child.exited(), 2, child.output);
  // (Node's ERR_PARSE_ARGS_UNKNOWN_OPTION with its stack, and exit status 1.)
  t.deepEqual(child.lines, ["! issue-tracker: Unknown option '--bogus' (--help for usage)"]);
});

// ------------------------------------------------------------------ replication

test('two trackers replicate over libp2p on 127.0.0.1: an issue added in one UI shows in the other', async (t) => {
  const dbA = await openIssueTracker(path.join(tempDir(), 'a'));
  const dbB = await openIssueTracker(path.join(tempDir(), 'b'));
  const nodeA = await Replicator.start(dbA, { listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [], topic: 'issue-tracker-test' });
  const nodeB = await Replicator.start(dbB, {
    listen: ['/ip4/127.0.0.1/tcp/0'],
    bootstrap: [nodeA.multiaddrs[0]!],
    topic: 'issue-tracker-test',
  });
  const uiA = render(React.createElement(IssueTrackerApp, { db: dbA, user: 'ann', replicator: nodeA, refreshMs: 50 }));
  const uiB = render(React.createElement(IssueTrackerApp, { db: dbB, user: 'bob', replicator: nodeB, refreshMs: 50 }));
  try {
    await nodeB.syncedWith(nodeA.peerId, { signal: AbortSignal.timeout(20_000) });
    await waitForFrame(uiB, (x) => x.includes('synced with 1/1 peer'), 'B showing it is in sync', 20_000);

    await press(uiA, 'a', 'New issue heading');
    await typeAndSubmit(uiA, 'Shared bug');
    const f = await waitForFrame(uiB, (x) => x.includes('Heading: Shared bug'), 'the issue on the other tracker', 20_000);
    t.regex(f, /Shared bug\s+ann/);
    t.deepEqual(listIssues(dbB).map((row) => [row.id, row.reporter]), [['Shared bug', 'ann']]);

    // And back: a text added on B reaches A.
    await press(uiB, 't', 'Text for Shared bug');
    await typeAndSubmit(uiB, 'reproduced');
    await waitForFrame(uiA, (x) => /bob\s+reproduced/.test(x), 'the text on the first tracker', 20_000);
    t.deepEqual(issueDetails(dbA, 'Shared bug')?.description.map((d) => d.text), ['reproduced']);
    t.regex(frame(uiA), /listening on \/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\//);
  } finally {
    uiA.unmount();
    uiB.unmount();
    await nodeB.stop();
    await nodeA.stop();
    await dbA.close();
    await dbB.close();
  }
});
