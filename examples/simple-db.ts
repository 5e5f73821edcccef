/**
 * The smallest complete Noatun program: a company whose view totals the salaries of its hires.
 *
 * Run: npx tsx examples/simple-db.ts [directory]   (default: ./data/simple-db)
 */
import { Database, s } from 'noatun';

const Employee = s.object({ name: s.string(), salary: s.u32() });
const Company = s.object({ totalSalary: s.u32(), employees: s.map(s.string(), Employee) });
type Hire = { name: string; salary: number };

const db = await Database.open<Hire, typeof Company>({
  path: process.argv[2] ?? 'data/simple-db',
  root: Company,
  checkDeterminism: true, // refuses an apply that is not deterministic, while developing
  apply(event, root) {
    root.totalSalary += event.salary;
    root.employees.set(event.name, { name: event.name, salary: event.salary });
  },
});

await db.append({ name: 'Andersen', salary: 25 });
await db.transaction((tx) => {
  tx.append({ name: 'Berg', salary: 30 });
  tx.append({ name: 'Dahl', salary: 31 });
});

console.log('total salary:', db.read((root) => root.totalSalary));
console.log('Berg earns:', db.read((root) => root.employees.get('Berg')?.salary));
console.log('employees:', db.read((root) => [...root.employees.keys()].sort().join(', ')));
console.log('stored events:', db.stats().stored);
await db.close();
