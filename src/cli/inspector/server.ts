/**
 * The web inspector: a small read-only HTTP server (node:http) in front of an open database and,
 * optionally, its replicator. It serves one self-contained page and the JSON it polls:
 *
 * - `GET /` — the page (inline CSS and JS, no external requests);
 * - `GET /api/summary` — stats, heads, cutoff and its hashes, peers and their sync state;
 * - `GET /api/events?limit=&before=` — the event timeline, newest first, with a payload summary
 *   and marks for failed applies and for events pruned or removed while the inspector ran;
 * - `GET /api/explain?id=` — why an event is still stored (`db.explain`);
 * - `GET /api/view?maxEntries=` — the view as a tree with the writer of every value
 *   (`db.inspectView`);
 * - `GET /api/changes` — server-sent events: `change` whenever the log changes.
 *
 * It changes nothing: no endpoint writes, and only GET is served. It listens on 127.0.0.1 by
 * default, and then answers only requests addressed to a loopback name, so a web page elsewhere
 * cannot reach it through DNS rebinding.
 *
 * @example
 * const inspector = await startInspector({ db, replicator });
 * console.log(`inspector at ${inspector.url}`);
 * // …
 * await inspector.close();
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Codec, messagePackCodec } from '../../core/codec.js';
import type { Database } from '../../core/database.js';
import { MessageId } from '../../core/message-id.js';
import { ErrorCode, NoatunError, quote } from '../../errors.js';
import type { Replicator } from '../../net/replicator.js';
import { INSPECTOR_PAGE } from './page.js';

/** Options of {@link startInspector}. */
export interface InspectorOptions {
  /** The open database to show. */
  // biome-ignore lint/suspicious/noExplicitAny: the inspector shows databases of any event and schema type.
  readonly db: Database<any, any>;
  /** Its replicator, to show peers and their sync state. */
  readonly replicator?: Replicator;
  /**
   * TCP port; 0 picks a free one (see the returned `url`).
   * @default 0
   */
  readonly port?: number;
  /**
   * Interface to listen on. Anything but loopback exposes the database's contents to the network.
   * @default '127.0.0.1'
   */
  readonly host?: string;
  /** The codec of the database's events, to show their payloads (default: MessagePack). */
  readonly codec?: Codec<unknown>;
}

/** A running inspector. */
export interface InspectorHandle {
  /** Where the page is, e.g. `http://127.0.0.1:43117/`. */
  readonly url: string;
  /** Stops the server and ends open connections. Idempotent. */
  close(): Promise<void>;
}

/**
 * Events shown per timeline request.
 * @default 200
 */
export const DEFAULT_TIMELINE_LIMIT = 200;

/** The largest timeline page a request may ask for. */
const MAX_TIMELINE_LIMIT = 5000;

/**
 * Entries per map or list in the view tree.
 * @default 200
 */
export const DEFAULT_VIEW_ENTRIES = 200;

/** Events pruned or removed while the inspector runs, kept to mark them in the timeline. */
const MAX_REMEMBERED_REMOVALS = 1000;

/** Characters of a payload summary. */
const SUMMARY_CHARS = 160;

/** Change notifications are coalesced to at most one per this many ms. */
const CHANGE_THROTTLE_MS = 100;

/** An event that left the log while the inspector watched. */
interface Removal {
  readonly id: string;
  readonly time: number;
  /** `pruned` when the database's pruned count grew with it, else `removed` (db.remove, damage). */
  readonly reason: 'pruned' | 'removed';
  /** When it was seen leaving (ms). */
  readonly at: number;
}

/** JSON with ids as hex strings, bytes as hex, bigints as decimal strings. */
function toJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v instanceof MessageId) return v.toString();
    if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex');
    if (typeof v === 'bigint') return v.toString();
    if (v instanceof Map) return Object.fromEntries(v);
    return v;
  });
}

/** A short, readable summary of an event's payload (MessagePack decoded, else its size). */
function summarize(decode: (bytes: Uint8Array) => unknown, payload: Uint8Array): string {
  let text: string;
  try {
    text = toJson(decode(payload)) ?? 'undefined';
  } catch {
    // Not MessagePack (a database with its own codec): show what it is, not garbage.
    return `<${payload.length} bytes>`;
  }
  return text.length > SUMMARY_CHARS ? `${text.slice(0, SUMMARY_CHARS - 1)}…` : text;
}

/** Loopback names a browser on this machine uses; other Host headers are refused on loopback. */
function isLoopbackHost(hostHeader: string | undefined): boolean {
  if (hostHeader === undefined) return false;
  const name = hostHeader.startsWith('[') ? hostHeader.slice(0, hostHeader.indexOf(']') + 1) : hostHeader.split(':')[0]!;
  return name === 'localhost' || name === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(name);
}

