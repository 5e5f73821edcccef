/**
 * The issue tracker's data: the schema of its view, its events, the one `apply` that folds them
 * in, and the queries its UI runs. A port of the original Noatun example (`issue_tracker.rs`).
 *
 * An issue is known by its heading, which is also its key. Every id in an event is first resolved
 * through `aliases`, so an event that names an issue by a name it had before a rename (a comment
 * typed on a peer that had not seen the rename yet) still reaches it.
 *
 * Differences from the original, on purpose:
 * - `RenameIssue` records the old name as an alias of the new one. The original never wrote an
 *   alias, so its alias lookup never found anything and a late comment addressed to the old name
 *   was lost. Aliases are kept flat (each points at a live issue): a rename re-points the aliases
 *   of the renamed issue, and removing an issue drops its aliases, which frees those names.
 * - `AddIssue` with a name that is already taken (by an issue or an alias) does nothing; the
 *   original re-initialised the existing issue's creation time and reporter.
 * - Renaming an issue back to one of its own old names is allowed (the alias is dropped).
 */
import { Database, type DatabaseOptions, defineApp, s } from 'noatun';

/** One text (comment) of an issue. */
export const DescriptionText = s.object({
  time: s.time(),
  text: s.string(),
  addedBy: s.string(),
});

/** An issue; its heading is its key in {@link IssueDb}'s `issues`. */
export const Issue = s.object({
  created: s.time(),
  reporter: s.string(),
  description: s.list(DescriptionText),
});

/** The root of the view: the issues by heading, and old headings of renamed issues. */
export const IssueDb = s.object({
  issues: s.map(s.string(), Issue),
  /** Old name → current name; always points at a live issue. */
  aliases: s.map(s.string(), s.string()),
});

/** The events of the tracker (the messages of the original). */
export type IssueEvent =
  | { readonly type: 'AddIssue'; readonly reporter: string; readonly heading: string }
  | { readonly type: 'AppendText'; readonly id: string; readonly reporter: string; readonly text: string }
  | { readonly type: 'RemoveIssue'; readonly id: string }
  | { readonly type: 'RenameIssue'; readonly oldId: string; readonly newId: string }
  | { readonly type: 'ReassignIssue'; readonly id: string; readonly newReporter: string };

/** The tracker's database. */
export type IssueTrackerDb = Database<IssueEvent, typeof IssueDb>;

type Root = s.View<typeof IssueDb>;

/** The current name of `id`: itself, or the issue it is an alias of. */
function resolve(root: Root, id: string): string {
  return root.aliases.get(id) ?? id;
}

/** Keys of the aliases that point at `target` (collected first: a map is not changed while iterated). */
function aliasesOf(root: Root, target: string): string[] {
  const found: string[] = [];
  for (const [alias, name] of root.aliases.entries()) if (name === target) found.push(alias);
  return found;
}

/**
 * Folds one event into the view. Deterministic and tolerant: an event about an issue that does
 * not exist (any more) changes nothing, because peers may see a removal before a comment.
 */
export function applyIssueEvent(event: IssueEvent, root: Root, ctx: { readonly time: number }): void {
  switch (event.type) {
    case 'AddIssue': {
      if (event.heading === '' || root.issues.has(event.heading) || root.aliases.has(event.heading)) return;
      root.issues.set(event.heading, { created: ctx.time, reporter: event.reporter, description: [] });
      return;
    }
    case 'AppendText': {
      const issue = root.issues.get(resolve(root, event.id));
      issue?.description.push({ time: ctx.time, text: event.text, addedBy: event.reporter });
      return;
    }
    case 'RemoveIssue': {
      const id = resolve(root, event.id);
      if (!root.issues.delete(id)) return;
      for (const alias of aliasesOf(root, id)) root.aliases.delete(alias);
      return;
    }
    case 'RenameIssue': {
      const from = resolve(root, event.oldId);
      const to = event.newId;
      const issue = root.issues.get(from);
      if (issue === undefined || to === '' || to === from || root.issues.has(to)) return;
      const aliasTarget = root.aliases.get(to);
      if (aliasTarget !== undefined && aliasTarget !== from) return; // the name belongs to another issue
      const plain = issue.export();
      root.issues.delete(from);
      root.issues.set(to, plain);
      if (aliasTarget !== undefined) root.aliases.delete(to);
      for (const alias of aliasesOf(root, from)) root.aliases.set(alias, to);
      root.aliases.set(from, to);
      return;
    }
    case 'ReassignIssue': {
      const issue = root.issues.get(resolve(root, event.id));
      if (issue !== undefined) issue.reporter = event.newReporter;
      return;
    }
  }
}

/**
 * The tracker as an app: what `noatun peer --app examples/issue-tracker/app.ts` runs. The cutoff
 * interval is the original's two minutes: peers that were apart longer than that still sync, but
 * rebuild instead of rewinding.
 */
export const app = defineApp<IssueEvent, typeof IssueDb>({
  name: 'issue-tracker',
  root: IssueDb,
  apply: applyIssueEvent,
  cutoffIntervalMs: 120_000,
});

/** Opens (or creates) a tracker database in `path`. */
export function openIssueTracker(
  path: string,
  options: Partial<Pick<DatabaseOptions<IssueEvent, typeof IssueDb>, 'now' | 'cutoffIntervalMs' | 'onProgress'>> = {},
): Promise<IssueTrackerDb> {
  // checkDeterminism: a development aid that the examples keep on (see the README).
  return Database.open<IssueEvent, typeof IssueDb>({ ...app, checkDeterminism: true, ...options, path });
}

/** One row of the issue table. */
export interface IssueRow {
  readonly id: string;
  readonly created: number;
  readonly reporter: string;
  readonly texts: number;
}

/** Every issue, oldest first (by creation time, then name, so every peer shows the same order). */
export function listIssues(db: IssueTrackerDb): IssueRow[] {
  const rows = db.read((root) => {
    const out: IssueRow[] = [];
    for (const [id, issue] of root.issues.entries()) {
      out.push({ id, created: issue.created, reporter: issue.reporter, texts: issue.description.length });
    }
    return out;
  });
  return rows.sort((a, b) => a.created - b.created || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/** One text of an issue, as the details pane shows it. */
export interface IssueText {
  readonly time: number;
  readonly text: string;
  readonly addedBy: string;
}

/** Everything the details pane shows about one issue. */
export interface IssueDetails extends IssueRow {
  readonly description: readonly IssueText[];
  /** Old names that still lead to it. */
  readonly aliases: readonly string[];
}

/** The details of issue `id` (or of the issue `id` is an old name of), or undefined. */
export function issueDetails(db: IssueTrackerDb, id: string): IssueDetails | undefined {
  return db.read((root) => {
    const name = resolve(root, id);
    const issue = root.issues.get(name);
    if (issue === undefined) return undefined;
    const description = issue.description.export();
    return {
      id: name,
      created: issue.created,
      reporter: issue.reporter,
      texts: description.length,
      description,
      aliases: aliasesOf(root, name).sort(),
    };
  });
}
