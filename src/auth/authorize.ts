// Authorisation: does a verified caller hold what a model (or an admin call) requires — scopes and claim values.

import type { AccessRequirement } from '../config/schema.js';
import type { GatewayError } from '../errors/gateway-error.js';
import type { Identity } from '../pipeline/stage.js';
import { authError } from './challenge.js';

/** What one model demands of its callers (built from `models.<m>.auth` and `auth.enforce`). */
export interface AccessPolicy {
  /** Requests without a token pass; a token that is present must still be valid. */
  readonly allowAnonymous: boolean;
  /** false: dry run — denials are counted and logged, the request goes on. */
  readonly enforce: boolean;
  readonly infer: AccessRequirement;
  readonly metadata: AccessRequirement;
}

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
