/**
 * The `noatun` command, run as child processes on 127.0.0.1 the way a user runs it: two peers of
 * the issue tracker exchanging issues (one of them the tracker itself, scripted through its
 * stdin), `inspect` on what they stored, progress lines for a rebuild and an initial copy, and
 * the clear errors (exit status 2 and a code) for every wrong input the issue names.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { app as issueTracker, openIssueTracker } from '../../examples/issue-tracker/app.js';
import { program } from '../../src/cli/main.js';
import { Database } from '../../src/index.js';
import { type Child, killAll, REPO, run } from '../helpers/child.js';
import { removeTempDirs, tempDir } from '../helpers/temp.js';

test.after.always(() => {
  killAll();
  removeTempDirs();
});

const APP = 'examples/issue-tracker/app.ts';

function noatun(...args: string[]): Child {
  return run(['--import=tsx', 'bin/noatun.js', ...args]);
}

/** Runs `noatun <args>` to its end: its exit status and everything it printed. */
async function noatunOnce(...args: string[]): Promise<{ code: number | null; output: string }> {
  const child = noatun(...args);
  const code = await child.exited();
  await new Promise((resolve) => setTimeout(resolve, 50)); // the last lines through readline
  return { code, output: child.output };
}

/** Starts a CLI peer of the app module `app` and resolves with it and its first address. */
async function startPeerOf(app: string, db: string, ...more: string[]): Promise<{ peer: Child; address: string }> {
  const peer = noatun('peer', '--app', app, '--db', db, ...more);
  const [, address] = await peer.waitFor(/^listening on (\S+)$/);
  return { peer, address: address! };
}

/** Starts a CLI peer of the issue tracker. */
function startPeer(db: string, ...more: string[]): Promise<{ peer: Child; address: string }> {
  return startPeerOf(APP, db, ...more);
}

/** A tracker database with `texts` comments on one issue, written in this process and closed. */
async function filledTracker(dir: string, texts: number): Promise<void> {
  const db = await openIssueTracker(dir);
  await db.append({ type: 'AddIssue', reporter: 'ann', heading: 'Crash on start' });
  for (let done = 0; done < texts; done += 1000) {
    await db.transaction((tx) => {
      for (let i = done; i < Math.min(texts, done + 1000); i++) tx.append({ type: 'AppendText', id: 'Crash on start', reporter: 'ann', text: `note ${i}` });
    });
  }
  await db.close();
}

test('two CLI peers exchange issues; inspect shows the events, the view with provenance, and explains an event', async (t) => {
  const root = tempDir();
  const a = path.join(root, 'a');
  const b = path.join(root, 'b');
  await filledTracker(b, 1);

  const { peer: peerA, address } = await startPeer(a);
  t.regex(address, /^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/\w+$/);
  const { peer: peerB } = await startPeer(b, '--bootstrap', address);
  await peerA.waitFor(/^events: 2 stored$/);
  await peerA.waitFor(/^peer \S+ synced/);
  await peerB.waitFor(/^peer \S+ synced/);
  t.is(await peerA.stop(), 0, 'SIGTERM stops a peer cleanly');
  // (SIGHUP, a closed terminal, ended it with the database open: no 'stopped'.)
  t.is(await peerB.stop('SIGHUP'), 0, 'SIGHUP stops a peer cleanly');
  t.true(peerA.lines.includes('stopped'));
  t.true(peerB.lines.includes('stopped'));

  // The peer recorded its app, so inspect needs only the directory.
  const shown = await noatunOnce('inspect', a);
  t.is(shown.code, 0, shown.output);
  t.regex(shown.output, /events: 2 stored, 0 pruned/);
  t.regex(shown.output, /heads: 1/);
  const added = shown.output.match(/^ {2}([0-9a-f]{32}) .* \{"type":"AddIssue","reporter":"ann","heading":"Crash on start"\}$/m);
  t.truthy(added, shown.output);
  const addedId = added![1]!;

  const view = await noatunOnce('inspect', a, '--view');
  t.is(view.code, 0, view.output);
  t.regex(view.output, new RegExp(`reporter: "ann" {2}← ${addedId}`), 'each value names the event that wrote it');
  t.regex(view.output, /text: "note 0"/);

  const explained = await noatunOnce('inspect', a, '--explain', addedId);
  t.is(explained.code, 0, explained.output);
  t.regex(explained.output, new RegExp(`^event ${addedId}`, 'm'));
  t.regex(explained.output, /kept because: it wrote \d+ current values/);
  // Inspect opens with pruning off itself: that is no reason the peer keeps it (it was given for
  // every event). An id in uppercase hex is the same id (it was refused).
  t.notRegex(explained.output, /autoPrune/);
  const upper = await noatunOnce('inspect', a, '--explain', addedId.toUpperCase());
  t.is(upper.code, 0, upper.output);
  t.is(upper.output, explained.output);
});

