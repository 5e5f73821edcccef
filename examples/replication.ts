/**
 * The smallest complete replication program: two databases, each with a replicator on 127.0.0.1,
 * the second bootstrapped to the first. Both write, both sync, and both views end up equal.
 *
 * Run: npx tsx examples/replication.ts [directory]   (default: a temporary directory, removed at the end)
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Database, s } from 'noatun';
import { Replicator } from 'noatun/net';

const Board = s.object({ notes: s.list(s.string()) });
type Note = { author: string; text: string };

const given = process.argv[2];
const dir = given ?? fs.mkdtempSync(path.join(os.tmpdir(), 'noatun-replication-'));

/** Every peer of a swarm must open its database with the same schema and apply. */
function open(name: string): Promise<Database<Note, typeof Board>> {
  return Database.open<Note, typeof Board>({
    path: path.join(dir, name),
    root: Board,
    checkDeterminism: true, // refuses an apply that is not deterministic, while developing
    apply(event, root) {
      root.notes.push(`${event.author}: ${event.text}`);
    },
  });
}

/** Resolves once `node` is connected to `peerId` (at once if it already is). */
function connected(node: Replicator, peerId: string): Promise<void> {
  return new Promise((resolve) => {
    const check = () => {
      if (!node.peers().some((peer) => peer.peerId === peerId && peer.state !== 'disconnected')) return;
      node.removeEventListener('peer:connect', check);
      resolve();
    };
    node.addEventListener('peer:connect', check);
    check();
  });
}

const dbA = await open('a');
const dbB = await open('b');
const a = await Replicator.start(dbA, { listen: ['/ip4/127.0.0.1/tcp/0'], topic: 'replication-example' });
const b = await Replicator.start(dbB, {
  listen: ['/ip4/127.0.0.1/tcp/0'],
  bootstrap: [a.multiaddrs[0]!], // a's address with its peer id, as a real peer would be given it
  topic: 'replication-example',
});
console.log(`a listens on ${a.multiaddrs[0]}`);

await dbA.append({ author: 'ann', text: 'written on a' });
await dbB.append({ author: 'bob', text: 'written on b' });

// Either event may have been gossiped already; syncedWith waits until nothing is missing either way.
await connected(b, a.peerId);
await b.syncedWith(a.peerId);
await a.syncedWith(b.peerId);

const viewA = dbA.read((root) => root.notes.export());
const viewB = dbB.read((root) => root.notes.export());
console.log('a:', viewA.join(' | '));
console.log('b:', viewB.join(' | '));
console.log('views equal:', JSON.stringify(viewA) === JSON.stringify(viewB));

await b.stop();
await a.stop();
await dbA.close();
await dbB.close();
if (given === undefined) fs.rmSync(dir, { recursive: true, force: true });
