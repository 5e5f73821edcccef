/**
 * Test apps with random workloads, shared by the pruning property test and the simulator: the
 * bank app (with a plain-JS model), an overwrite-heavy "positions" app and a delete-heavy
 * "registry" app. `normalize` makes views comparable (maps sorted by key).
 */
import { s } from '../../src/index.js';
import { applyOp, normalize as normalizeBank, type Op as BankOp, Root as BankRoot, randomOp as randomBankOp } from './bank-app.js';

export interface App<E> {
  readonly name: string;
  readonly root: ReturnType<typeof s.object>;
  apply(event: E, root: never): void;
  random(random: () => number): E;
  normalize(view: unknown): unknown;
}

export const bank: App<BankOp> = {
  name: 'bank',
  root: BankRoot,
  apply: applyOp as (event: BankOp, root: never) => void,
  random: randomBankOp,
  normalize: normalizeBank,
};

// Positions: 12 keys overwritten constantly; rarely a read of one key or of all.
export const Positions = s.object({
  at: s.map(s.u32(), s.object({ x: s.i32(), y: s.i32() })),
  seen: s.i32(),
  total: s.i32(),
});
export type PositionEvent = { move: number; x: number; y: number } | { nudge: number } | { sum: true } | { drop: number };
export const positions: App<PositionEvent> = {
  name: 'positions',
  root: Positions,
  apply(event, r) {
    const root = r as s.View<typeof Positions>;
    if ('move' in event) root.at.set(event.move, { x: event.x, y: event.y });
    else if ('nudge' in event) {
      const p = root.at.get(event.nudge);
      if (p !== undefined) p.x += 1;
      root.seen = event.nudge;
    } else if ('sum' in event) {
      let total = 0;
      for (const p of root.at.values()) total += p.x + p.y;
      root.total = total;
    } else root.at.delete(event.drop);
  },
  random(random) {
    const key = Math.floor(random() * 12);
    const r = random();
    if (r < 0.8) return { move: key, x: Math.floor(random() * 1000), y: Math.floor(random() * 1000) };
    if (r < 0.9) return { nudge: key };
    if (r < 0.95) return { sum: true };
    return { drop: key };
  },
  normalize(view) {
    const v = view as { at: Map<number, unknown>; seen: number; total: number };
    return { ...v, at: [...v.at.entries()].sort(([a], [b]) => a - b) };
  },
};

// Registry: inserts and deletes of 20 names, conditional inserts, rare clears, an opaque log.
export const Registry = s.object({
  names: s.map(s.string(), s.string()),
  log: s.opaqueList(s.u32()),
  clears: s.u32(),
});
export type RegistryEvent = { put: string; value: string } | { claim: string; value: string } | { del: string } | { clear: true };
export const registry: App<RegistryEvent> = {
  name: 'registry',
  root: Registry,
  apply(event, r) {
    const root = r as s.View<typeof Registry>;
    if ('put' in event) root.names.set(event.put, event.value);
    else if ('claim' in event) {
      if (!root.names.has(event.claim)) root.names.set(event.claim, event.value);
    } else if ('del' in event) {
      root.names.delete(event.del);
      root.log.push(1);
    } else {
      root.names.clear();
      root.clears = 1;
    }
  },
  random(random) {
    const name = `n${Math.floor(random() * 20)}`;
    const value = `v${Math.floor(random() * 100)}`;
    const r = random();
    if (r < 0.4) return { put: name, value };
    if (r < 0.6) return { claim: name, value };
    if (r < 0.97) return { del: name };
    return { clear: true };
  },
  normalize(view) {
    const v = view as { names: Map<string, string>; log: number[]; clears: number };
    return { ...v, names: [...v.names.entries()].sort(([a], [b]) => (a < b ? -1 : 1)) };
  },
};

/** Every app, by name. */
export const apps = { bank, positions, registry } as Record<string, App<unknown>>;
