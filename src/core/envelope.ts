/**
 * The envelope: an event as stored and sent. One canonical binary form, used on disk and on the
 * wire (all integers big-endian):
 *
 * | field         | bytes                         |
 * |---------------|-------------------------------|
 * | version       | 1 (= 1)                       |
 * | id            | 16                            |
 * | salt          | 8                             |
 * | parent count  | 2                             |
 * | parents       | 16 each, strictly increasing, each < id |
 * | payload size  | 4                             |
 * | payload       | payload size                  |
 *
 * Decoding checks every bound and recomputes the id's content hash, so a forged or damaged
 * envelope never reaches the engine.
 */
import { randomBytes } from 'node:crypto';
import { ErrorCode, NoatunError } from '../errors.js';
import { verifyIds } from '../view/mapped-file.js';
import { type IdMinter, MessageId, verifyId } from './message-id.js';

/** The format version this code writes and reads. */
export const ENVELOPE_VERSION = 1;
/** Bytes of the salt. */
export const SALT_BYTES = 8;
const FIXED_BYTES = 1 + 16 + SALT_BYTES + 2 + 4;

/** Limits applied when decoding untrusted envelopes. */
export interface EnvelopeLimits {
  /**
   * Most parents an envelope may list.
   * @default 256
   */
  readonly maxParents: number;
  /**
   * Largest payload in bytes.
   * @default 16 MiB
   */
  readonly maxPayloadBytes: number;
}

/** The default {@link EnvelopeLimits}. */
export const DEFAULT_ENVELOPE_LIMITS: EnvelopeLimits = { maxParents: 256, maxPayloadBytes: 16 * 2 ** 20 };

/** An event with its id, salt and parents. */
export interface Envelope {
  readonly id: MessageId;
  readonly salt: Uint8Array;
  /** The update heads when the event was made (strictly increasing, all before `id`). */
  readonly parents: readonly MessageId[];
  /** The event encoded by the database's codec. */
  readonly payload: Uint8Array;
  /**
   * The envelope's canonical encoding, when it was decoded from it (a view into the bytes it was
   * parsed from; the other parts are views into the same bytes). The log stores these bytes as they
   * are instead of encoding the envelope again. Absent on an envelope made here or edited
   * ({@link withParents}).
   */
  readonly bytes?: Uint8Array;
}

/** A malformed envelope or frame; `offset` is where decoding stopped. */
export class BadFrameError extends NoatunError {
  readonly offset: number;

  constructor(reason: string, offset: number) {
    super(ErrorCode.BAD_FRAME, `malformed envelope: ${reason} (at byte ${offset})`);
    this.offset = offset;
  }
}

/** Bytes the encoded form of `envelope` takes. */
export function envelopeSize(envelope: Envelope): number {
  return FIXED_BYTES + envelope.parents.length * 16 + envelope.payload.length;
}

/**
 * Encodes an envelope into its canonical binary form (one allocation). With `prefix`, the result
 * is a view that many bytes into a larger buffer, so a caller can fill a header in front of it
 * without copying (the log stores the ordinal there).
 */
export function encodeEnvelope(envelope: Envelope, prefix = 0): Uint8Array {
  const buffer = new Uint8Array(prefix + envelopeSize(envelope));
  encodeEnvelopeInto(envelope, buffer, prefix);
  return prefix === 0 ? buffer : buffer.subarray(prefix);
}

/**
 * Encodes an envelope into `target` at `at` (which must have {@link envelopeSize} bytes of room);
 * returns the offset just past it. A batch encodes all its envelopes into one buffer this way.
 */
export function encodeEnvelopeInto(envelope: Envelope, target: Uint8Array, at: number): number {
  const parents = envelope.parents;
  const payload = envelope.payload;
  const buffer = target;
  buffer[at++] = ENVELOPE_VERSION;
  buffer.set(envelope.id.bytes, at);
  at += 16;
  buffer.set(envelope.salt, at);
  at += SALT_BYTES;
  buffer[at++] = parents.length >>> 8;
  buffer[at++] = parents.length & 0xff;
  for (let i = 0; i < parents.length; i++) {
    buffer.set(parents[i]!.bytes, at);
    at += 16;
  }
  const size = payload.length;
  buffer[at++] = size >>> 24;
  buffer[at++] = (size >>> 16) & 0xff;
  buffer[at++] = (size >>> 8) & 0xff;
  buffer[at++] = size & 0xff;
  buffer.set(payload, at);
  return at + size;
}

