/**
 * Whose fault an error is. Replication meets three kinds, handled differently:
 *
 * - **peer**: the peer broke the protocol or a limit (malformed or forged frames, too many
 *   sessions, a reconciliation that does not converge). It is refused for a while, and nothing of
 *   the offending batch is stored.
 * - **link**: the session ended without anyone at fault (connection lost, timeout, a stop, our
 *   own send failing). Nobody is refused; the peer is tried again after a backoff.
 * - **local**: our own failure (the database refused to store for its own reasons, a bug). It is
 *   reported (the replicator's `failure` event and `peers()`), never blamed on the peer, and
 *   never lets the process exit.
 */
import { ErrorCode, NoatunError } from '../errors.js';

/** Whose fault an error is; see the module comment. */
export type Fault = 'peer' | 'link' | 'local';

/** A peer went over a limit of the protocol (code `LIMIT_EXCEEDED`): a peer fault. */
export class LimitError extends NoatunError {
  constructor(message: string) {
    super(ErrorCode.LIMIT_EXCEEDED, message);
  }
}

/** A session waited too long, or ran past its deadline (code `TIMEOUT`): nobody's fault. */
export class SessionTimeoutError extends NoatunError {
  constructor(message: string) {
    super(ErrorCode.TIMEOUT, message);
  }
}

/** Classifies an error met while replicating with a peer. */
export function faultOf(error: unknown): Fault {
  if (!(error instanceof NoatunError)) return 'local';
  switch (error.code) {
    case ErrorCode.BAD_FRAME:
    case ErrorCode.FORGED_ID:
    case ErrorCode.LIMIT_EXCEEDED:
      return 'peer';
    case ErrorCode.CLOSED:
    case ErrorCode.TIMEOUT:
      return 'link';
    default:
      return 'local';
  }
}

/** The error as a `NoatunError` for reports (non-Noatun errors become `INTERNAL`, cause kept). */
export function asNoatunError(error: unknown): NoatunError {
  if (error instanceof NoatunError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new NoatunError(ErrorCode.INTERNAL, message, { cause: error });
}

/** A short text for `peers()` and events. */
export function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