test('the issue tracker as a process creates, comments and renames issues that reach a CLI peer and another tracker', async (t) => {
  const root = tempDir();
  const { peer, address } = await startPeer(path.join(root, 'hub'));
  const writer = run(['--import=tsx', 'examples/issue-tracker/main.ts', '--db', path.join(root, 'w'), '--user', 'ann', '--listen', '0', '--bootstrap', address], {
    input: 'add Crash on start\ncomment Crash on start | segfault in main\nrename Crash on start | Crash at boot\nsync\nquit\n',
  });
  t.is(await writer.exited(), 0, writer.output);
  await writer.waitFor(/^ok synced with 1 peer/);
  await peer.waitFor(/^events: 3 stored$/);

  const reader = run(['--import=tsx', 'examples/issue-tracker/main.ts', '--db', path.join(root, 'r'), '--user', 'bob', '--bootstrap', address], {
    input: 'sync\nshow Crash on start\nlist\nquit\n',
  });
  t.is(await reader.exited(), 0, reader.output);
  await reader.waitFor(/^ok synced/);
  t.true(reader.lines.includes('issue Crash at boot | ann | 1 texts'), reader.output);
  t.true(reader.lines.includes('text ann: segfault in main'), reader.output);
  t.true(reader.lines.includes('aliases Crash on start'), 'the old name still leads to the issue');
  t.is(await peer.stop(), 0);
});

test('a CLI peer of the chat app relays messages between chat processes that are never online together', async (t) => {
  const root = tempDir();
  const { peer, address } = await startPeerOf('examples/chat/app.ts', path.join(root, 'hub'));
  // stdin stays open: the chat leaves at the end of its input, and here at `/quit`.
  const chat = (name: string) =>
    run(['--import=tsx', 'examples/chat/main.ts', '--name', name, '--db', path.join(root, name), '--listen', '/ip4/127.0.0.1/tcp/0', '--bootstrap', address]);

  // Ann says something and leaves once the hub holds it; then Bob arrives and finds it there.
  const ann = chat('ann');
  ann.send('hello from ann');
  await peer.waitFor(/^events: 1 stored$/);
  ann.send('/quit');
  t.is(await ann.exited(), 0, ann.output);

  const bob = chat('bob');
  await bob.waitFor(/^\[\d\d:\d\d:\d\d\] ann: hello from ann$/);
  bob.send('hi ann, bob here');
  await peer.waitFor(/^events: 2 stored$/);
  bob.send('/quit');
  t.is(await bob.exited(), 0, bob.output);
  t.is(await peer.stop(), 0);

  const shown = await noatunOnce('inspect', path.join(root, 'hub'));
  t.regex(shown.output, /\{"type":"say","from":"ann","text":"hello from ann"\}/);
  t.regex(shown.output, /\{"type":"say","from":"bob","text":"hi ann, bob here"\}/);
});

// Large enough that the copy takes several of the peer's 100 ms progress ticks: since issue 16
// a copy of 20000 events could end between two 250 ms ticks, and the bar never showed.
test('long work shows progress: a rebuilt view, and an initial copy of 60000 events', async (t) => {
  const root = tempDir();
  const full = path.join(root, 'full');
  await filledTracker(full, 59_999);

  // A deleted view is rebuilt from the log on open.
  fs.rmSync(path.join(full, 'view'), { recursive: true, force: true });
  const inspected = await noatunOnce('inspect', full, '--app', APP, '--events', '1');
  t.is(inspected.code, 0, inspected.output);
  t.regex(inspected.output, /^! rebuilding the view: \d+\/60000$/m);
  t.regex(inspected.output, /opened by rebuild/);

  const { peer: source, address } = await startPeer(full);
  const { peer: copy } = await startPeer(path.join(root, 'copy'), '--bootstrap', address);
  await copy.waitFor(/^events: 60000 stored$/);
  await copy.waitFor(/^peer \S+ synced/);
  t.regex(copy.output, /^! copying from \S+: \d+\/60000$/m, 'the copy reports its progress, of all it copies');
  t.is(await copy.stop(), 0);
  t.is(await source.stop(), 0);
});

