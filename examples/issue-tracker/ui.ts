/**
 * The issue tracker's terminal UI (ink + React): the issue table sorted by creation time, the
 * selected issue's details and texts, a prompt line, and a status line with the user, the number
 * of stored messages and the sync status.
 *
 * Written with `React.createElement` (as `h`) in plain .ts, so it runs and tests without a JSX
 * build step.
 *
 * Keys: ↑/↓ select · a add · t add text · n rename · r reassign · x or Delete remove ·
 * v advance the cutoff · p compact · q or Esc quit. In a prompt, Enter submits and Esc cancels.
 */
import { Box, Text, useApp, useInput, useStdout } from 'ink';
import TextInput from 'ink-text-input';
import type { PeerInfo, Replicator } from 'noatun/net';
import React from 'react';
import { type IssueEvent, type IssueTrackerDb, issueDetails, listIssues } from './app.js';

const { createElement: h, useCallback, useEffect, useState } = React;

/** Props of {@link IssueTrackerApp}. */
export interface IssueTrackerProps {
  readonly db: IssueTrackerDb;
  /** Who is typing: the reporter of new issues and texts. */
  readonly user: string;
  /** The replicator, when the tracker syncs with peers. */
  readonly replicator?: Replicator;
  /**
   * How often the sync status is refreshed, in ms (peer states change without a database change).
   * @default 1000
   */
  readonly refreshMs?: number;
  /** Called on `q`/Esc instead of exiting ink (tests). */
  readonly onQuit?: () => void;
}

/** What a prompt asks for; `submit` turns the typed text into an event (or a refusal). */
interface Prompt {
  readonly label: string;
  readonly submit: (text: string) => { event: IssueEvent; done: string; select?: string } | { error: string };
}

type Mode = { readonly kind: 'browse' } | { readonly kind: 'prompt'; readonly prompt: Prompt } | { readonly kind: 'confirm'; readonly id: string };

const HELP = '↑↓ select  a add  t text  n rename  r reassign  x remove  v cutoff  p compact  q quit';

/** `YYYY-MM-DD HH:MM:SS` in UTC, so every peer shows the same time for the same event. */
export function formatTime(ms: number): string {
  return new Date(ms).toISOString().slice(0, 19).replace('T', ' ');
}

/** `text` cut or padded to exactly `width` columns (an ellipsis marks a cut). */
function cell(text: string, width: number): string {
  return text.length > width ? `${text.slice(0, Math.max(0, width - 1))}…` : text.padEnd(width);
}

/** One line about the sync state: offline, alone, or how many peers are in sync. */
export function syncSummary(replicator: Replicator | undefined, peers: readonly PeerInfo[]): string {
  if (replicator === undefined) return 'offline (local only)';
  const live = peers.filter((p) => p.state !== 'disconnected');
  if (live.length === 0) return 'no peers yet';
  const synced = live.filter((p) => p.state === 'synced').length;
  const others = live.filter((p) => p.state !== 'synced').map((p) => p.state);
  return `synced with ${synced}/${live.length} peer${live.length === 1 ? '' : 's'}${others.length === 0 ? '' : ` (${[...new Set(others)].join(', ')})`}`;
}

/**
 * The tracker's root component. It re-reads the view whenever the database stores or drops
 * events (local or from peers), so it always shows the current state.
 */
