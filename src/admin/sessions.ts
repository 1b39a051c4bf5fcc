// Console sessions: the admin token (or an admin JWT) exchanged at login for a random session id in an HttpOnly,
// SameSite=Strict cookie, held server-side with its role, its subject, an expiry and a CSRF token bound to it.

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { AdminPrincipal } from './auth.js';

export type AdminRole = 'read' | 'write';

/** The cookie's name. Not `__Host-`: that prefix needs `Secure`, and the admin port usually speaks plain HTTP on loopback. */
export const SESSION_COOKIE = 'mg_console_session';
/** The header every state-changing console call carries the session's CSRF token in. */
export const CSRF_HEADER = 'x-csrf-token';

export interface ConsoleSession {
  readonly subject: string;
  /** The credential presented at login. */
  readonly via: AdminPrincipal['kind'];
  readonly role: AdminRole;
  readonly createdAt: number;
  readonly expiresAt: number;
  readonly csrfToken: string;
  /** For a static-token login: a digest of that token, so rotating the token ends the session. */
  readonly tokenDigest?: string;
}

export interface SessionStoreOptions {
  ttlMs: number;
  maxSessions: number;
  now?: () => number;
}

const digest = (text: string): string => createHash('sha256').update(text).digest('base64url');

/** 256 random bits, URL-safe. */
const randomToken = (): string => randomBytes(32).toString('base64url');

export class SessionStore {
  readonly #o: Required<SessionStoreOptions>;
  /** Keyed by a digest of the id: a lookup's timing says nothing about ids, and a heap dump holds no usable cookie. */
  readonly #sessions = new Map<string, ConsoleSession>();

  constructor(options: SessionStoreOptions) {
    this.#o = { now: Date.now, ...options };
  }

  /** A new session for `principal` with `role`; the oldest session ends when the store is full. */
  create(principal: AdminPrincipal, role: AdminRole): { id: string; session: ConsoleSession } {
    this.#sweep();
    while (this.#sessions.size >= this.#o.maxSessions) this.#sessions.delete(this.#sessions.keys().next().value!);
    const now = this.#o.now();
    const id = randomToken();
    const session: ConsoleSession = {
      subject: principal.subject,
      via: principal.kind,
      role,
      createdAt: now,
      // A JWT's own expiry ends the session sooner: a session never outlives the credential it was opened with.
      expiresAt: Math.min(now + this.#o.ttlMs, principal.expiresAt ?? Infinity),
      csrfToken: randomToken(),
      ...(principal.tokenDigest !== undefined ? { tokenDigest: principal.tokenDigest } : {}),
    };
    this.#sessions.set(digest(id), session);
    return { id, session };
  }

  /** The live session with this id, or undefined (unknown, ended, or expired — an expired one is dropped). */
  get(id: string | undefined): ConsoleSession | undefined {
    if (id === undefined || id.length === 0 || id.length > 128) return undefined;
    const key = digest(id);
    const session = this.#sessions.get(key);
    if (session && session.expiresAt <= this.#o.now()) {
      this.#sessions.delete(key);
      return undefined;
    }
    return session;
  }

  /** Ends a session (logout); true when there was one. */
  delete(id: string | undefined): boolean {
    return id !== undefined && this.#sessions.delete(digest(id));
  }

  /** Live sessions. */
  get size(): number {
    this.#sweep();
    return this.#sessions.size;
  }

  /** Seconds until `session` expires, for the cookie's Max-Age. */
  maxAgeSeconds(session: ConsoleSession): number {
    return Math.max(0, Math.round((session.expiresAt - this.#o.now()) / 1000));
  }

  #sweep(): void {
    const now = this.#o.now();
    for (const [key, s] of this.#sessions) if (s.expiresAt <= now) this.#sessions.delete(key);
  }
}

/** The presented CSRF token equals the session's (compared in constant time). */
export function csrfMatches(session: ConsoleSession, presented: string | string[] | undefined): boolean {
  if (typeof presented !== 'string' || presented.length === 0 || presented.length > 256) return false;
  return timingSafeEqual(createHash('sha256').update(presented).digest(), createHash('sha256').update(session.csrfToken).digest());
}

/** The value of cookie `name` in a Cookie header (RFC 6265 pairs separated by `;`). */
export function cookieValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const header = headers.cookie;
  if (header === undefined) return undefined;
  for (const pair of header.split(';')) {
    const eq = pair.indexOf('=');
    if (eq > 0 && pair.slice(0, eq).trim() === name) return pair.slice(eq + 1).trim();
  }
  return undefined;
}

/** The Set-Cookie value opening a session (or, with maxAge 0 and an empty id, ending it in the browser). */
export function sessionCookie(id: string, maxAgeSeconds: number, secure: boolean): string {
  return `${SESSION_COOKIE}=${id}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${maxAgeSeconds}${secure ? '; Secure' : ''}`;
}

/**
 * Whether a browser says the request came from another origin: `Sec-Fetch-Site` other than same-origin (a read may
 * also be `none`, a navigation), or an `Origin` whose host is not the one the request was sent to. Requests from
 * non-browsers carry neither and pass; the CSRF token is what guards them.
 */
export function crossOrigin(headers: IncomingHttpHeaders, read = false): string | undefined {
  const site = headers['sec-fetch-site'];
  // `none`: the operator typed the URL or opened a bookmark — a navigation, never a forged change.
  if (site !== undefined && site !== 'same-origin' && !(read && site === 'none')) return `Sec-Fetch-Site is ${String(site).slice(0, 32)}`;
  const origin = headers.origin;
  if (origin !== undefined) {
    let host: string | undefined;
    try {
      host = new URL(origin).host;
    } catch {
      host = undefined;
    }
    if (host === undefined || host !== headers.host) return `Origin ${origin.slice(0, 100)} is not this console's`;
  }
  return undefined;
}
