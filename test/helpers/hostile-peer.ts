/**
 * A hostile peer for the simulator: a link with no database behind it that sends what the fuzz
 * tests generate — random bytes, mutated and truncated valid frames, statuses with out-of-range or
 * far-future cutoffs, forged envelopes — by gossip or straight to its neighbours (direct frames),
 * floods honest peers with duplicates of real events, offers ids it never sends and asks for ids,
 * and opens sessions that it then leaves stalled or fills with garbage. Honest peers must refuse it,
 * stay up, and still converge with each other.
 */
import { FINGERPRINT_BYTES } from '../../src/net/fingerprint-index.js';
import { bytesFrame, eventsFrame, FrameType, idsFrame, peerStatusFrame, type Status, statusFrame, wantFrame } from '../../src/net/frames.js';
import type { Link, Session } from '../../src/net/link.js';

function status(fields: Partial<Status>): Status {
  return {
    cutoffTime: 0,
    cutoffHash: new Uint8Array(16),
    previousTime: 0,
    previousHash: new Uint8Array(16),
    count: 0,
    fingerprint: new Uint8Array(FINGERPRINT_BYTES),
    ...fields,
  };
}

function randomBytes(random: () => number, max: number): Uint8Array {
  const out = new Uint8Array(Math.floor(random() * max));
  for (let i = 0; i < out.length; i++) out[i] = Math.floor(random() * 256);
  return out;
}

/** What the hostile peer did, by kind (for the simulator's summary). */
export type HostileAct = 'garbage' | 'mutated' | 'bad status' | 'future status' | 'forged' | 'flood' | 'offers' | 'stall' | 'session garbage';

/** The hostile peer (see the module comment). */
export class HostilePeer {
  readonly #link: Link;
  readonly #random: () => number;
  readonly #stalled: Session[] = [];

  constructor(link: Link, random: () => number) {
    this.#link = link;
    this.#random = random;
  }

  /**
   * Does one hostile thing to a random target of `targets`, using `events` (real envelopes, wire
   * form) for floods and forgeries; returns what it did.
   */
  async act(targets: readonly string[], events: readonly Uint8Array[]): Promise<HostileAct> {
    const random = this.#random;
    const link = this.#link;
    const r = random();
    // By gossip, or straight to every neighbour (the relay's and the neighbour statuses' channel).
    const direct = random() < 0.5;
    const publish = (frame: Uint8Array) => {
      try {
        if (direct) for (const target of targets) link.sendDirect(target, frame);
        else link.publish(frame);
      } catch {
        // Refused or stopped: the honest peers have had enough of us.
      }
    };
    if (r < 0.15) {
      publish(randomBytes(random, 300));
      return 'garbage';
    }
    if (r < 0.3) {
      const valid = [
        statusFrame(FrameType.STATUS, status({ count: 3 })),
        peerStatusFrame({ origin: link.peerId, sequence: 1, relay: random() < 0.5, replyWanted: true, status: status({ count: 3 }) }),
        bytesFrame(FrameType.EVENT, events.length === 0 ? new Uint8Array(40) : events[Math.floor(random() * events.length)]!),
        wantFrame([new Uint8Array(16)]),
        idsFrame(FrameType.IHAVE, [new Uint8Array(16), new Uint8Array(16)]),
        eventsFrame([new Uint8Array(30)]),
      ];
      const frame = Uint8Array.from(valid[Math.floor(random() * valid.length)]!);
      frame[Math.floor(random() * frame.length)]! ^= 1 + Math.floor(random() * 255);
      publish(random() < 0.5 ? frame : frame.subarray(0, Math.floor(random() * frame.length)));
      return 'mutated';
    }
    if (r < 0.4) {
      // A cutoff no id can carry (2^48 and more), or a previous cutoff after the cutoff.
      const bad = status(random() < 0.5 ? { cutoffTime: 2 ** 48 + Math.floor(random() * 1000), previousTime: 2 ** 48 } : { cutoffTime: 60_000, previousTime: 120_000 });
      publish(peerStatusFrame({ origin: link.peerId, sequence: Math.floor(random() * 2 ** 32), relay: random() < 0.5, replyWanted: random() < 0.5, status: bad }));
      return 'bad status';
    }
    if (r < 0.5) {
      // A well-formed status from a clock a year ahead.
      const year = 365 * 86_400_000;
      const cutoffTime = Math.floor((Date.UTC(2021, 0, 1) + year * random()) / 60_000) * 60_000;
      // For neighbours only, or relayed in the name of one of the honest peers (gossip is unsigned).
      const origin = random() < 0.5 ? link.peerId : (targets[Math.floor(random() * targets.length)] ?? link.peerId);
      const relay = origin !== link.peerId || random() < 0.5;
      publish(peerStatusFrame({ origin, sequence: Math.floor(random() * 2 ** 32), relay, replyWanted: random() < 0.5, status: status({ cutoffTime, previousTime: cutoffTime - 60_000, count: 5 }) }));
      return 'future status';
    }
    if (r < 0.6 && events.length !== 0) {
      // A real envelope with its payload changed: its id no longer matches.
      // (A copy: `slice` of a Buffer would be a view of the real event.)
      const forged = Uint8Array.from(events[Math.floor(random() * events.length)]!);
      forged[forged.length - 1]! ^= 0xff;
      publish(bytesFrame(FrameType.EVENT, forged));
      return 'forged';
    }
    if (r < 0.68) {
      // Offers of ids it never sends (honest peers ask, wait, and give up), and asks for real
      // and made-up ids.
      const made = Array.from({ length: 1 + Math.floor(random() * 3000) }, () => Uint8Array.from({ length: 16 }, () => Math.floor(random() * 256)));
      for (const target of targets) {
        link.sendDirect(target, idsFrame(FrameType.IHAVE, made));
        if (events.length !== 0) link.sendDirect(target, wantFrame([...made.slice(0, 10), ...events.slice(0, 50).map((e) => e.subarray(1, 17))]));
      }
      return 'offers';
    }
    if (r < 0.75 && events.length !== 0) {
      // Duplicates of real events, many times over.
      for (let i = 0; i < 50; i++) publish(bytesFrame(FrameType.EVENT, events[Math.floor(random() * events.length)]!));
      return 'flood';
    }
    const target = targets[Math.floor(random() * targets.length)];
    if (target === undefined) return 'garbage';
    let session: Session;
    try {
      session = await link.openSession(target);
    } catch {
      return r < 0.9 ? 'stall' : 'session garbage';
    }
    if (r < 0.9) {
      // HELLO, then silence: the session must be let go by the peer's idle time.
      void session.send(statusFrame(FrameType.HELLO, status({}))).catch(() => {});
      this.#stalled.push(session);
      if (this.#stalled.length > 8) this.#stalled.shift()!.abort(new Error('done stalling'));
      return 'stall';
    }
    void session.send(randomBytes(random, 200)).catch(() => {});
    void session.send(randomBytes(random, 200)).catch(() => {});
    return 'session garbage';
  }

  /** Ends what it left open and leaves the network. */
  async stop(): Promise<void> {
    for (const session of this.#stalled) session.abort(new Error('stopped'));
    this.#stalled.length = 0;
    await this.#link.stop().catch(() => {});
  }
}
