/**
 * Noatun: an embedded, multi-master, event-sourced database with a memory-mapped typed view.
 *
 * @example
 * import { Database, s } from 'noatun';
 * const Counter = s.object({ total: s.u32() });
 * const db = await Database.open<{ add: number }, typeof Counter>({
 *   path: 'counter-db',
 *   root: Counter,
 *   apply(event, root) { root.total += event.add; },
 * });
 * await db.append({ add: 2 });
 * db.read((root) => root.total); // 2
 *
 * @module noatun
 */
export type { AnyApp, App, AppDefinition } from './core/app.js';
export { defineApp, isApp } from './core/app.js';
export type { Codec, Copied } from './core/codec.js';
export { messagePackCodec, PayloadError, validateMessagePack } from './core/codec.js';
export type { CutoffComparison, CutoffState } from './core/cutoff.js';
export { compareCutoffs, cutoffStrideMs, nominalCutoff } from './core/cutoff.js';
export { Database } from './core/database.js';
export type {
  AppendOptions,
  DatabaseListener,
  DatabaseOptions,
  DatabaseStats,
  Explanation,
  IngestOptions,
  IngestResult,
  StoredMessage,
  StoredNotice,
  Transaction,
} from './core/database-contract.js';
export type { InboxLimits } from './core/inbox.js';
export { MessageId } from './core/message-id.js';
export type { ApplyContext, ApplyFailure, ApplyFunction, ProgressCallback } from './core/projector.js';
export { ApplyFailedError } from './core/projector.js';
export * as s from './core/schema.js';
export {
  CorruptFileError,
  DiskFullError,
  ErrorCode,
  NoatunError,
  SchemaMismatchError,
  SystemCallError,
  ValueError,
} from './errors.js';
export type {
  FieldNode,
  InspectOptions,
  InspectValue,
  LeafNode,
  ListNode,
  MapEntryNode,
  MapNode,
  ObjectNode,
  OptionalNode,
  ViewNode,
} from './view/inspect.js';
