// The consumer test's TypeScript program (see scripts/consumer-test.ts), type-checked with
// `tsc --strict --noEmit` against the declarations in the installed package. It is never run:
// what it proves is that the public API is typed (the `@ts-expect-error` lines fail the check if
// a type collapsed to `any`).
import { Database, type DatabaseOptions, defineApp, ErrorCode, MessageId, NoatunError, s } from 'noatun';
import { type Libp2pLinkOptions, type PeerInfo, Replicator, type ReplicatorOptions } from 'noatun/net';

const Employee = s.object({ name: s.string(), salary: s.u32() });
const Company = s.object({ totalSalary: s.u32(), employees: s.map(s.string(), Employee) });
type Hire = { name: string; salary: number };
type Person = s.Infer<typeof Employee>;

const options: DatabaseOptions<Hire, typeof Company> = {
  path: 'company-db',
  root: Company,
  apply(event, root, ctx) {
    const when: number = ctx.time;
    const id: MessageId = ctx.id;
    root.totalSalary += event.salary + 0 * when * id.timestamp;
    root.employees.set(event.name, { name: event.name, salary: event.salary });
  },
};

export const app = defineApp({ name: 'company', root: Company, apply: options.apply });

export async function hire(): Promise<Person[]> {
  const db = await Database.open(options);
  const id: MessageId = await db.append({ name: 'Andersen', salary: 25 });
  // @ts-expect-error: a Hire has a salary
  await db.append({ name: 'Berg' });
  await db.transaction((tx) => {
    const inner: MessageId = tx.append({ name: 'Dahl', salary: 31 });
    void inner;
  });
  const total: number = db.read((root) => root.totalSalary);
  // @ts-expect-error: totalSalary is a number
  const wrong: string = db.read((root) => root.totalSalary);
  void wrong;
  const people: Map<string, Person> = db.read((root) => root.employees.export());
  const salary: number | undefined = db.read((root) => root.employees.get('Andersen')?.salary);
  const hex: string = id.toString();
  const same: boolean = MessageId.parse(hex).equals(id);

  const replicatorOptions: Libp2pLinkOptions & ReplicatorOptions = { listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [], topic: 'company' };
  const node = await Replicator.start(db, replicatorOptions);
  const addresses: readonly string[] = node.multiaddrs;
  const peers: readonly PeerInfo[] = node.peers();
  if (peers.length > 0) await node.syncedWith(peers[0]!.peerId, { signal: AbortSignal.timeout(1000) });
  await node.stop();
  await db.close();
  void [total, salary, same, addresses];
  return [...people.values()];
}

export function isLocked(error: unknown): boolean {
  const code: ErrorCode | undefined = error instanceof NoatunError ? error.code : undefined;
  return code === ErrorCode.DATABASE_LOCKED;
}
