// Who may call the admin API: a pluggable check per request — the static bearer token (compared in constant time),
// and a JWT carrying `auth.admin`'s scopes when the gateway has JWT auth.

import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { checkAccess } from '../auth/authorize.js';
import { authError } from '../auth/challenge.js';
import { TokenVerifier } from '../auth/verify.js';
import type { AuthConfig, GatewayConfig } from '../config/schema.js';
import { GatewayError } from '../errors/gateway-error.js';
import type { Logger } from '../telemetry/log.js';

/** Reads (GET) only look; writes (PUT, POST, DELETE) change traffic or config. */
export type AdminAction = 'read' | 'write';

export interface AdminRequest {
  readonly method: string;
  readonly path?: string;
  readonly headers: IncomingHttpHeaders;
  readonly action: AdminAction;
  /** node's `req.rawHeaders`, when the caller has it: two Authorization headers are then refused (400). */
  readonly rawHeaders?: readonly string[];
}

/** Who an authorised admin call came from: the audit trail's actor and a console session's owner. */
export interface AdminPrincipal {
  /** The JWT's `sub`, or "static token". */
  readonly subject: string;
  readonly kind: 'static-token' | 'jwt';
  /** When the credential itself expires (a JWT's `exp`), epoch ms: a console session never outlives it. */
  readonly expiresAt?: number;
  /** The static token's digest: a console session opened with it ends when a reload rotates the token. */
  readonly tokenDigest?: string;
}

/**
 * Resolves (with the caller, when the authoriser knows it) when the caller may perform the request; rejects (or
 * throws) a GatewayError otherwise — 401 (GW_ERR_ADMIN_UNAUTHORIZED) for missing or wrong credentials, 403
 * (GW_ERR_ADMIN_FORBIDDEN) for a known caller that lacks the right. Authorisers compose with `anyOf`, so a JWT-scope
 * check can sit beside the static token.
 */
export type AdminAuthorizer = (request: AdminRequest) => void | AdminPrincipal | Promise<void | AdminPrincipal>;

/** A digest of a static admin token (what sessions keep instead of the token). */
export function tokenDigest(token: string): string {
  return createHash('sha256').update(token).digest('base64url');
}

/** The known caller a 403 refused (a valid JWT without the scopes), so the audit trail can name who tried. */
const refusedCallers = new WeakMap<object, AdminPrincipal>();

/** Marks `err` as the refusal of a known caller (see refusedPrincipal); returns it. */
export function markRefused<E extends object>(err: E, principal: AdminPrincipal): E {
  refusedCallers.set(err, principal);
  return err;
}

/** The caller a refusal was about, when its credential was valid but not enough. */
export function refusedPrincipal(err: unknown): AdminPrincipal | undefined {
  return typeof err === 'object' && err !== null ? refusedCallers.get(err) : undefined;
}

export const ADMIN_REALM = 'model-gateway-admin';

/** Equal strings compare in time independent of where they differ, and of their lengths (both are hashed first). */
export function tokensEqual(presented: string, expected: string): boolean {
  const a = createHash('sha256').update(presented).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

/** The bearer token in an Authorization header, or undefined when there is none. */
export function bearerToken(headers: IncomingHttpHeaders): string | undefined {
  const value = headers.authorization;
  if (value === undefined) return undefined;
  const match = /^Bearer[ ]+([A-Za-z0-9\-._~+/]+=*)[ ]*$/i.exec(value);
  return match ? match[1] : '';
}

/**
 * The static-token check. `expected` is read per request so a reloaded config can rotate the token; when it returns
 * undefined every call is refused (an admin API must never fall open).
 */
export function bearerTokenAuthorizer(expected: () => string | undefined): AdminAuthorizer {
  return ({ headers }) => {
    const presented = bearerToken(headers);
    if (presented === undefined) {
      throw new GatewayError('GW_ERR_ADMIN_UNAUTHORIZED', 'the admin API needs an Authorization: Bearer <token> header', {
        headers: { 'www-authenticate': `Bearer realm="${ADMIN_REALM}"` },
      });
    }
    const token = expected();
    if (presented === '' || token === undefined || !tokensEqual(presented, token)) {
      throw new GatewayError('GW_ERR_ADMIN_UNAUTHORIZED', 'the admin bearer token is not valid', {
        headers: { 'www-authenticate': `Bearer realm="${ADMIN_REALM}", error="invalid_token"` },
      });
    }
    return { subject: 'static token', kind: 'static-token', tokenDigest: tokenDigest(token) };
  };
}

/** Allows a request when any authoriser allows it; otherwise rethrows the most specific refusal (403 over 401). */
export function anyOf(...authorizers: AdminAuthorizer[]): AdminAuthorizer {
  return async (request) => {
    let refusal: unknown;
    for (const authorize of authorizers) {
      try {
        return (await authorize(request)) ?? undefined;
      } catch (err) {
        if (refusal === undefined || (err instanceof GatewayError && err.status === 403)) refusal = err;
      }
    }
    throw refusal ?? new GatewayError('GW_ERR_ADMIN_UNAUTHORIZED');
  };
}

/**
 * The JWT admin check, following config reloads: `currentConfig` is read per request and a new verifier (token and
 * JWKS caches) is built whenever the `auth` section changes. 401 without a valid token, 403 without the scopes and
 * claims of `auth.admin.read` or `auth.admin.write`. Without an `auth` section every call is refused (401), so
 * combined with the static token (`anyOf`) the token alone decides.
 */
export function jwtAdminAuthorizer(
  currentConfig: () => GatewayConfig,
  deps: { log: Logger; now?: () => number },
): (request: AdminRequest) => Promise<AdminPrincipal> {
  let built: { auth: AuthConfig; verifier: TokenVerifier } | undefined;
  const verifierFor = (auth: AuthConfig): TokenVerifier => {
    if (built?.auth !== auth) {
      built = { auth, verifier: new TokenVerifier(auth, { now: deps.now ?? Date.now, log: deps.log }) };
      void built.verifier.warm();
    }
    return built.verifier;
  };
  return async (request) => {
    const auth = currentConfig().auth;
    if (auth === undefined) throw authError('GW_ERR_UNAUTHENTICATED', 'model-gateway', 'no JWT auth is configured for the admin API');
    const identity = await verifierFor(auth).authenticate(request.headers, request.rawHeaders ?? []);
    if (identity === undefined) throw authError('GW_ERR_UNAUTHENTICATED', auth.realm, 'the admin API needs a bearer token');
    const exp = identity.claims.exp;
    const principal: AdminPrincipal = { subject: identity.subject, kind: 'jwt', ...(typeof exp === 'number' ? { expiresAt: exp * 1000 } : {}) };
    const denied = checkAccess(identity, auth.admin[request.action], auth.realm, `admin ${request.action} access`);
    if (denied) throw markRefused(denied, principal);
    return principal;
  };
}
