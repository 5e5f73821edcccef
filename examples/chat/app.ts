/**
 * The chat's data: one room whose view is the list of its messages, the one event that adds a
 * message, and the queries the terminal peer (`main.ts`) runs.
 *
 * The messages are an `s.opaqueList`: `apply` only pushes to it and never reads it, so no message
 * ever depends on another (none is a read dependency of a later one, and none is ever overwritten,
 * so pruning keeps them all). The list is in timestamp order without sorting: the engine applies
 * events in id (timestamp) order, and a message that arrives late — written offline by a peer that
 * reconnects — rewinds the view to its place and re-applies what follows.
 */
import { Database, type DatabaseOptions, defineApp, MessageId, s } from 'noatun';

/** One message as the view stores it; its time is its id's timestamp, so it is not stored twice. */
export const StoredMessage = s.object({
  id: s.messageId(),
  from: s.string(),
  text: s.string(),
});

/** The root of the view: the room's messages, oldest first. */
export const ChatRoom = s.object({
  messages: s.opaqueList(StoredMessage),
});

/** The events of the chat: somebody said something. */
export interface SayEvent {
  readonly type: 'say';
  /** The sender's nickname, as they chose it. */
  readonly from: string;
  readonly text: string;
}

/** Every event of the chat (one kind so far; a union leaves room for more). */
export type ChatEvent = SayEvent;

/** The chat's database. */
export type ChatDb = Database<ChatEvent, typeof ChatRoom>;

/** Longest nickname and message stored, in UTF-16 units: a peer's bad input stays small. */
export const MAX_NAME_LENGTH = 64;
export const MAX_TEXT_LENGTH = 4000;

/**
 * Whether a payload from the wire is a message this app stores. Peers may run other versions or
 * be hostile, so the shape is checked rather than trusted; anything else is skipped (identically
 * on every peer, since the check depends only on the event).
 */
function isSay(event: unknown): event is SayEvent {
  if (typeof event !== 'object' || event === null) return false;
  const { type, from, text } = event as Record<string, unknown>;
  return (
    type === 'say' &&
    typeof from === 'string' &&
    typeof text === 'string' &&
    from.length <= MAX_NAME_LENGTH &&
    text.length <= MAX_TEXT_LENGTH
  );
}

/**
 * The chat as an app: what `main.ts` opens, and what `noatun peer --app examples/chat/app.ts` or
 * `noatun inspect` can open too.
 */
export const app = defineApp<ChatEvent, typeof ChatRoom>({
  name: 'chat',
  root: ChatRoom,
  apply(event, root, ctx) {
    if (!isSay(event)) return;
    root.messages.push({ id: ctx.id, from: event.from, text: event.text });
  },
});

/** Opens (or creates) a chat database in `path`. */
export function openChat(
  path: string,
  options: Partial<Pick<DatabaseOptions<ChatEvent, typeof ChatRoom>, 'now' | 'onProgress'>> = {},
): Promise<ChatDb> {
  // checkDeterminism: a development aid that the examples keep on (see the README).
  return Database.open<ChatEvent, typeof ChatRoom>({ ...app, checkDeterminism: true, ...options, path });
}

/** One message as the queries return it: plain values, usable after the read. */
export interface ChatMessage {
  /** The event's id (32 hex digits); the same on every peer. */
  readonly id: string;
  /** When it was written (ms since the epoch). */
  readonly time: number;
  readonly from: string;
  readonly text: string;
}

type StoredView = s.View<typeof StoredMessage>;

function plain(message: StoredView): ChatMessage {
  const id = message.id;
  return { id: id.toString(), time: id.timestamp, from: message.from, text: message.text };
}

/** Every message of the room, oldest first. */
export function history(db: ChatDb): ChatMessage[] {
  return db.read((root) => {
    const out: ChatMessage[] = [];
    for (const message of root.messages) out.push(plain(message));
    return out;
  });
}

/**
 * The messages with these ids, oldest first; ids that are not messages (events `apply` skipped)
 * are left out. Each is found by binary search, because the list is in id order: a peer that
 * prints what just arrived does not scan the whole history per batch.
 */
export function messagesWithIds(db: ChatDb, ids: readonly MessageId[]): ChatMessage[] {
  return db.read((root) => {
    const list = root.messages;
    const found: ChatMessage[] = [];
    for (const id of ids) {
      let low = 0;
      let high = list.length;
      while (low < high) {
        const middle = (low + high) >>> 1;
        const order = MessageId.compare((list.get(middle) as StoredView).id, id);
        if (order === 0) {
          found.push(plain(list.get(middle) as StoredView));
          break;
        }
        if (order < 0) low = middle + 1;
        else high = middle;
      }
    }
    return found.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  });
}
