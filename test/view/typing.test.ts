/**
 * Compile-time checks of the inferred types (run by `npm run typecheck`); the runtime test only
 * makes sure the file is loaded.
 */
import test from 'ava';
import { s } from '../../src/index.js';

const Employee = s.object({ name: s.string(), salary: s.u32() });
const Company = s.object({
  totalSalary: s.u32(),
  employees: s.map(s.string(), Employee),
  big: s.u64(),
  maybe: s.optional(s.string()),
  tags: s.list(s.string()),
});

type Plain = s.Infer<typeof Company>;

// The plain type of the schema.
const plain: Plain = {
  totalSalary: 1,
  employees: new Map([['a', { name: 'a', salary: 1 }]]),
  big: 1n,
  maybe: null,
  tags: ['x'],
};

function typeChecks(root: s.View<typeof Company>): void {
  root.totalSalary += 1;
  root.big += 1n;
  root.maybe = 'text';
  root.maybe = null;
  root.employees.set('b', { name: 'b', salary: 2 });
  const salary: number | undefined = root.employees.get('b')?.salary;
  const exported: Map<string, { name: string; salary: number }> = root.employees.export();
  root.tags.push('y');
  const first: string | undefined = root.tags.get(0);
  // @ts-expect-error a u32 field does not take a string
  root.totalSalary = 'x';
  // @ts-expect-error a u64 field takes a bigint
  root.big = 1;
  // @ts-expect-error map values are checked against the schema
  root.employees.set('c', { name: 'c' });
  // @ts-expect-error keys are checked too
  root.employees.get(5);
  void salary;
  void exported;
  void first;
}

test('the inferred types compile (checked by tsc)', (t) => {
  t.is(typeof typeChecks, 'function');
  t.is(plain.totalSalary, 1);
});
