// The ops console and the audit trail at the workers' relay (server.workers > 1): the supervisor serves the page,
// holds the console sessions (checking cookie, CSRF token and origin itself), keeps the one audit trail, and relays
// one worker's live stream — whole events only, ended on logout, session expiry and shutdown.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { request } from 'undici';
import type { AuditTrail } from './audit.js';
import { markRefused, type AdminAction, type AdminAuthorizer, type AdminPrincipal } from './auth.js';
import { authorizeCall, refusedActor } from './caller.js';
import { ConsoleAssets, SECURITY_HEADERS, sessionEndpoint } from './console.js';
import { limitParam } from './disagreements.js';
import { RETRY_MS } from './events.js';
import { ACTOR_HEADER, RELAY_HEADER, encodeHeader, relayedSession, type RelayedSession } from './relayed.js';
import { MAX_AUDIT_LIMIT } from './routes.js';
import { cookieValue, SESSION_COOKIE, SessionStore } from './sessions.js';
import type { AdminConfig } from '../config/schema.js';
import type { ErrorCode } from '../errors/codes.js';
import { GatewayError } from '../errors/gateway-error.js';
import { peerAddress } from '../http/peer.js';

/** The workers the relay can reach right now: number (1-based, stable across restarts) → admin base URL. */
export type WorkerAdmins = () => ReadonlyMap<number, string>;

export interface RelayConsoleOptions {
  config: AdminConfig;
  log: Logger;
  audit: AuditTrail | undefined;
  secret: string;
  workers: WorkerAdmins;
}

interface Piped {
  res: ServerResponse;
  sessionId: string | undefined;
  abort: AbortController;
}

/** The worker a view comes from: `?worker=K`, else the first. */
export function chosenWorker(workers: ReadonlyMap<number, string>, asked: string | null): { number: number; base: string } {
  const number = asked === null ? Math.min(...workers.keys()) : Number(asked);
  const base = workers.get(number);
  if (base === undefined) {
    throw new GatewayError(
      'GW_ERR_WORKERS_UNAVAILABLE',
      asked === null ? 'no data-plane worker is ready yet' : `no ready worker ${asked.slice(0, 8)} (ready: ${[...workers.keys()].join(', ') || 'none'})`,
      { headers: { 'retry-after': '1' } },
    );
  }
  return { number, base };
}

export class RelayConsole {
  readonly #o: RelayConsoleOptions;
  readonly #sessions: SessionStore | undefined;
  readonly #assets: ConsoleAssets | undefined;
  readonly #streams = new Set<Piped>();
  #tick: NodeJS.Timeout | undefined;

  private constructor(options: RelayConsoleOptions, assets: ConsoleAssets | undefined) {
    this.#o = options;
    const c = options.config.console;
    this.#sessions = c.enabled ? new SessionStore({ ttlMs: c.sessionTtlMs, maxSessions: c.maxSessions }) : undefined;
    this.#assets = assets;
  }

  static async create(options: RelayConsoleOptions): Promise<RelayConsole> {
    return new RelayConsole(options, options.config.console.enabled ? await ConsoleAssets.load() : undefined);
  }