export function IssueTrackerApp(props: IssueTrackerProps): React.ReactElement {
  const { db, user, replicator } = props;
  const app = useApp();
  // The layout follows the terminal's width (80 columns at least, 140 at most).
  const columns = (useStdout().stdout as { columns?: number }).columns;
  const width = Math.max(80, Math.min(140, columns === undefined || columns === 0 ? 100 : columns));
  const [, setVersion] = useState(0);
  const [selected, setSelected] = useState<string | undefined>(undefined);
  const [mode, setMode] = useState<Mode>({ kind: 'browse' });
  const [input, setInput] = useState('');
  const [notice, setNotice] = useState('');
  const [peers, setPeers] = useState<readonly PeerInfo[]>(() => replicator?.peers() ?? []);

  // Database listeners run inside the call that changed the log and must not call back into the
  // database, so they only schedule a re-render; several changes in a row make one.
  useEffect(() => {
    let pending: NodeJS.Timeout | undefined;
    const changed = () => {
      pending ??= setTimeout(() => {
        pending = undefined;
        setVersion((v) => v + 1);
      }, 0);
    };
    const unsubscribe = db.subscribe({ stored: changed, removed: changed });
    return () => {
      unsubscribe();
      if (pending !== undefined) clearTimeout(pending);
    };
  }, [db]);

  useEffect(() => {
    if (replicator === undefined) return undefined;
    const refresh = () => setPeers(replicator.peers());
    const events = ['peer:connect', 'peer:disconnect', 'peer:synced', 'peer:refused'];
    for (const type of events) replicator.addEventListener(type, refresh);
    const timer = setInterval(refresh, props.refreshMs ?? 1000);
    timer.unref();
    return () => {
      for (const type of events) replicator.removeEventListener(type, refresh);
      clearInterval(timer);
    };
  }, [replicator, props.refreshMs]);

  const rows = listIssues(db);
  const index = Math.max(0, rows.findIndex((row) => row.id === selected));
  const current = rows[index];
  const details = current === undefined ? undefined : issueDetails(db, current.id);

  const append = useCallback(
    (event: IssueEvent, done: string, select?: string) => {
      db.append(event).then(
        () => {
          setNotice(done);
          if (select !== undefined) setSelected(select);
        },
        (error: unknown) => setNotice(`failed: ${String(error)}`),
      );
    },
    [db],
  );

  const quit = () => {
    if (props.onQuit !== undefined) props.onQuit();
    else app.exit();
  };

  const ask = (label: string, submit: Prompt['submit']) => {
    setInput('');
    setNotice('');
    setMode({ kind: 'prompt', prompt: { label, submit } });
  };

  useInput((text, key) => {
    if (mode.kind === 'prompt') {
      if (key.escape) {
        setMode({ kind: 'browse' });
        setNotice('cancelled');
      }
      return; // everything else goes to the text input
    }
    if (mode.kind === 'confirm') {
      if (text === 'y' || text === 'Y') append({ type: 'RemoveIssue', id: mode.id }, `removed ${mode.id}`);
      else setNotice('kept');
      setMode({ kind: 'browse' });
      return;
    }
    if (key.upArrow) setSelected(rows[Math.max(0, index - 1)]?.id);
    else if (key.downArrow) setSelected(rows[Math.min(rows.length - 1, index + 1)]?.id);
    else if (text === 'q' || key.escape) quit();
    else if (text === 'a') {
      ask('New issue heading', (heading) => {
        if (rows.some((row) => row.id === heading) || issueDetails(db, heading) !== undefined) {
          return { error: `an issue named "${heading}" exists already` };
        }
        return { event: { type: 'AddIssue', reporter: user, heading }, done: `added ${heading}`, select: heading };
      });
    } else if (current === undefined) {
      if ('tnrx'.includes(text) || key.delete) setNotice('no issue selected: press a to add one');
    } else if (text === 't') {
      ask(`Text for ${current.id}`, (body) => ({
        event: { type: 'AppendText', id: current.id, reporter: user, text: body },
        done: `added a text to ${current.id}`,
      }));
    } else if (text === 'n') {
      ask(`Rename ${current.id} to`, (name) => {
        // A name in use by another issue, or an old name of another issue, is refused by apply too;
        // one of this issue's own old names may be taken back.
        if (name === current.id) return { error: `${name} has that name already` };
        const owner = issueDetails(db, name);
        if (owner !== undefined && owner.id !== current.id) return { error: `the name "${name}" belongs to ${owner.id}` };
        return { event: { type: 'RenameIssue', oldId: current.id, newId: name }, done: `renamed ${current.id} to ${name}`, select: name };
      });
    } else if (text === 'r') {
      ask(`Reassign ${current.id} to`, (reporter) => ({
        event: { type: 'ReassignIssue', id: current.id, newReporter: reporter },
        done: `reassigned ${current.id} to ${reporter}`,
      }));
    } else if (text === 'x' || key.delete) {
      setMode({ kind: 'confirm', id: current.id });
    } else if (text === 'v') {
      db.advanceCutoff();
      setNotice(`cutoff at ${formatTime(db.cutoffTime)}`);
    } else if (text === 'p') {
      db.compact().then(
        () => setNotice(`compacted: ${db.stats().viewBytes} view bytes`),
        (error: unknown) => setNotice(`failed: ${String(error)}`),
      );
    }
  });

  const submit = (value: string) => {
    if (mode.kind !== 'prompt') return;
    const text = value.trim();
    setMode({ kind: 'browse' });
    if (text === '') {
      setNotice('cancelled (empty)');
      return;
    }
    const result = mode.prompt.submit(text);
    if ('error' in result) setNotice(result.error);
    else append(result.event, result.done, result.select);
  };

  const stats = db.stats();
  return h(
    Box,
    { flexDirection: 'column', width },
    h(IssueTable, { rows, index, width }),
    h(DetailsPane, { details }),
    mode.kind === 'prompt'
      ? h(
          Box,
          null,
          h(Text, { color: 'cyan' }, `${mode.prompt.label}: `),
          h(TextInput, { value: input, onChange: setInput, onSubmit: submit }),
        )
      : mode.kind === 'confirm'
        ? h(Text, { color: 'yellow' }, `Remove ${mode.id}? (y/n)`)
        : h(Text, { dimColor: true }, notice === '' ? HELP : notice),
    h(
      Text,
      { inverse: true },
      cell(` user ${user} · ${stats.stored} messages · ${syncSummary(replicator, peers)}`, width),
    ),
    replicator === undefined || replicator.multiaddrs.length === 0
      ? null
      : h(Text, { dimColor: true }, `listening on ${replicator.multiaddrs[0]}`),
  );
}

