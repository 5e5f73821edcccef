#!/usr/bin/env node
// The `noatun` command (see src/cli/main.ts). It runs the compiled CLI from dist/ on plain Node;
// `#cli` is the package's private import, which the repository's npm scripts and tests resolve to
// the TypeScript sources instead (the `noatun-source` condition, under tsx).
// (22.12: what the command-line parser, commander, asks for.)
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 12)) {
  process.stderr.write(`noatun: error: Node ${process.versions.node} is too old; Noatun needs Node 22.12 or newer [RUNTIME_UNSUPPORTED]\n`);
  process.exit(2);
}
const { main } = await import('#cli');
process.exitCode = await main(process.argv);
