/**
 * The issue tracker without a terminal: one command per input line, one answer per command. What
 * `main.ts` runs when its input is a pipe or a file, so the tracker can be scripted and tested as
 * a separate process:
 *
 *   add <heading>                      comment <issue> | <text>
 *   rename <issue> | <new heading>     reassign <issue> | <reporter>
 *   remove <issue>                     list    show <issue>
 *   sync      (waits for a peer, then until every connected peer holds the same events)
 *   quit      (also at the end of the input)
 *
 * Answers: `ok …`, `issue …` lines ended by `end`, or `error: …`. What the app would refuse or
 * make nothing of is an error and stores no event, as in the UI: a heading or new name that is
 * taken, an issue that does not exist (`apply` tolerates such events, since a peer may see a
 * removal before a comment, so storing one would only look like success).
 */
import * as readline from 'node:readline';
import type { Replicator } from 'noatun/net';
import { type IssueEvent, type IssueTrackerDb, issueDetails, listIssues } from './app.js';

/** How long `sync` waits for a first peer, and then for each peer to be in sync. */
const SYNC_TIMEOUT_MS = 30_000;

/** Splits `a | b` into its two parts (trimmed); the second is undefined without a `|`. */
function pair(rest: string): [string, string | undefined] {
  const bar = rest.indexOf('|');
  if (bar < 0) return [rest.trim(), undefined];
  return [rest.slice(0, bar).trim(), rest.slice(bar + 1).trim()];
}

/** The current name of the issue `id` names (itself, or the issue it is an old name of); `no issue …` if none. */
function existing(db: IssueTrackerDb, id: string): string {
  const details = issueDetails(db, id);
  if (details === undefined) throw new Error(`no issue ${id}`);
  return details.id;
}

/** Refuses a heading (new, or a new name for `current`) that another issue has, or had. */
function checkFree(db: IssueTrackerDb, heading: string, current?: string): void {
  const owner = issueDetails(db, heading);
  if (owner === undefined || owner.id === current) return;
  throw new Error(owner.id === heading ? `an issue named "${heading}" exists already` : `the name "${heading}" belongs to ${owner.id}`);
}

/** Waits until at least one peer is connected, then until every connected peer is in sync. */
async function syncAll(replicator: Replicator): Promise<number> {
  const signal = AbortSignal.timeout(SYNC_TIMEOUT_MS);
  while (replicator.peers().every((peer) => peer.state === 'disconnected' || peer.state === 'refused')) {
    if (signal.aborted) throw new Error('no peer connected');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const peers = replicator.peers().filter((peer) => peer.state !== 'disconnected' && peer.state !== 'refused');
  await Promise.all(peers.map((peer) => replicator.syncedWith(peer.peerId, { signal })));
  return peers.length;
}

/** Runs commands from `input` until `quit` or its end, answering on `output`. */
export async function runScript(
  db: IssueTrackerDb,
  user: string,
  replicator: Replicator | undefined,
  input: NodeJS.ReadableStream,
  output: NodeJS.WritableStream,
): Promise<void> {
  const say = (line: string) => output.write(`${line}\n`);
  const append = async (event: IssueEvent, done: string) => {
    await db.append(event);
    say(`ok ${done}`);
  };
  for await (const raw of readline.createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY })) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const space = line.indexOf(' ');
    const command = space < 0 ? line : line.slice(0, space);
    const rest = space < 0 ? '' : line.slice(space + 1);
    const [first, second] = pair(rest);
    try {
      switch (command) {
        case 'add': {
          const heading = rest.trim();
          if (heading === '') throw new Error('add <heading>');
          checkFree(db, heading);
          await append({ type: 'AddIssue', reporter: user, heading }, `added ${heading}`);
          break;
        }
        case 'comment':
          if (!second) throw new Error('comment <issue> | <text>');
          existing(db, first);
          await append({ type: 'AppendText', id: first, reporter: user, text: second }, `commented on ${first}`);
          break;
        case 'rename': {
          if (!second) throw new Error('rename <issue> | <new heading>');
          const current = existing(db, first);
          if (second === current) throw new Error(`${current} has that name already`);
          // One of the issue's own old names may be taken back.
          checkFree(db, second, current);
          await append({ type: 'RenameIssue', oldId: first, newId: second }, `renamed ${first} to ${second}`);
          break;
        }
        case 'reassign':
          if (!second) throw new Error('reassign <issue> | <reporter>');
          existing(db, first);
          await append({ type: 'ReassignIssue', id: first, newReporter: second }, `reassigned ${first} to ${second}`);
          break;
        case 'remove':
          if (first === '') throw new Error('remove <issue>');
          // (An old name removes the issue it leads to: say which.)
          await append({ type: 'RemoveIssue', id: first }, `removed ${existing(db, first)}`);
          break;
        case 'list':
          for (const row of listIssues(db)) say(`issue ${row.id} | ${row.reporter} | ${row.texts} texts`);
          say('end');
          break;
        case 'show': {
          const details = issueDetails(db, first);
          if (details === undefined) throw new Error(`no issue ${first}`);
          say(`issue ${details.id} | ${details.reporter} | ${details.texts} texts`);
          for (const text of details.description) say(`text ${text.addedBy}: ${text.text}`);
          if (details.aliases.length > 0) say(`aliases ${details.aliases.join(', ')}`);
          say('end');
          break;
        }
        case 'sync':
          if (replicator === undefined) throw new Error('not replicating: start with --listen or --bootstrap');
          say(`ok synced with ${await syncAll(replicator)} peer(s)`);
          break;
        case 'quit':
          return;
        default:
          throw new Error(`unknown command ${JSON.stringify(command)} (add, comment, rename, reassign, remove, list, show, sync, quit)`);
      }
    } catch (error) {
      say(`error: ${(error as Error).message}`);
    }
  }
}