/**
 * The same envelope in memory of its own, exactly its size: for an envelope kept for long (parked,
 * queued), so that it does not keep alive the pooled memory it was decoded into along with it.
 */
export function detachEnvelope(envelope: Envelope): Envelope {
  return parse(encodeEnvelope(envelope), DEFAULT_ENVELOPE_LIMITS, false);
}

/** The same envelope with another parent list (pruning edits parents; the id stays valid). */
export function withParents(envelope: Envelope, parents: readonly MessageId[]): Envelope {
  return { id: envelope.id, salt: envelope.salt, parents, payload: envelope.payload };
}

/**
 * A copy of `input` in memory of its own: small ones in Node's shared Buffer pool (an ArrayBuffer
 * per envelope, which `slice` makes, costs an allocation outside the heap and a finalizer each),
 * seen through a plain Uint8Array, whose views are cheaper to make than a Buffer's.
 */
export function ownCopy(input: Uint8Array): Uint8Array {
  const copy = Buffer.allocUnsafe(input.length);
  copy.set(input);
  return new Uint8Array(copy.buffer, copy.byteOffset, copy.byteLength);
}

/**
 * Parses an envelope. The parts are views into `bytes`, which the caller owns and never changes:
 * bytes from outside are copied first (the sender may reuse or change its buffer), the engine's
 * own (its log reads are copies already) are not. `checked` validates the parents' order too.
 */
function parse(bytes: Uint8Array, limits: EnvelopeLimits, checked: boolean): Envelope {
  if (!(bytes instanceof Uint8Array)) throw new BadFrameError('not a byte array', 0);
  if (bytes.length < FIXED_BYTES) throw new BadFrameError(`${bytes.length} bytes is too short`, 0);
  if (bytes[0] !== ENVELOPE_VERSION) throw new BadFrameError(`unknown version ${bytes[0]}`, 0);
  let at = 1;
  const id = MessageId.adopt(bytes.subarray(at, at + 16));
  at += 16;
  const salt = bytes.subarray(at, at + SALT_BYTES);
  at += SALT_BYTES;
  const count = (bytes[at]! << 8) | bytes[at + 1]!;
  if (count > limits.maxParents) throw new BadFrameError(`${count} parents (limit ${limits.maxParents})`, at);
  at += 2;
  if (bytes.length < at + count * 16 + 4) throw new BadFrameError('parents run past the end', at);
  const parents = new Array<MessageId>(count);
  for (let i = 0; i < count; i++) {
    const parent = MessageId.adopt(bytes.subarray(at, at + 16));
    if (checked) {
      if (i > 0 && MessageId.compare(parents[i - 1]!, parent) >= 0) {
        throw new BadFrameError('parents are not strictly increasing', at);
      }
      if (MessageId.compare(parent, id) >= 0) throw new BadFrameError('a parent is not older than its child', at);
    }
    parents[i] = parent;
    at += 16;
  }
  const size = ((bytes[at]! << 24) >>> 0) + (bytes[at + 1]! << 16) + (bytes[at + 2]! << 8) + bytes[at + 3]!;
  if (size > limits.maxPayloadBytes) throw new BadFrameError(`payload of ${size} bytes (limit ${limits.maxPayloadBytes})`, at);
  at += 4;
  if (bytes.length !== at + size) {
    throw new BadFrameError(bytes.length < at + size ? 'payload runs past the end' : 'trailing bytes', at);
  }
  // A Buffer over the same bytes: `apply` decodes payloads as Buffers (see the projector), so one
  // view made here saves making a second one there for every event received.
  const payload = Buffer.from(bytes.buffer, bytes.byteOffset + at, size);
  return { id, salt, parents, payload, bytes };
}

/**
 * Decodes and validates an untrusted envelope: bounds, limits, parent order, and the id's content
 * hash. Throws `BAD_FRAME` for malformed bytes and `FORGED_ID` when the id does not match.
 */