function isLoopbackInterface(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/**
 * Throws `INVALID_ARGUMENT` for a host that names no interface: an empty one is every interface to
 * Node (an unset `$HOST` exposed the data to the network).
 */
export function checkInspectorHost(host: unknown): void {
  if (typeof host !== 'string' || host.trim() === '') {
    throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `the inspector's host must name an interface (127.0.0.1, or 0.0.0.0 for every one), got ${typeof host === 'string' ? quote(host) : String(host)}`);
  }
}

/** A bad request: the message goes back to the client as JSON with status 400. */
class BadRequest extends Error {}

/**
 * Starts the web inspector for `db` (and `replicator`) and resolves once it listens.
 *
 * @example
 * const { url, close } = await startInspector({ db, port: 8080 });
 */
export async function startInspector(options: InspectorOptions): Promise<InspectorHandle> {
  const { db, replicator } = options;
  const host = options.host ?? '127.0.0.1';
  checkInspectorHost(host);
  const checkHost = isLoopbackInterface(host);
  const codec = options.codec ?? messagePackCodec<unknown>();
  const decode = (bytes: Uint8Array) => codec.decode(bytes);
  const removals = new Map<string, Removal>();
  const streams = new Set<http.ServerResponse>();
  let version = 0;
  let notifyTimer: NodeJS.Timeout | undefined;
  let closed = false;

  const notify = (): void => {
    version++;
    // Listeners run inside the database call that changed the log: only schedule here.
    notifyTimer ??= setTimeout(() => {
      notifyTimer = undefined;
      for (const stream of streams) stream.write(`event: change\ndata: ${version}\n\n`);
    }, CHANGE_THROTTLE_MS);
  };

  // Pruned events counted so far: a batch of removals is "pruned" when the database's pruned
  // count has grown by at least its size beyond what earlier batches were credited with.
  let creditedPruned = db.stats().pruned;
  const unsubscribe = db.subscribe({
    stored: notify,
    removed: (ids) => {
      const gone = ids.map((bytes) => MessageId.fromBytes(bytes));
      // The listener may not call into the database; the pruned count is read just after, in
      // order of the batches, so several batches before the microtask runs are told apart.
      queueMicrotask(() => {
        if (closed) return;
        let reason: Removal['reason'] = 'removed';
        try {
          if (db.stats().pruned - creditedPruned >= gone.length) {
            reason = 'pruned';
            creditedPruned += gone.length;
          }
        } catch {
          // Closed meanwhile: the removal is still worth showing.
        }
        const at = Date.now();
        for (const id of gone) removals.set(id.toString(), { id: id.toString(), time: id.timestamp, reason, at });
        for (const key of removals.keys()) {
          if (removals.size <= MAX_REMEMBERED_REMOVALS) break;
          removals.delete(key);
        }
      });
      notify();
    },
  });

  const summary = () => {
    const stats = db.stats();
    const cutoff = db.cutoffState();
    return {
      path: db.path,
      version,
      now: Date.now(),
      stats,
      heads: db.heads().map((id) => ({ id: id.toString(), time: id.timestamp })),
      cutoff: { ...cutoff, strideMs: db.cutoffStrideMs },
      failures: db.failures().map((f) => ({ id: f.id.toString(), error: f.error })),
      replicator:
        replicator === undefined
          ? null
          : { peerId: replicator.peerId, multiaddrs: replicator.multiaddrs, peers: replicator.peers() },
    };
  };

  const events = (query: URLSearchParams) => {
    const limitText = query.get('limit');
    const limit = limitText === null ? DEFAULT_TIMELINE_LIMIT : Number(limitText);
    if (!(Number.isSafeInteger(limit) && limit > 0 && limit <= MAX_TIMELINE_LIMIT)) {
      throw new BadRequest(`limit must be 1 to ${MAX_TIMELINE_LIMIT}`);
    }
    const beforeText = query.get('before');
    const before = beforeText === null ? undefined : parseId(beforeText);
    // Ids are cheap to walk (keys only); envelopes are read only for the page shown. The newest
    // `limit` ids before `before` are kept, trimming in chunks so the walk stays linear.
    let ids: Uint8Array[] = [];
    let total = 0;
    let skipped = 0;
    for (const id of db.ids()) {
      total++;
      if (before !== undefined && Buffer.compare(id, before.bytes) >= 0) continue;
      ids.push(id);
      if (ids.length >= 2 * limit) {
        skipped += ids.length - limit;
        ids = ids.slice(ids.length - limit);
      }
    }
    if (ids.length > limit) {
      skipped += ids.length - limit;
      ids = ids.slice(ids.length - limit);
    }
    const failed = new Set(db.failures().map((f) => f.id.toString()));
    const heads = new Set(db.heads().map((id) => id.toString()));
    const list = ids.reverse().map((bytes) => {
      const id = MessageId.fromBytes(bytes);
      const message = db.message(id);
      const key = id.toString();
      return {
        id: key,
        time: id.timestamp,
        parents: message?.parents.map((p) => p.toString()) ?? [],
        bytes: message?.bytes.length ?? 0,
        summary: message === undefined ? '' : summarize(decode, message.payload),
        failed: failed.has(key),
        head: heads.has(key),
        state: 'stored',
      };
    });
    const gone = [...removals.values()]
      .filter((r) => before === undefined || r.id < before.toString())
      .sort((a, b) => (a.id < b.id ? 1 : -1))
      .slice(0, limit);
    return { total, shown: list.length, more: skipped > 0, events: list, removed: gone };
  };

  const explain = (query: URLSearchParams) => {
    const text = query.get('id');
    if (text === null) throw new BadRequest('give the event id: ?id=<32 hex chars>');
    const id = parseId(text);
    const message = db.message(id);
    return {
      ...db.explain(id),
      time: id.timestamp,
      summary: message === undefined ? null : summarize(decode, message.payload),
      parents: message?.parents ?? [],
      removal: removals.get(id.toString()) ?? null,
    };
  };

  const view = (query: URLSearchParams) => {
    const text = query.get('maxEntries');
    const maxEntries = text === null ? DEFAULT_VIEW_ENTRIES : Number(text);
    if (!(Number.isSafeInteger(maxEntries) && maxEntries >= 0)) throw new BadRequest('maxEntries must be a whole number');
    return db.inspectView({ maxEntries });
  };

  const routes: Record<string, (query: URLSearchParams) => unknown> = {
    '/api/summary': summary,
    '/api/events': events,
    '/api/explain': explain,
    '/api/view': view,
  };

  const server = http.createServer((request, response) => {
    response.setHeader('Cache-Control', 'no-store');
    response.setHeader('X-Content-Type-Options', 'nosniff');
    if (checkHost && !isLoopbackHost(request.headers.host)) {
      sendJson(response, 403, { error: 'this inspector answers only on its loopback address' });
      return;
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.setHeader('Allow', 'GET, HEAD');
      sendJson(response, 405, { error: 'the inspector is read-only' });
      return;
    }
    const url = new URL(request.url ?? '/', 'http://inspector');
    if (url.pathname === '/' || url.pathname === '/index.html') {
      response.writeHead(200, {
        'Content-Type': 'text/html; charset=utf-8',
        // The page is self-contained: nothing but its own inline code and this server's JSON.
        'Content-Security-Policy':
          "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:",
      });
      response.end(INSPECTOR_PAGE);
      return;
    }
    if (url.pathname === '/api/changes') {
      response.writeHead(200, { 'Content-Type': 'text/event-stream', Connection: 'keep-alive' });
      response.write(`retry: 1000\nevent: change\ndata: ${version}\n\n`);
      streams.add(response);
      request.on('close', () => streams.delete(response));
      return;
    }
    const route = routes[url.pathname];
    if (route === undefined) {
      sendJson(response, 404, { error: `no such endpoint: ${url.pathname}` });
      return;
    }
    try {
      sendJson(response, 200, route(url.searchParams));
    } catch (error) {
      if (error instanceof BadRequest) sendJson(response, 400, { error: error.message });
      else if (error instanceof NoatunError) sendJson(response, error.code === 'CLOSED' ? 503 : 500, { error: error.message, code: error.code });
      else sendJson(response, 500, { error: String(error) });
    }
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  }).catch((error: unknown) => {
    unsubscribe();
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') {
      throw new NoatunError(ErrorCode.ADDRESS_IN_USE, `the inspector cannot listen on ${host}:${options.port}: the port is in use`);
    }
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EADDRNOTAVAIL' || code === 'EAI_FAIL') {
      throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `the inspector cannot listen on host ${host}: ${code} (no interface of this machine has that address)`, { cause: error });
    }
    throw error;
  });

  const address = server.address() as AddressInfo;
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${shownHost}:${address.port}/`,
    close(): Promise<void> {
      closing ??= new Promise<void>((resolve) => {
        closed = true;
        unsubscribe();
        if (notifyTimer !== undefined) clearTimeout(notifyTimer);
        for (const stream of streams) stream.end();
        streams.clear();
        server.close(() => resolve());
        // Event streams and idle keep-alive connections would hold close() open.
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

function parseId(text: string): MessageId {
  if (!/^[0-9a-f]{32}$/.test(text)) throw new BadRequest('an event id is 32 lowercase hex characters');
  return MessageId.parse(text);
}

function sendJson(response: http.ServerResponse, status: number, body: unknown): void {
  const text = toJson(body);
  response.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  response.end(text);
}
