/**
 * The "bank" test app: reads, conditional writes, deletes, opaque pushes and a failing event,
 * with a plain-JS model of the same logic. Used by the model and pruning property tests.
 */
import { s } from '../../src/index.js';

const Account = s.object({ balance: s.i32(), owner: s.string(), tags: s.list(s.string()) });
export const Root = s.object({
  total: s.i32(),
  accounts: s.map(s.string(), Account),
  counters: s.map(s.u32(), s.u32()),
  audit: s.opaqueList(s.string()),
  lastNote: s.optional(s.string()),
});

export type Op =
  | { kind: 'deposit'; account: string; amount: number }
  | { kind: 'withdraw'; account: string; amount: number }
  | { kind: 'close'; account: string }
  | { kind: 'bump'; key: number }
  | { kind: 'note'; text: string | null }
  | { kind: 'fail'; account: string };

/** The app's apply; written once against an interface both the view and the model satisfy. */
export function applyOp(op: Op, root: s.View<typeof Root>): void {
  switch (op.kind) {
    case 'deposit': {
      const account = root.accounts.get(op.account);
      if (account === undefined) root.accounts.set(op.account, { balance: op.amount, owner: op.account, tags: ['new'] });
      else {
        account.balance += op.amount;
        if (account.tags.length < 3) account.tags.push(`d${op.amount}`);
      }
      root.total += op.amount;
      root.audit.push(`deposit ${op.account}`);
      break;
    }
    case 'withdraw': {
      const account = root.accounts.get(op.account);
      if (account !== undefined && account.balance >= op.amount) {
        account.balance -= op.amount;
        root.total -= op.amount;
      }
      break;
    }
    case 'close': {
      const account = root.accounts.get(op.account);
      if (account !== undefined) root.total -= account.balance;
      root.accounts.delete(op.account);
      break;
    }
    case 'bump':
      root.counters.set(op.key, (root.counters.get(op.key) ?? 0) + 1);
      break;
    case 'note':
      root.lastNote = op.text;
      break;
    case 'fail': {
      // Fails when the account exists with an odd balance: whether it does depends on the state,
      // so an event its author could apply may fail on a peer that applies it after a late event
      // (the author refuses it outright when it fails there: APPLY_FAILED). Either way it leaves
      // no trace in the view.
      const account = root.accounts.get(op.account);
      if (account !== undefined && account.balance % 2 === 1) {
        account.balance += 1000;
        throw new Error('rejected');
      }
      break;
    }
  }
}

export interface Plain {
  total: number;
  accounts: Map<string, { balance: number; owner: string; tags: string[] }>;
  counters: Map<number, number>;
  audit: string[];
  lastNote: string | null;
}

/** The model: the same logic over plain JS values; a failing op leaves no trace. */
export function applyModel(op: Op, state: Plain): void {
  switch (op.kind) {
    case 'deposit': {
      const account = state.accounts.get(op.account);
      if (account === undefined) state.accounts.set(op.account, { balance: op.amount, owner: op.account, tags: ['new'] });
      else {
        account.balance += op.amount;
        if (account.tags.length < 3) account.tags.push(`d${op.amount}`);
      }
      state.total += op.amount;
      state.audit.push(`deposit ${op.account}`);
      break;
    }
    case 'withdraw': {
      const account = state.accounts.get(op.account);
      if (account !== undefined && account.balance >= op.amount) {
        account.balance -= op.amount;
        state.total -= op.amount;
      }
      break;
    }
    case 'close': {
      const account = state.accounts.get(op.account);
      if (account !== undefined) state.total -= account.balance;
      state.accounts.delete(op.account);
      break;
    }
    case 'bump':
      state.counters.set(op.key, (state.counters.get(op.key) ?? 0) + 1);
      break;
    case 'note':
      state.lastNote = op.text;
      break;
    case 'fail':
      break;
  }
}

export function randomOp(random: () => number): Op {
  const account = `acct-${Math.floor(random() * 6)}${random() < 0.2 ? 'æ' : ''}`;
  const r = random();
  if (r < 0.35) return { kind: 'deposit', account, amount: 1 + Math.floor(random() * 100) };
  if (r < 0.55) return { kind: 'withdraw', account, amount: 1 + Math.floor(random() * 100) };
  if (r < 0.65) return { kind: 'close', account };
  if (r < 0.85) return { kind: 'bump', key: Math.floor(random() * 20) };
  if (r < 0.95) return { kind: 'note', text: random() < 0.3 ? null : `note ${Math.floor(random() * 1000)}` };
  return { kind: 'fail', account };
}

export function normalize(view: unknown): unknown {
  const v = view as Plain;
  return {
    total: v.total,
    accounts: [...v.accounts.entries()].sort(([a], [b]) => (a < b ? -1 : 1)),
    counters: [...v.counters.entries()].sort(([a], [b]) => a - b),
    audit: v.audit,
    lastNote: v.lastNote,
  };
}
