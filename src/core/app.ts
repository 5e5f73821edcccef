/**
 * An application as one value: the schema of its view, its `apply` and what else every peer of
 * it must agree on. A module that exports one (`export const app = defineApp({...})`) can be run
 * by the `noatun` command (`noatun peer --app module.ts`) and opened by `noatun inspect`, and a
 * program opens it with `Database.open({ ...app, path })`.
 */

import { ErrorCode, NoatunError } from '../errors.js';
import { ObjectType } from '../view/composite.js';
import type { ObjectSchema } from '../view/schema.js';
import type { Codec } from './codec.js';
import type { ApplyFunction } from './projector.js';

/** Marks values made by {@link defineApp}; a registered symbol, so two copies of Noatun agree. */
const APP_BRAND: unique symbol = Symbol.for('noatun.app') as never;

/** What every peer of an application shares: everything of `Database.open` but the path and the local tuning. */
export interface AppDefinition<E, R extends ObjectSchema<unknown>> {
  /** A short name: the default swarm topic, and how tools name the app. Letters, digits, `-`, `_`, `.`. */
  readonly name: string;
  /** The schema of the view's root object. */
  readonly root: R;
  /** The deterministic fold of one event into the view. */
  readonly apply: ApplyFunction<E, R>;
  /** How events are encoded (default: MessagePack). */
  readonly codec?: Codec<E>;
  /** The cutoff interval every peer of the app uses (default: 15 minutes). */
  readonly cutoffIntervalMs?: number;
  /** The version of `apply`: change it when `apply` changes what it makes (see `DatabaseOptions.applyVersion`). */
  readonly applyVersion?: string;
}

/** An application checked by {@link defineApp}. */
export interface App<E, R extends ObjectSchema<unknown>> extends AppDefinition<E, R> {
  readonly [APP_BRAND]: true;
}

/** Any application, whatever its event and view types (what tools that load app modules hold). */
// biome-ignore lint/suspicious/noExplicitAny: a tool handles apps of every event type
export type AnyApp = App<any, ObjectSchema<unknown>>;

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * Checks an application definition and marks it as one. Throws `INVALID_ARGUMENT` for a bad name,
 * a root that is not an `s.object(...)`, a missing `apply`, or a codec without encode/decode.
 */
export function defineApp<E, R extends ObjectSchema<unknown>>(definition: AppDefinition<E, R>): App<E, R> {
  const { name, root, apply, codec, cutoffIntervalMs, applyVersion } = definition;
  const bad = (what: string) => new NoatunError(ErrorCode.INVALID_ARGUMENT, `defineApp: ${what}`);
  if (typeof name !== 'string' || !NAME.test(name)) {
    throw bad(`name must be 1-64 letters, digits, '.', '_' or '-' and start with a letter or digit, not ${JSON.stringify(name)}`);
  }
  if (!(root instanceof ObjectType)) throw bad(`root of '${name}' must be a schema made by s.object(...)`);
  if (typeof apply !== 'function') throw bad(`apply of '${name}' must be a function`);
  if (codec !== undefined && (typeof codec.encode !== 'function' || typeof codec.decode !== 'function')) {
    throw bad(`codec of '${name}' must have encode and decode functions`);
  }
  if (cutoffIntervalMs !== undefined && !(Number.isSafeInteger(cutoffIntervalMs) && cutoffIntervalMs > 0)) {
    throw bad(`cutoffIntervalMs of '${name}' must be a positive integer, not ${cutoffIntervalMs}`);
  }
  if (applyVersion !== undefined && typeof applyVersion !== 'string') throw bad(`applyVersion of '${name}' must be a string`);
  return Object.freeze({ ...definition, [APP_BRAND]: true as const });
}

/** Whether `value` was made by {@link defineApp} (by this or another copy of Noatun). */
export function isApp(value: unknown): value is AnyApp {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[APP_BRAND] === true;
}
