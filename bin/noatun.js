#!/usr/bin/env node
// The `noatun` command (see src/cli/main.ts). Noatun ships TypeScript sources, and app modules
// are usually TypeScript too: tsx's loader lets Node import both.
const [major] = process.versions.node.split('.').map(Number);
if (major < 22) {
  process.stderr.write(`noatun: error: Node ${process.versions.node} is too old; Noatun needs Node 22 or newer\n`);
  process.exit(2);
}
const { register } = await import('tsx/esm/api');
register();
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv);