export function decodeEnvelope(bytes: Uint8Array, limits: EnvelopeLimits = DEFAULT_ENVELOPE_LIMITS): Envelope {
  if (!(bytes instanceof Uint8Array)) throw new BadFrameError('not a byte array', 0);
  return verified(parse(ownCopy(bytes), limits, true));
}

/**
 * {@link decodeEnvelope} for a batch: the envelopes are copied into one buffer together, and their
 * parts are views into it. (A copy of each envelope of its own, a Buffer from Node's pool and a
 * Uint8Array over it, was 8% of what the receiver of an initial copy allocated per event.) Whoever
 * keeps one of them for long detaches it first ({@link detachEnvelope}), so as not to hold the
 * whole batch. The ids that `apply` and listeners see are views into it too: an app that keeps
 * one keeps its batch's buffer (a frame's worth, 256 KiB by default), where it kept an 8 KiB slab
 * of Node's pool before.
 */
export function decodeEnvelopes(batch: Iterable<Uint8Array>, limits: EnvelopeLimits = DEFAULT_ENVELOPE_LIMITS): Envelope[] {
  // An array (what the replicator passes) is read by index: a for-of runs the iterator protocol,
  // an object a step, until the function is optimized, and a peer's batches are few and long.
  const inputs: Uint8Array[] = Array.isArray(batch) ? (batch as Uint8Array[]) : [...batch];
  let total = 0;
  for (let i = 0; i < inputs.length; i++) {
    const bytes = inputs[i];
    if (!(bytes instanceof Uint8Array)) throw new BadFrameError('not a byte array', 0);
    total += bytes.length;
  }
  const pooled = Buffer.allocUnsafe(total);
  const all = new Uint8Array(pooled.buffer, pooled.byteOffset, total);
  const decoded = new Array<Envelope>(inputs.length);
  // Where each envelope and its payload lie in `all`, for checking every id in one native call.
  const table = new Uint32Array(inputs.length * 3);
  let at = 0;
  for (let i = 0; i < inputs.length; i++) {
    const input = inputs[i]!;
    all.set(input, at);
    const envelope = parse(all.subarray(at, at + input.length), limits, true);
    decoded[i] = envelope;
    table[3 * i] = at;
    table[3 * i + 1] = envelope.payload.byteOffset - all.byteOffset;
    table[3 * i + 2] = envelope.payload.length;
    at += input.length;
  }
  const wrong = verifyIds(all, table, inputs.length);
  if (wrong === undefined) {
    for (const envelope of decoded) verified(envelope);
  } else if (wrong >= 0) {
    verified(decoded[wrong]!); // throws FORGED_ID, naming it
    throw new NoatunError(ErrorCode.INTERNAL, `the native check refused envelope ${decoded[wrong]!.id}, the JavaScript one did not`);
  }
  return decoded;
}

/** `envelope` if its id is its content's hash; throws `FORGED_ID` otherwise. */
function verified(envelope: Envelope): Envelope {
  if (!verifyId(envelope.id, envelope.salt, envelope.payload)) {
    throw new NoatunError(ErrorCode.FORGED_ID, `envelope ${envelope.id} does not match its content hash`);
  }
  return envelope;
}

/**
 * Decodes an envelope the engine stored itself (validated when it was stored): bounds are still
 * checked, the hash is not recomputed.
 */
export function readEnvelopeUnchecked(bytes: Uint8Array): Envelope {
  return parse(bytes, DEFAULT_ENVELOPE_LIMITS, false);
}

/**
 * Why an envelope the engine stored itself no longer is what it stored (its bytes do not parse,
 * or no longer match their id: damaged on disk), or undefined when it is intact. For what a peer
 * is about to be sent: that peer would refuse it as forged, and blame us.
 */
export function storedEnvelopeDamage(bytes: Uint8Array): NoatunError | undefined {
  try {
    verified(parse(bytes, DEFAULT_ENVELOPE_LIMITS, false));
    return undefined;
  } catch (error) {
    return error instanceof NoatunError ? error : new NoatunError(ErrorCode.CORRUPT_FILE, String(error));
  }
}

/**
 * {@link storedEnvelopeDamage} for the envelopes of one outgoing batch, lying back to back in
 * `all` from `starts[i]` for `lengths[i]` bytes: the index of the first damaged one, or -1. The
 * ids are checked in one native call (the receiver's check, see {@link decodeEnvelopes}); only
 * what that call cannot tell is looked at envelope by envelope.
 */
