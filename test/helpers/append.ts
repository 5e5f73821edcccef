/**
 * Appending from randomized tests: an event whose own apply throws is refused (`APPLY_FAILED`,
 * nothing stored), which random workloads produce on purpose. These helpers turn that refusal
 * into `undefined` and let every other error through.
 */
import { type AppendOptions, type MessageId, NoatunError, type Transaction } from '../../src/index.js';

interface Appender<E> {
  append(event: E, options?: AppendOptions): Promise<MessageId>;
  transaction(fn: (tx: Transaction<E>) => void): Promise<MessageId[]>;
}

function refused(error: unknown): boolean {
  return error instanceof NoatunError && error.code === 'APPLY_FAILED';
}

/** Appends `event`; undefined when its apply threw and it was refused. */
export async function appendOrRefused<E>(db: Appender<E>, event: E, options?: AppendOptions): Promise<MessageId | undefined> {
  try {
    return await db.append(event, options);
  } catch (error) {
    if (refused(error)) return undefined;
    throw error;
  }
}

/** Runs a transaction; an empty list when one of its applies threw and it was refused. */
export async function transactionOrRefused<E>(db: Appender<E>, fn: (tx: Transaction<E>) => void): Promise<MessageId[]> {
  try {
    return await db.transaction(fn);
  } catch (error) {
    if (refused(error)) return [];
    throw error;
  }
}
