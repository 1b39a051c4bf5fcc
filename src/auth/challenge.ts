// RFC 6750 responses: the WWW-Authenticate challenge and the typed errors the auth stage throws.

import type { ErrorCode } from '../errors/codes.js';
import { GatewayError } from '../errors/gateway-error.js';

export type BearerError = 'invalid_request' | 'invalid_token' | 'insufficient_scope';

/**
 * `Bearer realm="..."` plus, when a token was presented, its `error` (and the scopes needed for insufficient_scope).
 * No error_description: the JSON body explains, and the header stays a stable, exactly testable value.
 */
export function challenge(realm: string, error?: BearerError, scopes: readonly string[] = []): string {
  let value = `Bearer realm="${realm}"`;
  if (error !== undefined) value += `, error="${error}"`;
  if (error === 'insufficient_scope' && scopes.length > 0) value += `, scope="${scopes.join(' ')}"`;
  return value;
}

const BEARER_ERROR: Partial<Record<ErrorCode, BearerError>> = {
  GW_ERR_INVALID_TOKEN: 'invalid_token',
  GW_ERR_AUTH_KEYS_UNAVAILABLE: 'invalid_token',
  GW_ERR_AUTH_INVALID_REQUEST: 'invalid_request',
  GW_ERR_INSUFFICIENT_SCOPE: 'insufficient_scope',
  GW_ERR_FORBIDDEN: 'insufficient_scope',
};

/** An auth failure with its challenge header. `message` is shown to the client: it never contains the token. */
export function authError(code: ErrorCode, realm: string, message?: string, options: { scopes?: readonly string[]; cause?: unknown } = {}): GatewayError {
  return new GatewayError(code, message, {
    cause: options.cause,
    headers: { 'www-authenticate': challenge(realm, BEARER_ERROR[code], options.scopes) },
  });
}
