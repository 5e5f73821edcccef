/**
 * The issue tracker as a program: opens (or creates) its database, optionally joins a swarm over
 * libp2p, and runs the terminal UI until `q`.
 *
 * Run (from the repository): npx tsx examples/issue-tracker/main.ts [options]
 *
 *   --db <dir>          database directory (default: data/issue-tracker)
 *   --user <name>       reporter name for new issues and texts (default: $USER)
 *   --listen <addr>     replicate: listen on a multiaddr, or on 127.0.0.1 at a port number (0: any)
 *   --bootstrap <addr>  replicate: connect to a peer's multiaddr (repeatable)
 *   --topic <name>      swarm name (default: issue-tracker)
 *   --mdns              also discover peers on the LAN (off unless given)
 *   --script            read commands from stdin instead of showing the UI (see script.ts);
 *                       the default when stdin is not a terminal
 *
 * Without --listen or --bootstrap the tracker works offline on its local database.
 */
import { parseArgs } from 'node:util';
import { render } from 'ink';
import { NoatunError } from 'noatun';
import { Replicator } from 'noatun/net';
import React from 'react';
import { openIssueTracker } from './app.js';
import { runScript } from './script.js';
import { IssueTrackerApp } from './ui.js';

const USAGE = `usage: issue-tracker [--db dir] [--user name] [--listen addr|port] [--bootstrap addr]... [--topic name] [--mdns] [--script]`;

/** The exit status for wrong usage (an unknown option, a bad address, a database in use). */
const EXIT_USAGE = 2;

/** A bare port number means the loopback interface: replication stays on this machine unless asked. */
function listenAddress(value: string): string {
  return /^\d+$/.test(value) ? `/ip4/127.0.0.1/tcp/${value}` : value;
}

/** Prints one line about a mistake and ends the program with {@link EXIT_USAGE}. */
function fail(message: string): never {
  process.stderr.write(`issue-tracker: ${message}\n`);
  process.exit(EXIT_USAGE);
}

/** The command line, parsed; throws a `TypeError` for an unknown option or a missing value. */
function parseOptions() {
  return parseArgs({
    options: {
      db: { type: 'string', default: 'data/issue-tracker' },
      user: { type: 'string' },
      listen: { type: 'string', multiple: true },
      bootstrap: { type: 'string', multiple: true },
      topic: { type: 'string', default: 'issue-tracker' },
      mdns: { type: 'boolean', default: false },
      script: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }).values;
}

let values: ReturnType<typeof parseOptions>;
try {
  values = parseOptions();
} catch (error) {
  // (Node's own error, with its stack, was all a mistyped option got.)
  fail(`${(error as Error).message} (--help for usage)`);
}

if (values.help) {
  console.log(USAGE);
  process.exit(0);
}

const user = values.user ?? process.env.USER ?? 'anonymous';
const listen = (values.listen ?? []).map(listenAddress);
const bootstrap = values.bootstrap ?? [];
let db: Awaited<ReturnType<typeof openIssueTracker>>;
let replicator: Replicator | undefined;
try {
  db = await openIssueTracker(values.db);
} catch (error) {
  // A path that is a file, a database in use, a damaged database: one line, not a stack.
  if (error instanceof NoatunError) fail(`${error.message} [${error.code}]`);
  throw error;
}
if (listen.length !== 0 || bootstrap.length !== 0 || values.mdns) {
  try {
    replicator = await Replicator.start(db, {
      // A node that only dials out still needs an address for its peers to open sessions back.
      listen: listen.length === 0 ? ['/ip4/127.0.0.1/tcp/0'] : listen,
      bootstrap,
      mdns: values.mdns,
      topic: values.topic,
    });
  } catch (error) {
    await db.close();
    // A bad address, a busy port: one line, not a stack.
    if (error instanceof NoatunError) fail(`${error.message} [${error.code}]`);
    throw error;
  }
}

try {
  if (values.script || process.stdin.isTTY !== true) {
    // Ink needs a terminal for its key input; a pipe gets the line commands instead.
    if (replicator !== undefined) console.log(`listening on ${replicator.multiaddrs.join(' ')}`);
    await runScript(db, user, replicator, process.stdin, process.stdout);
  } else {
    const ui = render(React.createElement(IssueTrackerApp, { db, user, ...(replicator === undefined ? {} : { replicator }) }));
    await ui.waitUntilExit();
  }
} finally {
  await replicator?.stop();
  await db.close();
}
