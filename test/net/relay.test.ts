/**
 * The relay (src/net/relay.ts) on its own, with a recording host: the author pushes to every
 * neighbour; a peer offers what is new to it to the others (not back to the sender or to those
 * that offered it); a neighbour asks the first peer that offered an id, the next one when it does
 * not send in time, and gives up after the last; a `WANT` is answered only for ids offered to that
 * neighbour, once each; an event the replicator could not take is not remembered; one neighbour
 * cannot fill the table of wanted ids.
 */
import test from 'ava';
import { decodeFrame, FrameType } from '../../src/net/frames.js';
import { MAX_WANTED_PER_NEIGHBOUR, Relay } from '../../src/net/relay.js';

/** A fake envelope: the version byte, a 16-byte id from `n`, then `size` bytes of body. */
function envelope(n: number, size = 40): Uint8Array {
  const bytes = new Uint8Array(17 + size);
  bytes[0] = 1;
  new DataView(bytes.buffer).setUint32(13, n);
  return bytes;
}
const idOf = (n: number) => envelope(n).subarray(1, 17);
const nOf = (id: Uint8Array) => new DataView(id.buffer, id.byteOffset, id.byteLength).getUint32(12);

const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls until `condition` holds (timers may run late on a busy machine); fails after 5 s. */
async function until(condition: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 5000;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await wait(2);
  }
}

/** A relay over a recording host: `log` lists every frame sent as `<to> <TYPE> <ids or event numbers>`. */
function setup(options: { wantMs?: number; frameBytes?: number; holds?: (n: number) => boolean } = {}) {
  const log: string[] = [];
  const relay = new Relay(
    {
      send: (peerId, bytes) => {
        const frame = decodeFrame(bytes);
        if (frame.type === FrameType.EVENT) log.push(`${peerId} EVENT ${nOf(frame.envelope.subarray(1, 17))}`);
        else if (frame.type === FrameType.EVENTS) log.push(`${peerId} EVENTS ${frame.envelopes.map((e) => nOf(e.subarray(1, 17))).join(',')}`);
        else if (frame.type === FrameType.IHAVE || frame.type === FrameType.WANT) {
          log.push(`${peerId} ${frame.type === FrameType.IHAVE ? 'IHAVE' : 'WANT'} ${frame.ids.map(nOf).join(',')}`);
        } else log.push(`${peerId} ${frame.type}`);
        return true;
      },
      holds: (id) => options.holds?.(nOf(id)) ?? false,
      sent: () => {},
    },
    { announceMs: 5, wantMs: options.wantMs ?? 40, frameBytes: options.frameBytes ?? 64 * 1024 },
  );
  for (const peer of ['a', 'b', 'c']) relay.addNeighbour(peer);
  return { relay, log };
}

/** Hands `envelopes` to the relay as from `from`, all taken; the numbers of the new ones. */
function receive(relay: Relay, from: string, envelopes: Uint8Array[]): number[] {
  const taken: number[] = [];
  relay.received(from, envelopes, (e) => {
    taken.push(nOf(e.subarray(1, 17)));
    return true;
  });
  return taken;
}

test('the author pushes its events to every neighbour at once, in one frame per neighbour', (t) => {
  const { relay, log } = setup();
  relay.publish([envelope(1), envelope(2)]);
  relay.publish([envelope(1)]);
  t.deepEqual(log, ['a EVENTS 1,2', 'b EVENTS 1,2', 'c EVENTS 1,2']);
  relay.stop();
});

test('an event new to us is offered to the other neighbours, not to its sender nor to those that offered it', async (t) => {
  const { relay, log } = setup();
  relay.offered('b', [idOf(7)]);
  t.deepEqual(receive(relay, 'a', [envelope(5), envelope(7)]), [5, 7]);
  t.deepEqual(receive(relay, 'c', [envelope(5)]), [], 'a copy is not news');
  t.is(relay.copies, 1);
  await until(() => log.length === 3, 'the offers and the want');
  t.deepEqual(log.sort(), ['b IHAVE 5', 'b WANT 7', 'c IHAVE 5,7'].sort());
  relay.stop();
});