  /** Credentials are checked by a worker (it follows reloads of the token and the auth section): the principal or the refusal. */
  readonly #authorize: AdminAuthorizer = async ({ headers, action }) => {
    const { base } = chosenWorker(this.#o.workers(), null);
    const res = await request(new URL(`/admin/session/verify?action=${action}`, base), {
      headers: { [RELAY_HEADER]: this.#o.secret, ...(typeof headers.authorization === 'string' ? { authorization: headers.authorization } : {}) },
    });
    const body = (await res.body.json()) as { principal?: AdminPrincipal | null; error?: string; actor?: { subject: string | null; kind: string } };
    if (res.statusCode === 200) return body.principal ?? undefined;
    const code: ErrorCode =
      res.statusCode === 403 ? 'GW_ERR_ADMIN_FORBIDDEN' : res.statusCode === 401 ? 'GW_ERR_ADMIN_UNAUTHORIZED' : 'GW_ERR_WORKERS_UNAVAILABLE';
    const err = new GatewayError(code, body.error ?? `the worker answered ${res.statusCode}`);
    const actor = body.actor;
    return Promise.reject(actor?.subject && actor.kind === 'jwt' ? markRefused(err, { subject: actor.subject, kind: 'jwt' }) : err);
  };

  /**
   * What the relay answers itself — the page and the live streams (written here: 'served'), the session endpoints and
   * the audit trail (a JSON answer); undefined for everything else, which is relayed to the workers.
   */
  async serve(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    url: URL,
  ): Promise<{ status: number; body: unknown; headers?: Record<string, string> } | 'served' | undefined> {
    const sessions = this.#sessions;
    if (sessions && this.#assets && (path === '/console' || path.startsWith('/console/'))) {
      if (this.#assets.serve(req, res, path)) return 'served';
      throw new GatewayError('GW_ERR_ROUTE_NOT_FOUND', `no such console file: ${path.slice(0, 200)}`);
    }
    if (sessions && path === '/admin/session') {
      return sessionEndpoint(req, path, { sessions, authorize: this.#authorize, audit: this.#o.audit, secureCookie: this.#o.config.console.secureCookie });
    }
    if (path === '/admin/audit' && this.#o.audit) {
      await this.#caller(req, path, 'read');
      return { status: 200, body: { entries: this.#o.audit.recent(limitParam(url, 100, MAX_AUDIT_LIMIT)), trail: this.#o.audit.stats() } };
    }
    if (sessions && path === '/admin/events' && (req.method === 'GET' || req.method === 'HEAD')) {
      await this.#pipe(req, res, url, await this.#caller(req, path, 'read'));
      return 'served';
    }
    return undefined;
  }

  /** The console session a cookie caller acts for (checked here); undefined for bearer callers, whom the workers authorise. */
  sessionFor(req: IncomingMessage, path: string, action: AdminAction): Promise<RelayedSession | undefined> {
    if (!this.#sessions || req.headers.authorization !== undefined || cookieValue(req.headers, SESSION_COOKIE) === undefined) return Promise.resolve(undefined);
    return this.#caller(req, path, action).then((c) => c.session);
  }

  async #caller(req: IncomingMessage, path: string, action: AdminAction): Promise<{ session?: RelayedSession; authorization?: string }> {
    const caller = await authorizeCall(req, path, action, { authorize: this.#authorize, sessions: this.#sessions });
    if (caller.session) return { session: relayedSession(caller.session.session) };
    return typeof req.headers.authorization === 'string' ? { authorization: req.headers.authorization } : {};
  }

  /** Records a refusal the relay made itself (no worker saw the call). */
  async recordRefusal(req: IncomingMessage, path: string, err: GatewayError, action: { action: string; target: Record<string, string> | null }): Promise<void> {
    await this.#o.audit?.record({
      actor: refusedActor(err),
      peer: peerAddress(req.socket.remoteAddress),
      ...action,
      request: { method: req.method ?? 'GET', path: path.slice(0, 512) },
      outcome: { status: err.status, error: err.message },
      before: null,
      after: null,
    });
  }

  /** One worker's stream to the client, whole events at a time, so the relay's own last event never splits one. */
  async #pipe(req: IncomingMessage, res: ServerResponse, url: URL, caller: { session?: RelayedSession; authorization?: string }): Promise<void> {
    if (this.#streams.size >= this.#o.config.console.maxStreams) {
      throw new GatewayError('GW_ERR_ADMIN_STREAMS_FULL', `${this.#o.config.console.maxStreams} live streams are open already (admin.console.maxStreams)`, {
        headers: { 'retry-after': '5' },
      });
    }
    const workers = this.#o.workers();
    const { number, base } = chosenWorker(workers, url.searchParams.get('worker'));
    const abort = new AbortController();
    const upstream = await request(new URL('/admin/events', base), {
      headers: {
        [RELAY_HEADER]: this.#o.secret,
        ...(caller.authorization ? { authorization: caller.authorization } : {}),
        ...(caller.session ? { [ACTOR_HEADER]: encodeHeader(caller.session) } : {}),
      },
      signal: abort.signal,
      bodyTimeout: 0,
    });
    if (upstream.statusCode !== 200) {
      const body = await upstream.body.text();
      res.writeHead(upstream.statusCode, { ...SECURITY_HEADERS, 'content-type': 'application/json', 'cache-control': 'no-store' });
      return void res.end(body);
    }
    res.writeHead(200, {
      ...SECURITY_HEADERS,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-model-gateway-worker': `${number}/${workers.size}`,
    });
    req.socket.setTimeout(0);
    const stream: Piped = { res, sessionId: caller.session ? cookieValue(req.headers, SESSION_COOKIE) : undefined, abort };
    this.#streams.add(stream);
    this.#arm();
    res.write(`retry: ${RETRY_MS}\n\nevent: relay\ndata: ${JSON.stringify({ worker: number, workers: workers.size })}\n\n`);
    res.on('close', () => this.#drop(stream));
    let buffer = '';
    upstream.body.setEncoding('utf8');
    upstream.body.on('data', (chunk: string) => {
      buffer += chunk;
      const cut = buffer.lastIndexOf('\n\n');
      if (cut < 0) return;
      if (!res.writableEnded) res.write(buffer.slice(0, cut + 2));
      buffer = buffer.slice(cut + 2);
    });
    upstream.body.on('error', () => undefined);
    upstream.body.on('close', () => {
      if (!res.writableEnded) res.end();
      this.#drop(stream);
    });
  }

  #arm(): void {
    this.#tick ??= setInterval(() => {
      for (const s of [...this.#streams]) if (s.sessionId !== undefined && !this.#sessions?.get(s.sessionId)) this.#end(s, 'session-ended');
    }, 1000).unref();
  }

  #end(stream: Piped, reason: string): void {
    if (!stream.res.writableEnded) stream.res.end(`event: end\ndata: ${JSON.stringify({ reason })}\n\n`);
    stream.abort.abort();
    this.#drop(stream);
  }

  #drop(stream: Piped): void {
    this.#streams.delete(stream);
    if (this.#streams.size === 0 && this.#tick) {
      clearInterval(this.#tick);
      this.#tick = undefined;
    }
  }

  /** Ends every relayed stream (shutdown). */
  close(): void {
    for (const s of [...this.#streams]) this.#end(s, 'shutdown');
  }
}
