// Identity forwarding: the verified caller in gateway-owned upstream headers, and client copies of those headers removed.

import type { IncomingHttpHeaders } from 'node:http';
import type { AuthConfig } from '../config/schema.js';
import type { Identity } from '../pipeline/stage.js';

export type IdentityHeaderConfig = AuthConfig['identityHeaders'];

/** Used when auth is off, so a client still cannot pose as a verified caller to a backend that trusts these headers. */
export const DEFAULT_IDENTITY_HEADERS: IdentityHeaderConfig = { subject: 'x-auth-subject', issuer: 'x-auth-issuer', claims: {} };

/** Every header name the gateway owns for identity (lowercase). */
export function identityHeaderNames(config: IdentityHeaderConfig): string[] {
  const names = [config.subject, config.issuer, ...Object.values(config.claims)];
  if (config.payload !== undefined) names.push(config.payload);
  return [...new Set(names)];
}

/** Removes client-sent copies: whatever forwards `headers` upstream can then never pass a forged identity on. */
export function stripIdentityHeaders(headers: IncomingHttpHeaders, names: readonly string[]): void {
  for (const name of names) delete headers[name];
}

/**
 * A claim as a header value: strings, numbers, booleans and string arrays (comma-joined); other shapes are not
 * forwarded. Values outside printable ASCII are percent-encoded (UTF-8) so they can never break the header.
 */
export function claimHeaderValue(value: unknown): string | undefined {
  let text: string;
  if (typeof value === 'string') text = value;
  else if (typeof value === 'number' || typeof value === 'boolean') text = String(value);
  else if (Array.isArray(value) && value.every((v) => typeof v === 'string')) text = value.join(',');
  else return undefined;
  return /^[\x20-\x7e]*$/.test(text) ? text : encodeURIComponent(text);
}

/** The upstream headers for a verified caller. */
export function identityHeaders(identity: Identity, config: IdentityHeaderConfig): Record<string, string> {
  const out: Record<string, string> = {
    [config.subject]: claimHeaderValue(identity.subject)!,
    [config.issuer]: claimHeaderValue(identity.issuer)!,
  };
  for (const [claim, header] of Object.entries(config.claims)) {
    const value = claimHeaderValue(identity.claims[claim]);
    if (value !== undefined) out[header] = value;
  }
  if (config.payload !== undefined) out[config.payload] = Buffer.from(JSON.stringify(identity.claims)).toString('base64url');
  return out;
}