export function firstDamagedEnvelope(all: Uint8Array, starts: readonly number[], lengths: readonly number[]): number {
  const count = starts.length;
  const table = new Uint32Array(count * 3);
  for (let i = 0; i < count; i++) {
    const at = starts[i]!;
    const length = lengths[i]!;
    // The payload's place, read as parse() does; what does not add up is left to it.
    if (length < FIXED_BYTES || all[at] !== ENVELOPE_VERSION) return i;
    const parents = (all[at + 25]! << 8) | all[at + 26]!;
    const sizeAt = at + 27 + parents * 16;
    if (sizeAt + 4 > at + length) return i;
    const size = ((all[sizeAt]! << 24) >>> 0) + (all[sizeAt + 1]! << 16) + (all[sizeAt + 2]! << 8) + all[sizeAt + 3]!;
    if (sizeAt + 4 + size !== at + length) return i;
    table[3 * i] = at;
    table[3 * i + 1] = sizeAt + 4;
    table[3 * i + 2] = size;
  }
  const wrong = verifyIds(all, table, count);
  if (wrong !== undefined) return wrong;
  for (let i = 0; i < count; i++) {
    if (storedEnvelopeDamage(all.subarray(starts[i]!, starts[i]! + lengths[i]!)) !== undefined) return i;
  }
  return -1;
}

/** The id of an encoded envelope, read without decoding the rest. */
export function envelopeIdOf(bytes: Uint8Array): MessageId {
  if (bytes.length < FIXED_BYTES || bytes[0] !== ENVELOPE_VERSION) throw new BadFrameError('not an envelope', 0);
  return MessageId.fromBytes(bytes.subarray(1, 17));
}

/** Options of {@link createEnvelope}. */
export interface CreateEnvelopeOptions {
  readonly timestamp: number;
  readonly payload: Uint8Array;
  /** Parents; sorted and deduplicated here. Each must be older than the new id. */
  readonly parents: readonly MessageId[];
  readonly minter: IdMinter;
  /** Exact (timestamp, sequence) to mint at, e.g. `other.predecessor()`. */
  readonly at?: { readonly timestamp: number; readonly sequence: number };
}

// Salts come from a pool refilled in bulk: one crypto call per event cost a quarter of the
// append time in the warehouse benchmark.
const SALT_POOL_BYTES = 8192;
let saltPool = randomBytes(SALT_POOL_BYTES);
let saltAt = 0;

function nextSalt(): Uint8Array {
  if (saltAt + SALT_BYTES > SALT_POOL_BYTES) {
    saltPool = randomBytes(SALT_POOL_BYTES);
    saltAt = 0;
  }
  const salt = saltPool.subarray(saltAt, saltAt + SALT_BYTES);
  saltAt += SALT_BYTES;
  return salt;
}

/** Makes a new envelope: random salt, minted id, sorted parents. */
export function createEnvelope(options: CreateEnvelopeOptions): Envelope {
  const at = options.at ?? options.minter.next(options.timestamp);
  return mintEnvelope(options.minter, at.timestamp, at.sequence, options.payload, options.parents);
}

/**
 * {@link createEnvelope} at an exact (timestamp, sequence), its parts as arguments: the database
 * makes every local event this way, and an options object (and the minter's planned time as one)
 * cost an allocation each.
 */
export function mintEnvelope(minter: IdMinter, timestamp: number, sequence: number, payload: Uint8Array, parents: readonly MessageId[]): Envelope {
  const salt = nextSalt();
  const id = minter.mintAt(timestamp, sequence, salt, payload);
  const sorted = parents.length <= 1 ? parents : [...parents].sort(MessageId.compare).filter((p, i, all) => i === 0 || !p.equals(all[i - 1]!));
  for (let i = 0; i < sorted.length; i++) {
    if (MessageId.compare(sorted[i]!, id) >= 0) {
      throw new NoatunError(ErrorCode.INTERNAL, `parent ${sorted[i]} is not older than the new event ${id}`);
    }
  }
  return { id, salt, parents: sorted, payload };
}
