// The consumer test's ESM program (see scripts/consumer-test.ts): plain JavaScript run by plain
// `node` in a project that installed the packed tarball. It opens two databases, appends, reads,
// and syncs two Replicators over 127.0.0.1, checking each step, and prints `consumer ok` last.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Database, MessageId, NoatunError, s } from 'noatun';
import { Replicator } from 'noatun/net';

// The package resolves to its compiled JavaScript, not to TypeScript sources.
for (const name of ['noatun', 'noatun/net']) {
  const file = fileURLToPath(import.meta.resolve(name));
  assert.match(file, /[\\/]node_modules[\\/]noatun[\\/]dist[\\/].*\.js$/, `${name} resolves to ${file}`);
}

const Board = s.object({ count: s.u32(), notes: s.list(s.string()) });
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'noatun-consumer-'));

function open(name) {
  return Database.open({
    path: path.join(dir, name),
    root: Board,
    apply(event, root) {
      root.count += 1;
      root.notes.push(`${event.author}: ${event.text}`);
    },
  });
}

try {
  const dbA = await open('a');
  const dbB = await open('b');
  const id = await dbA.append({ author: 'ann', text: 'written on a' });
  assert.ok(id instanceof MessageId);
  assert.equal(dbA.read((root) => root.count), 1);
  assert.deepEqual(dbA.read((root) => root.notes.export()), ['ann: written on a']);
  assert.throws(() => MessageId.parse('xyz'), (error) => error instanceof NoatunError && error.code === 'INVALID_ARGUMENT');

  const a = await Replicator.start(dbA, { listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [], topic: 'consumer' });
  const b = await Replicator.start(dbB, { listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [a.multiaddrs[0]], topic: 'consumer' });
  await dbB.append({ author: 'bob', text: 'written on b' });
  // Resolves once b is connected to a: syncedWith needs a peer to compare with.
  await new Promise((resolve) => {
    const check = () => {
      if (!b.peers().some((peer) => peer.peerId === a.peerId && peer.state !== 'disconnected')) return;
      b.removeEventListener('peer:connect', check);
      resolve();
    };
    b.addEventListener('peer:connect', check);
    check();
  });
  const signal = AbortSignal.timeout(60_000);
  await b.syncedWith(a.peerId, { signal });
  await a.syncedWith(b.peerId, { signal });

  const notesA = dbA.read((root) => root.notes.export());
  const notesB = dbB.read((root) => root.notes.export());
  assert.deepEqual(notesA, notesB);
  assert.equal(notesA.length, 2);
  assert.equal(dbB.read((root) => root.count), 2);

  await b.stop();
  await a.stop();
  await dbA.close();
  await dbB.close();
  console.log(`consumer ok: ${notesA.join(' | ')}`);
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
