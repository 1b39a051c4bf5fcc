// Who is calling the admin API and may they: a bearer token exactly as before (the CLI, scripts), or else a console
// session cookie — with the session's role, and for a change its CSRF token and a same-origin request.

import type { IncomingMessage } from 'node:http';
import { ADMIN_REALM, refusedPrincipal, tokenDigest, type AdminAction, type AdminAuthorizer, type AdminPrincipal } from './auth.js';
import type { AuditActor } from './audit.js';
import { cookieValue, crossOrigin, CSRF_HEADER, csrfMatches, SESSION_COOKIE, type ConsoleSession, type SessionStore } from './sessions.js';
import { relayedActor, type RelayedSession } from './relayed.js';
import { GatewayError } from '../errors/gateway-error.js';
import type { ErrorCode } from '../errors/codes.js';

export interface AdminCaller {
  readonly actor: AuditActor;
  /** Set when the call came with a console session. */
  readonly session?: { readonly id: string; readonly session: ConsoleSession };
}

export interface CallerDeps {
  authorize: AdminAuthorizer;
  /** Console sessions; undefined when the console is off (cookies are then ignored). */
  sessions: SessionStore | undefined;
  /**
   * The static admin token now (a reload may rotate it, which ends the sessions opened with the old one). Absent where
   * the token is not known (the workers' relay): the worker checks the session's token digest instead.
   */
  staticToken?: () => string | undefined;
}

/** The caller a refusal was about, when it is known (a session without the right, a JWT without the scope). */
const refusedActors = new WeakMap<object, AuditActor>();

export function refusedActor(err: unknown): AuditActor {
  const known = typeof err === 'object' && err !== null ? refusedActors.get(err) : undefined;
  if (known) return known;
  const principal = refusedPrincipal(err);
  if (principal) return { subject: principal.subject, kind: principal.kind, role: null };
  return { subject: null, kind: 'unauthenticated', role: null };
}

function refuse(code: ErrorCode, message: string, actor: AuditActor): GatewayError {
  const err = new GatewayError(code, message, code === 'GW_ERR_ADMIN_UNAUTHORIZED' ? { headers: { 'www-authenticate': `Bearer realm="${ADMIN_REALM}"` } } : {});
  refusedActors.set(err, actor);
  return err;
}

/** The audit actor of a principal authorised by bearer token for `action`. */
export function bearerActor(principal: AdminPrincipal | undefined, action: AdminAction): AuditActor {
  if (!principal) return { subject: null, kind: 'custom', role: action };
  return { subject: principal.subject, kind: principal.kind, role: principal.kind === 'static-token' ? 'write' : action };
}

/** The actor of a console session. */
export function sessionActor(session: ConsoleSession): AuditActor {
  return { subject: session.subject, kind: 'session', role: session.role, via: session.via };
}

/**
 * Authorises one admin call or throws the refusal (401/403, with the caller when known). A request with an
 * Authorization header — or without a session cookie — is authorised exactly as before the console existed.
 */
export async function authorizeCall(req: IncomingMessage, path: string, action: AdminAction, deps: CallerDeps): Promise<AdminCaller> {
  const id = cookieValue(req.headers, SESSION_COOKIE);
  if (req.headers.authorization !== undefined || id === undefined || !deps.sessions) {
    const principal = await deps.authorize({ method: req.method ?? 'GET', path, headers: req.headers, rawHeaders: req.rawHeaders, action });
    return { actor: bearerActor(principal ?? undefined, action) };
  }
  const session = liveSession(id, deps);
  const actor = sessionActor(session);
  const cross = crossOrigin(req.headers, action === 'read');
  if (cross !== undefined) throw refuse('GW_ERR_CSRF_REJECTED', `a console session may only be used from the console's own origin (${cross})`, actor);
  if (action === 'write') {
    if (!csrfMatches(session, req.headers[CSRF_HEADER]))
      throw refuse('GW_ERR_CSRF_REJECTED', `a console call that changes state needs the session's CSRF token in the ${CSRF_HEADER} header`, actor);
    if (session.role !== 'write')
      throw refuse('GW_ERR_ADMIN_FORBIDDEN', `${session.subject}'s console session is read-only: the login token does not grant admin write access`, actor);
  }
  return { actor, session: { id, session } };
}

/** The session behind a cookie, or a 401: unknown, ended, expired, or opened with a static token since rotated. */
export function liveSession(id: string, deps: Pick<CallerDeps, 'sessions' | 'staticToken'>): ConsoleSession {
  const unknown = { subject: null, kind: 'session', role: null } as const;
  const session = deps.sessions?.get(id);
  if (!session) throw refuse('GW_ERR_ADMIN_UNAUTHORIZED', 'the console session has ended or expired: log in again', unknown);
  if (session.tokenDigest !== undefined && deps.staticToken) {
    const token = deps.staticToken();
    if (token === undefined || tokenDigest(token) !== session.tokenDigest) {
      deps.sessions!.delete(id);
      throw refuse('GW_ERR_ADMIN_UNAUTHORIZED', 'the admin token was changed since this console session began: log in again', sessionActor(session));
    }
  }
  return session;
}

/**
 * A call the relay made for one of its console sessions (it checked the cookie, the CSRF token and the origin): the
 * role still decides, and a session opened with a static token since rotated is refused here, where the token is known.
 */
export function relayedCaller(session: RelayedSession, action: AdminAction, staticToken: () => string | undefined): AdminCaller {
  const actor = relayedActor(session);
  if (session.tokenDigest !== undefined) {
    const token = staticToken();
    if (token === undefined || tokenDigest(token) !== session.tokenDigest)
      throw refuse('GW_ERR_ADMIN_UNAUTHORIZED', 'the admin token was changed since this console session began: log in again', actor);
  }
  if (action === 'write' && session.role !== 'write')
    throw refuse('GW_ERR_ADMIN_FORBIDDEN', `${session.subject}'s console session is read-only: the login token does not grant admin write access`, actor);
  return { actor };
}
