/**
 * Application callbacks that must be synchronous (`apply`, a transaction's callback), and what
 * they return when they are not.
 */

/**
 * Whether what an application callback returned (an `apply`'s, a transaction callback's) is a
 * promise or another thenable: refused, since those callbacks must be synchronous. A native
 * promise's rejection is marked handled: the call already failed with a clear error, and the
 * rejection left alone ended the process as an unhandled one (or, with an lmdb-js commit
 * waiting for this thread, hung it). Another thenable's `then` is not called.
 */
export function isAsyncResult(result: unknown): boolean {
  if (result === null || typeof result !== 'object' || typeof (result as { then?: unknown }).then !== 'function') return false;
  if (result instanceof Promise) result.catch(() => {});
  return true;
}