test('wrong input gets a clear error, exit status 2, and changes nothing', async (t) => {
  const root = tempDir();
  const noApp = path.join(root, 'no-app.mjs');
  fs.writeFileSync(noApp, 'export const schema = 1;\n');
  const badKey = path.join(root, 'swarm.key');
  fs.writeFileSync(badKey, 'not a key\n');
  const tracker = path.join(root, 'tracker');
  await filledTracker(tracker, 1);
  // (The cases run at once: each inspect that opens a database needs one of its own.)
  const trackerForHost = path.join(root, 'tracker-host');
  fs.cpSync(tracker, trackerForHost, { recursive: true });
  const badIdentity = path.join(root, 'bad-identity');
  fs.mkdirSync(badIdentity);
  fs.writeFileSync(path.join(badIdentity, 'peer.key'), 'garbage');
  const identityDirectory = path.join(root, 'identity-directory');
  fs.mkdirSync(path.join(identityDirectory, 'peer.key'), { recursive: true });
  // A database written by the tracker (as `noatun peer` records it), to be inspected with another app.
  const recorded = path.join(root, 'recorded');
  await filledTracker(recorded, 1);
  fs.writeFileSync(path.join(recorded, 'app.json'), JSON.stringify({ name: 'issue-tracker', module: path.resolve(APP) }));
  const viewBefore = fs.readFileSync(path.join(recorded, 'view', 'view.bin'));
  const busy = net.createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  const busyPort = (busy.address() as net.AddressInfo).port;
  t.teardown(() => busy.close());

  const cases: [string, string[], RegExp][] = [
    ['a database directory that does not exist', ['inspect', path.join(root, 'missing')], /no such directory: .*missing \[NOT_FOUND\]/],
    ['a directory without a database', ['inspect', root], /holds no Noatun database .*\[NOT_FOUND\]/],
    // (It said "holds no Noatun database (no log.mdb)", as of a directory.)
    ['a plain file for the database directory', ['inspect', noApp], /^! noatun: error: \S*no-app\.mjs is a file, not a database directory \[INVALID_ARGUMENT\]$/],
    ['an app module that does not exist', ['peer', '--app', path.join(root, 'nope.ts'), '--db', path.join(root, 'd1')], /no app module at .*\[NOT_FOUND\]/],
    ['a module without an app', ['peer', '--app', noApp, '--db', path.join(root, 'd2')], /exports no app: .*\(it exports schema, none of them made by defineApp\) \[APP_INVALID\]/],
    ['an allow-list entry that is not a peer id', ['peer', '--app', APP, '--db', path.join(root, 'd7'), '--allow', 'xyz'], /allowPeers: not a peer id: "xyz".*\[INVALID_ARGUMENT\]/],
    ['inspect with the module of another app', ['inspect', recorded, '--app', 'examples/chat/app.ts'], /was written by the app "issue-tracker", and examples\/chat\/app\.ts is the app "chat".*\[APP_INVALID\]/],
    // (Before, the peer opened it: the view rebuilt as a chat, app.json rewritten, its events offered to the chat's swarm.)
    ['a peer with the module of another app', ['peer', '--app', 'examples/chat/app.ts', '--db', recorded], /holds the database of the app "issue-tracker", and examples\/chat\/app\.ts is the app "chat".*\[APP_INVALID\]/],
    ['a busy port', ['peer', '--app', APP, '--db', path.join(root, 'd3'), '--listen', String(busyPort)], /address is in use \[ADDRESS_IN_USE\]/],
    ['a malformed swarm key', ['peer', '--app', APP, '--db', path.join(root, 'd4'), '--psk-file', badKey], /not a private swarm key.*\[KEY_INVALID\]/],
    ['a missing swarm key file', ['peer', '--app', APP, '--db', path.join(root, 'd5'), '--psk-file', path.join(root, 'none.key')], /no swarm key file .*\[NOT_FOUND\]/],
    // (Both were libp2p's or Node's raw error, a stack trace and status 1.)
    ['a swarm key file that is a directory', ['peer', '--app', APP, '--db', path.join(root, 'd15'), '--psk-file', root], /is a directory, not a swarm key file \[INVALID_ARGUMENT\]/],
    ['a listen address of another machine', ['peer', '--app', APP, '--db', path.join(root, 'd16'), '--listen', '/ip4/192.0.2.1/tcp/0'], /cannot listen on \/ip4\/192\.0\.2\.1\/tcp\/0: no such address on this machine \[INVALID_ARGUMENT\]/],
    ['a damaged identity key', ['peer', '--app', APP, '--db', badIdentity], /peer\.key is not a libp2p private key.*\[KEY_INVALID\]/],
    // (Node's raw EISDIR, a stack trace and status 1.)
    ['an identity key that is a directory', ['peer', '--app', APP, '--db', identityDirectory], /^! noatun: error: \S*peer\.key is a directory, not a libp2p private key \[KEY_INVALID\]$/],
    ['an address that is not a multiaddr', ['peer', '--app', APP, '--db', path.join(root, 'd6'), '--listen', '/ip4/127.0.0.1/tcp/x'], /not a multiaddr.*\[INVALID_ARGUMENT\]/],
    ['a bootstrap address that is not a multiaddr', ['peer', '--app', APP, '--db', path.join(root, 'd8'), '--bootstrap', 'garbage'], /not a multiaddr: "garbage".*\[INVALID_ARGUMENT\]/],
    // (Both started a peer that dialled them again and again, for as long as it ran.)
    ['a bootstrap address whose /p2p/ part is no peer id', ['peer', '--app', APP, '--db', path.join(root, 'd17'), '--bootstrap', '/ip4/127.0.0.1/tcp/4201/p2p/notapeerid'], /^! noatun: error: bootstrap: "\/ip4\/127\.0\.0\.1\/tcp\/4201\/p2p\/notapeerid" ends in \/p2p\/ and something that is not a peer id: "notapeerid" .*\[INVALID_ARGUMENT\]$/],
    ['a bootstrap address that is not TCP', ['peer', '--app', APP, '--db', path.join(root, 'd18'), '--bootstrap', '/ip4/127.0.0.1/udp/1'], /^! noatun: error: bootstrap: cannot dial "\/ip4\/127\.0\.0\.1\/udp\/1": peers are reached over TCP only .*\[INVALID_ARGUMENT\]$/],
    ['an empty topic', ['peer', '--app', APP, '--db', path.join(root, 'd9'), '--topic', ''], /topic must name the swarm \[INVALID_ARGUMENT\]/],
    // (Before: libp2p's raw error, status 1, a stack trace, and the database made.)
    ['a listen address that is not TCP', ['peer', '--app', APP, '--db', path.join(root, 'd10'), '--listen', '/ip4/127.0.0.1/udp/4000'], /cannot listen on \/ip4\/127\.0\.0\.1\/udp\/4000: peers listen on TCP only.*\[INVALID_ARGUMENT\]/],
    ['a listen address given twice', ['peer', '--app', APP, '--db', path.join(root, 'd11'), '--listen', '/ip4/127.0.0.1/tcp/0', '--listen', '/ip4/127.0.0.1/tcp/0'], /is given twice to listen on \[INVALID_ARGUMENT\]/],
    ['a topic of 100,000 characters', ['peer', '--app', APP, '--db', path.join(root, 'd12'), '--topic', 'x'.repeat(100_000)], /topic must be at most 200 characters, got 100000 \[INVALID_ARGUMENT\]/],
    // An empty host was every interface to Node: the data served to the network.
    ['an empty inspector host', ['inspect', tracker, '--app', APP, '--web', '--host', ''], /the inspector's host must name an interface .*\[INVALID_ARGUMENT\]/],
    ['an inspector host that is no address', ['inspect', trackerForHost, '--app', APP, '--web', '--host', '999.1.1.1'], /the inspector cannot listen on host 999\.1\.1\.1: .*\[INVALID_ARGUMENT\]/],
    ['a missing required option', ['peer', '--app', APP], /noatun: error: required option '--db <dir>' not specified \(add --help for usage\) \[INVALID_ARGUMENT\]$/m],
    ['an option value of the wrong kind', ['inspect', tracker, '--port', 'abc'], /noatun: error: option '--port <port>' argument 'abc' is invalid\..* \[INVALID_ARGUMENT\]$/m],
    ['a missing argument', ['inspect'], /noatun: error: missing required argument 'dir' \(add --help for usage\) \[INVALID_ARGUMENT\]$/m],
    ['a malformed event id', ['inspect', tracker, '--app', APP, '--explain', 'xyz'], /--explain wants an event id of 32 hex digits, not "xyz" \[INVALID_ARGUMENT\]/],
    // (It named the working directory: "  is a directory, not an app module".)
    ['an empty app module name', ['peer', '--app', '', '--db', path.join(root, 'd13')], /--app must name an app module file, got an empty name \[INVALID_ARGUMENT\]/],
    // (The whole argument was echoed: a line of 100 kB.)
    ['a bootstrap address of 100,000 characters', ['peer', '--app', APP, '--db', path.join(root, 'd14'), '--bootstrap', 'x'.repeat(100_000)], /noatun: error: not a multiaddr: "x{120}"… \(100000 characters\) .{0,200}\[INVALID_ARGUMENT\]$/m],
    ['a database path of 100,000 characters', ['inspect', 'y'.repeat(100_000)], /noatun: error: no such directory: y{120}…\(100000 characters\) \[NOT_FOUND\]$/m],
  ];
  const results = await Promise.all(cases.map(([, args]) => noatunOnce(...args)));
  for (const [i, [what, , pattern]] of cases.entries()) {
    const { code, output } = results[i]!;
    t.is(code, 2, `${what}: ${output}`);
    t.regex(output, pattern, what);
  }
  t.false(fs.existsSync(path.join(root, 'missing')), 'inspect never creates a database');
  t.is(fs.readFileSync(noApp, 'utf8'), 'export const schema = 1;\n', 'inspect left the plain file alone');
  // (Before, a bad bootstrap address, allow-list entry or topic was refused once the database was
  // made, its peer key and app record written.)
  // (A busy port, d3, is met once the database is open: the database this command made is removed.)
  for (const dir of ['d3', 'd6', 'd7', 'd8', 'd9', 'd10', 'd11', 'd12', 'd13', 'd14', 'd15', 'd16', 'd17', 'd18']) t.false(fs.existsSync(path.join(root, dir)), `${dir}: a peer with a bad address, peer id or topic creates no database`);
  t.deepEqual(fs.readFileSync(path.join(recorded, 'view', 'view.bin')), viewBefore, 'inspect or peer with another app rebuilt the view');
  t.is(JSON.parse(fs.readFileSync(path.join(recorded, 'app.json'), 'utf8')).name, 'issue-tracker', 'the app record is left as it was');
  t.is(fs.readFileSync(path.join(badIdentity, 'peer.key'), 'utf8'), 'garbage', 'a bad key file is never overwritten');
});

test("peer --help gives each option's default once, in words", (t) => {
  const help = program()
    .commands.find((command) => command.name() === 'peer')!
    .helpInformation({ error: false })
    .replace(/\s+/g, ' ');
  // (It read "(repeatable; default: everyone) (default: [])", and "(default: [])" for --bootstrap.)
  t.notRegex(help, /default: \[\]/);
  t.regex(help, /--allow <peerId> only this peer may connect \(repeatable\) \(default: everyone\)/);
  t.regex(help, /--bootstrap <addr> a peer's multiaddr to connect to \(repeatable\) \(default: none\)/);
  t.is(help.match(/default: everyone/g)?.length, 1);
});

test('inspect changes nothing in a database that records no app name: another app is refused, its own app prunes nothing', async (t) => {
  // A database opened without a name (as the README's first example does), its events three hours
  // old: behind the cutoff, where pruning takes what no current value needs.
  const dir = tempDir();
  const { name: _name, ...unnamed } = issueTracker;
  const owner = await Database.open({ ...unnamed, path: dir });
  const old = Date.now() - 3 * 3_600_000;
  await owner.append({ type: 'AddIssue', reporter: 'ann', heading: 'Old' }, { time: old });
  await owner.append({ type: 'AppendText', id: 'Old', reporter: 'bob', text: 'still here' }, { time: old + 1000 });
  await owner.append({ type: 'RenameIssue', oldId: 'Old', newId: 'Older' }, { time: old + 2000 });
  await owner.close();
  const viewBefore = fs.readFileSync(path.join(dir, 'view', 'view.bin'));
  // Before: the view was made again as the other app's, its name recorded, and every event pruned.
  const other = await noatunOnce('inspect', dir, '--app', 'test/cli/fixtures/noop-app.ts');
  t.is(other.code, 2, other.output);
  t.regex(other.output, /records no app name, so its app cannot be told from another.*its schema differs.*\[APP_INVALID\]/);
  t.deepEqual(fs.readFileSync(path.join(dir, 'view', 'view.bin')), viewBefore, 'the view was made again');
  const own = await noatunOnce('inspect', dir, '--app', APP);
  t.is(own.code, 0, own.output);
  t.regex(own.output, /events: 3 stored, 0 pruned/);
  // Nothing was recorded: the owner opens it under any name, and finds its three events.
  const reopened = await Database.open({ ...issueTracker, path: dir });
  t.is(reopened.stats().stored, 3);
  t.is(reopened.read((root) => root.issues.get('Older')?.description.get(0)?.text), 'still here');
  await reopened.close();
});

test('a bootstrap peer that does not answer gets a line, and the peer connects once it is up', async (t) => {
  const root = tempDir();
  // A port that nothing listens on (taken, then freed), for the first peer to come up on later.
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise((resolve) => probe.close(resolve));
  const address = `/ip4/127.0.0.1/tcp/${port}`;

  // (Before, it printed nothing at all: a wrong address looked like a quiet swarm.)
  const { peer: waiting } = await startPeer(path.join(root, 'b'), '--bootstrap', address);
  const [line] = await waiting.waitFor(new RegExp(`^bootstrap ${address} unreachable: .+\\(retrying; is that peer up, with the same --psk-file\\?\\)$`));
  t.log(line);
  const { peer: hub } = await startPeer(path.join(root, 'a'), '--listen', String(port));
  await waiting.waitFor(/^peer \S+ synced/);
  await hub.waitFor(/^peer \S+ synced/);
  t.is(waiting.lines.filter((l) => l.startsWith('bootstrap ')).length, 1, 'one line for the run of failed attempts, not one per retry');
  t.is(await waiting.stop(), 0);
  t.is(await hub.stop(), 0);
});

test('inspect piped into head stops quietly when head has read enough: no EPIPE stack trace, exit status 0', async (t) => {
  const dir = path.join(tempDir(), 'db');
  await filledTracker(dir, 3000); // ~400 kB of event lines, far more than a pipe holds
  const command = [process.execPath, '--import=tsx', 'bin/noatun.js', 'inspect', dir, '--app', APP, '--events', '3001']
    .map((word) => `'${word}'`)
    .join(' ');
  // pipefail: the status is noatun's, not head's.
  const { stdout, stderr } = await promisify(execFile)('bash', ['-o', 'pipefail', '-c', `${command} | head -n 3`], { cwd: REPO });
  t.is(stdout.split('\n').length, 4, stdout);
  t.is(stderr, '', 'nothing on stderr');
});

test('a database in use by a running peer is refused with DATABASE_LOCKED, by peer and by inspect', async (t) => {
  const db = path.join(tempDir(), 'db');
  const { peer } = await startPeer(db);
  const [second, inspected] = await Promise.all([noatunOnce('peer', '--app', APP, '--db', db), noatunOnce('inspect', db)]);
  t.is(second.code, 2, second.output);
  t.regex(second.output, /is a peer already running on it\? .*\[DATABASE_LOCKED\]/);
  t.is(inspected.code, 2, inspected.output);
  t.regex(inspected.output, /a peer or another inspect has it open; stop it first \(a peer started with --inspect <port> shows it live\) \[DATABASE_LOCKED\]/);
  t.is(await peer.stop(), 0, 'the running peer is unharmed');
});