test('an offered id is asked of the first that offered it, then of the next, then given up', async (t) => {
  const { relay, log } = setup({ wantMs: 30 });
  relay.offered('a', [idOf(9)]);
  relay.offered('b', [idOf(9)]);
  await until(() => log.length === 1, 'the first want');
  t.deepEqual(log, ['a WANT 9']);
  await until(() => log.length === 2, 'the second want');
  t.deepEqual(log, ['a WANT 9', 'b WANT 9']);
  t.is(relay.retries, 1);
  await wait(100);
  t.deepEqual(log, ['a WANT 9', 'b WANT 9'], 'nobody else offered it: given up (a session brings it)');
  // Offered again later: asked again.
  relay.offered('c', [idOf(9)]);
  await until(() => log.length === 3, 'the want of the new offer');
  t.deepEqual(log.at(-1), 'c WANT 9');
  relay.stop();
});

test('an id we hold is not asked for, and an answer that comes in time stops the retries', async (t) => {
  const { relay, log } = setup({ wantMs: 20, holds: (n) => n === 3 });
  relay.offered('a', [idOf(3), idOf(4)]);
  relay.offered('b', [idOf(4)]);
  await until(() => log.length === 1, 'the want');
  t.deepEqual(log, ['a WANT 4']);
  t.deepEqual(receive(relay, 'a', [envelope(4)]), [4]);
  await wait(50);
  t.false(log.includes('b WANT 4'));
  t.false(log.some((line) => line.startsWith('b IHAVE')), 'b offered 4 itself, and got no offer of it back');
  relay.stop();
});

test('WANT is answered only for ids offered to that neighbour, once each', async (t) => {
  const { relay, log } = setup();
  relay.publish([envelope(1)]);
  receive(relay, 'a', [envelope(2), envelope(3)]);
  await until(() => log.filter((line) => line.includes('IHAVE')).length === 2, 'the offers');
  log.length = 0;
  relay.wanted('a', [idOf(2)]);
  t.deepEqual(log, [], 'never offered to a (it sent them)');
  relay.wanted('b', [idOf(1), idOf(2), idOf(2), idOf(2), idOf(9)]);
  t.deepEqual(log, ['b EVENT 2'], 'our own event was pushed, not offered; 2 once; 9 unknown');
  relay.wanted('b', [idOf(2), idOf(3)]);
  t.deepEqual(log, ['b EVENT 2', 'b EVENT 3'], 'each offered id once');
  relay.wanted('stranger', [idOf(3)]);
  t.is(log.length, 2, 'not a neighbour');
  relay.stop();
});

test('an event the replicator could not take is not remembered: a later push of it is news', async (t) => {
  const { relay, log } = setup();
  t.is(
    relay.received('a', [envelope(4)], () => false),
    0,
  );
  t.deepEqual(receive(relay, 'b', [envelope(4)]), [4]);
  await until(() => log.length === 2, 'the offers');
  t.deepEqual(log.sort(), ['a IHAVE 4', 'c IHAVE 4']);
  relay.stop();
});

test('an envelope larger than a frame is neither pushed nor offered', async (t) => {
  const { relay, log } = setup({ frameBytes: 100 });
  relay.publish([envelope(1, 200)]);
  t.deepEqual(receive(relay, 'a', [envelope(2, 200)]), [2], 'still stored');
  await wait(20);
  t.deepEqual(log, []);
  relay.stop();
});

test('one neighbour cannot fill the table of wanted ids', async (t) => {
  const { relay, log } = setup();
  const ids = Array.from({ length: MAX_WANTED_PER_NEIGHBOUR + 10 }, (_, i) => idOf(1000 + i));
  relay.offered('a', ids.slice(0, 8000));
  relay.offered('b', [idOf(5)]);
  await until(() => log.includes('b WANT 5'), 'the want of b\'s offer');
  const asked = log.filter((line) => line.startsWith('a WANT')).flatMap((line) => line.split(' ')[2]!.split(','));
  t.is(asked.length, MAX_WANTED_PER_NEIGHBOUR);
  t.true(log.includes('b WANT 5'));
  relay.stop();
});
