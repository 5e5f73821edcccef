import * as fs from 'node:fs';
import * as path from 'node:path';
import test from 'ava';
import { checkLayers } from '../../scripts/check-layers.js';
import { removeTempDirs, tempDir } from '../helpers/temp.js';

test.after.always(removeTempDirs);

function tree(files: Record<string, string>): string {
  const root = tempDir();
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(root, name)), { recursive: true });
    fs.writeFileSync(path.join(root, name), text);
  }
  return root;
}

test('a tree whose imports point down the layers passes', (t) => {
  const root = tree({
    'src/errors.ts': 'export const x = 1;',
    'src/view/a.ts': "import { x } from '../errors.js';\nexport const a = x;",
    'src/core/b.ts': "import { a } from '../view/a.js';\nexport const b = a;",
    'src/index.ts': "export { b } from './core/b.js';",
  });
  t.deepEqual(checkLayers(root).problems, []);
});

test('an upward import is reported with its file and line', (t) => {
  const root = tree({
    'src/core/b.ts': 'export const b = 1;',
    'src/view/a.ts': "// comment\nimport { b } from '../core/b.js';\nexport const a = b;",
  });
  const { problems } = checkLayers(root);
  t.is(problems.length, 1);
  t.regex(problems[0]!, /src\/view\/a\.ts:2: .*view may not import from core/);
});

test('an import cycle is reported', (t) => {
  const root = tree({
    'src/core/a.ts': "import { b } from './b.js';\nexport const a = () => b;",
    'src/core/b.ts': "import { a } from './a.js';\nexport const b = () => a;",
  });
  const { problems } = checkLayers(root);
  t.true(problems.some((p) => p.startsWith('import cycle: ')));
});

test('importing the public entry from inside src and examples importing ../src are reported', (t) => {
  const root = tree({
    'src/index.ts': 'export const x = 1;',
    'src/core/a.ts': "import { x } from '../index.js';\nexport const a = x;",
    'examples/demo.ts': "import { x } from '../src/index.js';\nconsole.log(x);",
  });
  const { problems } = checkLayers(root);
  t.true(problems.some((p) => p.includes('public entry')));
  t.true(problems.some((p) => p.includes("examples import the package")));
});
