// The ops console on the admin port: its static files (built into dist/ next to this module, uPlot vendored from npm,
// nothing from a CDN) under a strict Content-Security-Policy, and its session endpoints — log in with the admin token
// or an admin JWT, read the session (and its CSRF token), log out.

import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AdminAuthorizer, AdminPrincipal } from './auth.js';
import type { AuditTrail } from './audit.js';
import { bearerActor, liveSession, refusedActor, sessionActor } from './caller.js';
import { MAX_ADMIN_BODY_BYTES } from './routes.js';
import { cookieValue, crossOrigin, CSRF_HEADER, csrfMatches, SESSION_COOKIE, sessionCookie, type AdminRole, type SessionStore } from './sessions.js';
import { GatewayError } from '../errors/gateway-error.js';
import { RequestBody } from '../http/request-body.js';
import { peerAddress } from '../http/peer.js';

/** Where `npm run build` puts the console's files: compiled with src/admin/web/tsconfig.json, uPlot copied beside. */
export const CONSOLE_ASSETS_DIR = fileURLToPath(new URL('./web/', import.meta.url));

/**
 * Every console response's security headers: scripts, styles and connections from this origin only (no inline code,
 * nothing from elsewhere), never framed, no MIME sniffing, no referrer.
 */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
};

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.txt': 'text/plain; charset=utf-8',
};

interface Asset {
  type: string;
  body: Buffer;
}

/** The console's files, read once at start; their paths carry a digest of them all, so they can be cached for good. */
export class ConsoleAssets {
  readonly version: string;
  readonly #files: ReadonlyMap<string, Asset>;
  readonly #page: Buffer;

  private constructor(version: string, files: Map<string, Asset>, page: Buffer) {
    this.version = version;
    this.#files = files;
    this.#page = page;
  }

  /** Reads every file under `dir`; undefined when the console was not built (the page then says so). */
  static async load(dir = CONSOLE_ASSETS_DIR): Promise<ConsoleAssets | undefined> {
    let names: string[];
    try {
      names = (await readdir(dir, { recursive: true })).map((n) => n.split(path.sep).join('/')).sort();
    } catch {
      return undefined;
    }
    const files = new Map<string, Asset>();
    const hash = createHash('sha256');
    for (const name of names) {
      const type = TYPES[path.extname(name)];
      if (type === undefined) continue;
      const body = await readFile(path.join(dir, name));
      hash.update(name).update(body);
      files.set(name, { type, body });
    }
    const page = files.get('index.html');
    if (!page) return undefined;
    const version = hash.digest('hex').slice(0, 16);
    return new ConsoleAssets(version, files, Buffer.from(page.body.toString('utf8').replaceAll('{{ASSETS}}', `/console/assets/${version}`)));
  }