function IssueTable(props: { rows: ReturnType<typeof listIssues>; index: number; width: number }): React.ReactElement {
  const { rows, index } = props;
  // What is left after the border and padding (4), the marker (2), the other columns and gaps.
  const heading = props.width - 4 - 2 - 20 - 16 - 5 - 3;
  return h(
    Box,
    { flexDirection: 'column', borderStyle: 'round', paddingX: 1 },
    h(Text, { bold: true }, `  ${cell('Time', 20)} ${cell('Heading', heading)} ${cell('Reporter', 16)} Texts`),
    rows.length === 0
      ? h(Text, { dimColor: true }, '  (no issues yet: press a to add one)')
      : rows.map((row, i) =>
          h(
            Text,
            { key: row.id, inverse: i === index },
            `${i === index ? '>' : ' '} ${cell(formatTime(row.created), 20)} ${cell(row.id, heading)} ${cell(row.reporter, 16)} ${row.texts}`,
          ),
        ),
  );
}

function DetailsPane(props: { details: ReturnType<typeof issueDetails> }): React.ReactElement {
  const { details } = props;
  if (details === undefined) {
    return h(Box, { borderStyle: 'round', paddingX: 1 }, h(Text, { dimColor: true }, 'No issue selected'));
  }
  return h(
    Box,
    { flexDirection: 'column', borderStyle: 'round', paddingX: 1 },
    h(Text, { bold: true }, `Heading: ${details.id}`),
    h(Text, null, `Created: ${formatTime(details.created)}   Reporter: ${details.reporter}`),
    details.aliases.length === 0 ? null : h(Text, { dimColor: true }, `Also known as: ${details.aliases.join(', ')}`),
    h(Text, { bold: true }, `${cell('Time', 20)} ${cell('Reporter', 16)} Text`),
    details.description.length === 0
      ? h(Text, { dimColor: true }, '(no texts: press t to add one)')
      : details.description.map((text, i) =>
          h(Text, { key: String(i) }, `${cell(formatTime(text.time), 20)} ${cell(text.addedBy, 16)} ${text.text}`),
        ),
  );
}
