// Identity forwarding: the verified caller in gateway-owned upstream headers, and client copies of those headers removed.

import type { IncomingHttpHeaders } from 'node:http';
import type { AuthConfig } from '../config/schema.js';
import type { Identity } from '../pipeline/stage.js';

export type IdentityHeaderConfig = AuthConfig['identityHeaders'];

/** Used when auth is off, so a client still cannot pose as a verified caller to a backend that trusts these headers. */
export const DEFAULT_IDENTITY_HEADERS: IdentityHeaderConfig = { subject: 'x-auth-subject', issuer: 'x-auth-issuer', claims: {} };

/** Every header name the gateway owns for identity (lowercase, as configured). */
export function identityHeaderNames(config: IdentityHeaderConfig): string[] {
  const names = [config.subject, config.issuer, ...Object.values(config.claims)];
  if (config.payload !== undefined) names.push(config.payload);
  return [...new Set(names)];
}

/**
 * A header name as the many stacks that treat `-` and `_` alike see it (CGI/WSGI/PHP map both to `HTTP_X_AUTH_SUBJECT`;
 * Node lower-cases names already): `x_auth_subject` and `X-Auth-Subject` are look-alikes of `x-auth-subject`.
 */
export const canonicalHeaderName = (name: string): string => name.toLowerCase().replaceAll('_', '-');

/** The names of `headers` that are a gateway-owned name or a look-alike of one (`owned`: canonical names). */
export function ownedHeadersIn(headers: IncomingHttpHeaders, owned: ReadonlySet<string>): string[] {
  const found: string[] = [];
  for (const name in headers) if (owned.has(name) || (name.includes('_') && owned.has(canonicalHeaderName(name)))) found.push(name);
  return found;
}

/**
 * Removes client-sent copies of gateway-owned headers and their look-alikes (`owned`: canonical names): whatever
 * forwards `headers` upstream can then never pass a forged identity on, to a backend of any stack.
 */
export function stripIdentityHeaders(headers: IncomingHttpHeaders, owned: ReadonlySet<string>): void {
  for (const name of ownedHeadersIn(headers, owned)) delete headers[name];
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
