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
 * Answers: `ok …`, `issue …` lines ended by `end`, or `error: …`.
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
        case 'add':
          if (rest.trim() === '') throw new Error('add <heading>');
          await append({ type: 'AddIssue', reporter: user, heading: rest.trim() }, `added ${rest.trim()}`);
          break;
        case 'comment':
          if (second === undefined) throw new Error('comment <issue> | <text>');
          await append({ type: 'AppendText', id: first, reporter: user, text: second }, `commented on ${first}`);
          break;
        case 'rename':
          if (second === undefined) throw new Error('rename <issue> | <new heading>');
          await append({ type: 'RenameIssue', oldId: first, newId: second }, `renamed ${first} to ${second}`);
          break;
        case 'reassign':
          if (second === undefined) throw new Error('reassign <issue> | <reporter>');
          await append({ type: 'ReassignIssue', id: first, newReporter: second }, `reassigned ${first} to ${second}`);
          break;
        case 'remove':
          await append({ type: 'RemoveIssue', id: first }, `removed ${first}`);
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
