// Authorisation: does a verified caller hold what a model (or an admin call) requires — scopes and claim values.

import type { IncomingHttpHeaders } from 'node:http';
import type { AccessRequirement, AuthConfig, GatewayConfig } from '../config/schema.js';
import type { GatewayError } from '../errors/gateway-error.js';
import type { Identity } from '../pipeline/stage.js';
import type { Logger } from '../telemetry/log.js';
import { authError } from './challenge.js';
import { TokenVerifier } from './verify.js';

/** The denial for a caller that lacks something the requirement asks for; undefined when it holds everything. */
export function checkAccess(identity: Identity, requirement: AccessRequirement, realm: string, what: string): GatewayError | undefined {
  const missing = requirement.scopes.filter((s) => !identity.scopes.has(s));
  if (missing.length > 0) {
    return authError('GW_ERR_INSUFFICIENT_SCOPE', realm, `${what} needs the scope${missing.length > 1 ? 's' : ''} ${missing.map((s) => `'${s}'`).join(', ')}`, {
      scopes: requirement.scopes,
    });
  }
  for (const [claim, accepted] of Object.entries(requirement.claims)) {
    if (!claimMatches(identity.claims[claim], accepted)) {
      return authError('GW_ERR_FORBIDDEN', realm, `${what} needs the claim '${claim}' to be one of the accepted values`);
    }
  }
  return undefined;
}

function claimMatches(value: unknown, accepted: readonly (string | number | boolean)[]): boolean {
  if (Array.isArray(value)) return value.some((v) => accepted.includes(v as string | number | boolean));
  return accepted.includes(value as string | number | boolean);
}

/** What an admin call does: reads (GET/HEAD) or changes state (everything else). */
export type AdminAccess = 'read' | 'write';

/** Structurally the admin server's AdminRequest (src/admin-auth.ts), so this plugs straight into it. */
export interface AdminAuthRequest {
  readonly method: string;
  readonly headers: IncomingHttpHeaders;
  readonly action: AdminAccess;
  readonly path?: string;
  /** node's `req.rawHeaders`, when the caller has it: two Authorization headers are then refused (400). */
  readonly rawHeaders?: readonly string[];
}

/**
 * Authorises an admin API request by JWT: 401 without a valid token, 403 without the scopes and claims of
 * `auth.admin.read` or `auth.admin.write`. Rejects with a GatewayError carrying WWW-Authenticate.
 */
export type JwtAdminAuthorizer = (request: AdminAuthRequest) => Promise<void>;

/**
 * The JWT admin check, following config reloads: `currentConfig` is read per request and a new verifier (token and
 * JWKS caches) is built whenever the `auth` section changes. Without an `auth` section every call is refused (401),
 * so combined with the static token (`anyOf`) the token alone decides.
 */
export function createAdminAuthorizer(currentConfig: () => GatewayConfig, deps: { log: Logger; now?: () => number }): JwtAdminAuthorizer {
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
    const denied = checkAccess(identity, auth.admin[request.action], auth.realm, `admin ${request.action} access`);
    if (denied) throw denied;
  };
}
