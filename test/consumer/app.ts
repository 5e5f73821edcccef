// An app module in TypeScript for `npx noatun peer --app app.ts` in the consumer test (see
// scripts/consumer-test.ts): Node strips its types itself, so it uses erasable syntax only and
// imports types with `import type`.
import { defineApp, s } from 'noatun';
import type { ApplyContext } from 'noatun';

type Note = { text: string };

export const app = defineApp({
  name: 'consumer-notes-ts',
  root: s.object({ notes: s.list(s.string()), last: s.time() }),
  apply(event: Note, root, ctx: ApplyContext) {
    root.notes.push(event.text);
    root.last = ctx.time;
  },
});
