// An app module in plain JavaScript for `npx noatun peer --app app.js` in the consumer test
// (see scripts/consumer-test.ts).
import { defineApp, s } from 'noatun';

export const app = defineApp({
  name: 'consumer-notes',
  root: s.object({ notes: s.list(s.string()) }),
  apply(event, root) {
    root.notes.push(event.text);
  },
});
