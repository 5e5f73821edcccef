import test from 'ava';
import { Database, type MessageId, type NoatunError, s } from '../../src/index.js';
import { removeTempDirs, tempDir } from '../helpers/temp.js';

test.after.always(removeTempDirs);

test('s.messageId stores ids as values and map keys, and refuses other values', async (t) => {
  const Root = s.object({ last: s.optional(s.messageId()), seen: s.map(s.messageId(), s.u32()) });
  const db = await Database.open<{ bad?: boolean }, typeof Root>({
    path: tempDir(),
    root: Root,
    apply(event, root, ctx) {
      if (event.bad) root.last = 'not an id' as unknown as MessageId;
      root.last = ctx.id;
      root.seen.set(ctx.id, (root.seen.get(ctx.id) ?? 0) + 1);
    },
  });
  const a = await db.append({});
  const b = await db.append({});
  const refused = await t.throwsAsync(db.append({ bad: true }));
  t.is((refused as NoatunError).code, 'APPLY_FAILED');
  t.regex((refused as Error).message, /not a valid MessageId/);
  t.is(db.stats().stored, 2);
  db.read((root) => {
    t.true(root.last!.equals(b));
    t.is(root.seen.get(a), 1);
    t.is(root.seen.size, 2);
  });
  const error = t.throws(() => db.read((root) => root.seen.get('x' as unknown as MessageId)));
  t.is((error as NoatunError).code, 'VALUE_INVALID');
  await db.close();
});