  /** Serves GET/HEAD /console and /console/assets/<version>/<file>; false for any other path. */
  serve(req: IncomingMessage, res: ServerResponse, urlPath: string): boolean {
    const method = req.method ?? 'GET';
    if (urlPath === '/console/') {
      res.writeHead(308, { ...SECURITY_HEADERS, location: '/console', 'content-length': 0 });
      res.end();
      return true;
    }
    let asset: Asset | undefined;
    let cache: string;
    if (urlPath === '/console') {
      asset = { type: TYPES['.html']!, body: this.#page };
      cache = 'no-cache';
    } else {
      const prefix = `/console/assets/${this.version}/`;
      asset = urlPath.startsWith(prefix) ? this.#files.get(urlPath.slice(prefix.length)) : undefined;
      cache = 'public, max-age=31536000, immutable';
    }
    if (!asset) return false;
    if (method !== 'GET' && method !== 'HEAD') {
      throw new GatewayError('GW_ERR_METHOD_NOT_ALLOWED', `method ${method.slice(0, 16)} is not allowed here; use GET, HEAD`, {
        headers: { allow: 'GET, HEAD' },
      });
    }
    res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': asset.type, 'content-length': asset.body.length, 'cache-control': cache });
    res.end(method === 'HEAD' ? undefined : asset.body);
    return true;
  }
}

export interface SessionEndpointDeps {
  sessions: SessionStore;
  authorize: AdminAuthorizer;
  /** The static token now, to end sessions opened with an older one; absent at the workers' relay (workers check). */
  staticToken?: () => string | undefined;
  audit: AuditTrail | undefined;
  secureCookie: boolean;
}

type Answer = { status: number; body: unknown; headers?: Record<string, string> };

/** The role a credential grants: write when it passes the write check, else read when it passes that; else the refusal. */
async function roleOf(authorize: AdminAuthorizer, token: string, urlPath: string): Promise<{ principal: AdminPrincipal | undefined; role: AdminRole }> {
  const request = (action: AdminRole) => ({
    method: 'POST',
    path: urlPath,
    headers: { authorization: `Bearer ${token}` },
    rawHeaders: ['authorization', `Bearer ${token}`],
    action,
  });
  try {
    return { principal: (await authorize(request('write'))) ?? undefined, role: 'write' };
  } catch (err) {
    if (!(err instanceof GatewayError) || err.status !== 403) throw err;
    return { principal: (await authorize(request('read'))) ?? undefined, role: 'read' };
  }
}

/**
 * POST /admin/session `{"token": "..."}` (log in), GET (the session, with its CSRF token), DELETE (log out). Logins
 * and logouts are audited, refused logins too.
 */
export async function sessionEndpoint(req: IncomingMessage, urlPath: string, deps: SessionEndpointDeps): Promise<Answer> {
  const method = req.method ?? 'GET';
  const { sessions } = deps;
  const id = cookieValue(req.headers, SESSION_COOKIE);
  const view = (s: NonNullable<ReturnType<SessionStore['get']>>) => ({
    subject: s.subject,
    role: s.role,
    via: s.via,
    expiresAt: new Date(s.expiresAt).toISOString(),
    csrfToken: s.csrfToken,
  });
  const record = (action: string, partial: { actor: ReturnType<typeof sessionActor>; status: number; error?: string; after?: unknown }) =>
    deps.audit?.record({
      actor: partial.actor,
      peer: peerAddress(req.socket.remoteAddress),
      ...(typeof req.headers['x-forwarded-for'] === 'string' ? { forwardedFor: req.headers['x-forwarded-for'].slice(0, 256) } : {}),
      action,
      target: null,
      request: { method, path: urlPath },
      outcome: { status: partial.status, ...(partial.error !== undefined ? { error: partial.error } : {}) },
      before: null,
      after: partial.after ?? null,
    });
  const cross = crossOrigin(req.headers, method === 'GET' || method === 'HEAD');
  if (cross !== undefined) {
    const err = new GatewayError('GW_ERR_CSRF_REJECTED', `console sessions are only opened, read and ended from the console's own origin (${cross})`);
    if (method === 'POST' || method === 'DELETE') {
      const session = id === undefined ? undefined : sessions.get(id);
      const actor = session ? sessionActor(session) : ({ subject: null, kind: 'unauthenticated', role: null } as const);
      await record(method === 'POST' ? 'session.login' : 'session.logout', { actor, status: err.status, error: err.message });
    }
    throw err;
  }
  if (method === 'GET' || method === 'HEAD') {
    if (id === undefined) throw new GatewayError('GW_ERR_ADMIN_UNAUTHORIZED', 'no console session: log in');
    return { status: 200, body: view(liveSession(id, deps)) };
  }
  const clear = { 'set-cookie': sessionCookie('', 0, deps.secureCookie) };
  if (method === 'DELETE') {
    const session = id === undefined ? undefined : sessions.get(id);
    if (!session) return { status: 200, body: { loggedOut: false }, headers: clear };
    if (!csrfMatches(session, req.headers[CSRF_HEADER])) {
      const err = new GatewayError('GW_ERR_CSRF_REJECTED', `logging out needs the session's CSRF token in the ${CSRF_HEADER} header`);
      await record('session.logout', { actor: sessionActor(session), status: err.status, error: err.message });
      throw err;
    }
    sessions.delete(id);
    await record('session.logout', { actor: sessionActor(session), status: 200 });
    return { status: 200, body: { loggedOut: true }, headers: clear };
  }
  if (method !== 'POST')
    throw new GatewayError('GW_ERR_METHOD_NOT_ALLOWED', `method ${method.slice(0, 16)} is not allowed here; use GET, POST, DELETE`, {
      headers: { allow: 'GET, POST, DELETE' },
    });
  const body = await new RequestBody(req, MAX_ADMIN_BODY_BYTES).json();
  const token = typeof body === 'object' && body !== null ? (body as { token?: unknown }).token : undefined;
  if (typeof token !== 'string' || token.length === 0)
    throw new GatewayError('GW_ERR_INVALID_REQUEST', 'the body must be {"token": "<admin token or admin JWT>"}');
  let granted: Awaited<ReturnType<typeof roleOf>>;
  try {
    granted = await roleOf(deps.authorize, token, urlPath);
  } catch (err) {
    const refusal = err instanceof GatewayError ? err : new GatewayError('GW_ERR_ADMIN_UNAUTHORIZED');
    await record('session.login', { actor: refusedActor(err), status: refusal.status, error: refusal.message });
    throw refusal;
  }
  const principal = granted.principal ?? { subject: 'caller of a custom authoriser', kind: 'static-token' as const };
  const created = sessions.create(principal, granted.role);
  const actor = { ...bearerActor(granted.principal, granted.role), role: granted.role };
  await record('session.login', { actor, status: 200, after: { role: granted.role, expiresAt: new Date(created.session.expiresAt).toISOString() } });
  return {
    status: 200,
    body: view(created.session),
    headers: { 'set-cookie': sessionCookie(created.id, sessions.maxAgeSeconds(created.session), deps.secureCookie) },
  };
}
