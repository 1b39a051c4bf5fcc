// Bearer token verification: one strict path from the Authorization header to a verified Identity (RFC 8725, RFC 6750).

import type { IncomingHttpHeaders } from 'node:http';
import { decodeJwt, decodeProtectedHeader, errors, jwtVerify, type JWTPayload, type ProtectedHeaderParameters } from 'jose';
import type { AuthConfig, IssuerConfig, JwsAlgorithm } from '../config/schema.js';
import type { GatewayError } from '../errors/gateway-error.js';
import type { Identity } from '../pipeline/stage.js';
import type { Logger } from '../telemetry/log.js';
import { authError } from './challenge.js';
import { createKeySource, KeyLookupError, type KeySource, type RemoteKeySources } from './jwks.js';
import { AuthStats } from './stats.js';
import { TokenCache } from './token-cache.js';

/** RFC 6750 b64token. */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;
const MAX_KID_LENGTH = 256;

export interface VerifierDeps {
  /** Epoch ms; drives `exp`/`nbf` checks, the token cache and JWKS cooldowns. */
  now: () => number;
  log: Logger;
  stats?: AuthStats;
  fetch?: typeof fetch;
  /** Process-wide remote key sources, so their key sets survive config reloads. */
  remoteSources?: RemoteKeySources;
}

interface TrustedIssuer {
  config: IssuerConfig;
  keys: KeySource;
}

/**
 * The bearer token of a request: undefined when there is none (no Authorization header, or another scheme such as
 * Basic); throws 400 for two tokens and 401 for an empty or malformed one.
 */
export function readBearerToken(headers: IncomingHttpHeaders, rawHeaders: readonly string[], realm: string): string | undefined {
  let count = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) if (rawHeaders[i]!.toLowerCase() === 'authorization') count++;
  // Node keeps only the first of repeated Authorization headers; which one a proxy would pick is anyone's guess.
  if (count > 1) throw authError('GW_ERR_AUTH_INVALID_REQUEST', realm, 'more than one Authorization header: send exactly one bearer token');
  const value = headers.authorization?.trim();
  if (value === undefined || value === '') return undefined;
  const space = value.search(/[ \t]/);
  const scheme = space < 0 ? value : value.slice(0, space);
  if (scheme.toLowerCase() !== 'bearer') return undefined;
  const token = space < 0 ? '' : value.slice(space + 1).trim();
  if (token === '') throw authError('GW_ERR_INVALID_TOKEN', realm, 'the bearer token is empty');
  if (/[\s,]/.test(token))
    throw authError('GW_ERR_AUTH_INVALID_REQUEST', realm, 'the Authorization header holds more than one credential: send exactly one bearer token');
  if (!B64TOKEN.test(token)) throw authError('GW_ERR_INVALID_TOKEN', realm, 'the bearer token contains characters a token cannot have');
  return token;
}

/** Scopes from `scope` (space-separated, RFC 8693/9068) and `scp` (string or array, as some IdPs send it). */
export function scopesOf(claims: Readonly<Record<string, unknown>>): Set<string> {
  const scopes = new Set<string>();
  for (const value of [claims.scope, claims.scp]) {
    const items = typeof value === 'string' ? value.split(' ') : Array.isArray(value) ? value : [];
    for (const item of items) if (typeof item === 'string' && item !== '') scopes.add(item);
  }
  return scopes;
}

/** What a lookup found: the identity (undefined: no token at all), or a verification still to finish. */
export type Lookup = { identity: Identity | undefined } | { pending: Promise<Identity> };
const NO_TOKEN: Lookup = { identity: undefined };

function dotsIn(token: string): number {
  let n = 0;
  for (let i = token.indexOf('.'); i >= 0; i = token.indexOf('.', i + 1)) n++;
  return n;
}

/** A verified identity's `exp`, seconds (always present: `exp` is a required claim). */
const expOf = (identity: Identity): number => identity.claims.exp as number;

export class TokenVerifier {
  readonly realm: string;
  readonly stats: AuthStats;
  readonly #config: AuthConfig;
  readonly #deps: VerifierDeps;
  readonly #issuers = new Map<string, TrustedIssuer>();
  readonly #cache: TokenCache;

  /** Reads and checks local key sets now: a bad key fails the build (start or reload), never a request. */
  constructor(config: AuthConfig, deps: VerifierDeps) {
    this.realm = config.realm;
    this.#config = config;
    this.#deps = deps;
    this.stats = deps.stats ?? new AuthStats();
    this.#cache = new TokenCache(config.tokenCache.maxEntries, config.tokenCache.maxTtlMs, deps.now);
    config.issuers.forEach((issuer, i) => {
      try {
        this.#issuers.set(issuer.issuer, { config: issuer, keys: createKeySource(issuer.jwks, issuer.algorithms, deps) });
      } catch (err) {
        throw new Error(`auth.issuers.${i} (${issuer.issuer}): ${(err as Error).message}`, { cause: err });
      }
    });
  }

  /** Fetches remote key sets ahead of the first request; failures are logged, and retried on use. */
  async warm(): Promise<void> {
    await Promise.all([...this.#issuers.values()].map((i) => i.keys.warm()));
  }

  /** The verified caller, or undefined when the request carries no bearer token. Rejects with 400/401 GatewayErrors. */
  async authenticate(headers: IncomingHttpHeaders, rawHeaders: readonly string[], connection?: object): Promise<Identity | undefined> {
    const found = this.authenticateNow(headers, rawHeaders, connection);
    return 'pending' in found ? found.pending : found.identity;
  }

  /**
   * The same, answered at once when it can be — no token, or a token the connection or the cache knows — and as a
   * pending verification otherwise: the request path awaits nothing it does not have to. Throws 400/401 GatewayErrors.
   */
  authenticateNow(headers: IncomingHttpHeaders, rawHeaders: readonly string[], connection?: object): Lookup {
    const token = readBearerToken(headers, rawHeaders, this.realm);
    return token === undefined ? NO_TOKEN : this.lookup(token, connection);
  }

  /** `connection`: the request's keep-alive connection, so a token repeated on it is recognised without hashing. */
  async verify(token: string, connection?: object): Promise<Identity> {
    const found = this.lookup(token, connection);
    return 'pending' in found ? found.pending : found.identity!;
  }

  /** The token's identity from the connection's memo or the cache, or its verification, pending. */
  lookup(token: string, connection?: object): Lookup {
    if (token.length > this.#config.maxTokenBytes) throw this.#invalid(`the bearer token is longer than ${this.#config.maxTokenBytes} bytes`);
    const segments = dotsIn(token) + 1;
    if (segments === 5) throw this.#invalid('encrypted tokens (JWE) are not accepted: send a signed JWT');
    if (segments !== 3) throw this.#invalid('the bearer token is not a JWT (header.payload.signature)');

    const remembered = connection === undefined ? undefined : this.#cache.onConnection(connection, token);
    if (remembered !== undefined) {
      this.stats.cacheHits++;
      this.stats.connectionHits++;
      return { identity: remembered };
    }
    const cacheKey = TokenCache.key(token);
    const cached = this.#cache.get(cacheKey);
    if (cached !== undefined) {
      this.stats.cacheHits++;
      if (connection !== undefined) this.#cache.remember(connection, token, cached, expOf(cached));
      return { identity: cached };
    }
    return { pending: this.#verifySignature(token, cacheKey, connection) };
  }

  #invalid(message: string, cause?: unknown): GatewayError {
    return authError('GW_ERR_INVALID_TOKEN', this.realm, message, { cause });
  }

  /** Full verification of a token no cache knows: keys, signature, claims; the result is cached. */
  async #verifySignature(token: string, cacheKey: string, connection: object | undefined): Promise<Identity> {
    const invalid = (message: string, cause?: unknown) => this.#invalid(message, cause);
    let header: ProtectedHeaderParameters;
    let unverified: JWTPayload;
    try {
      header = decodeProtectedHeader(token);
      unverified = decodeJwt(token);
    } catch (err) {
      throw invalid('the token header or payload is not base64url-encoded JSON', err);
    }
    if (typeof header.alg !== 'string') throw invalid('the token header has no alg');
    if (header.alg.toLowerCase() === 'none') throw invalid('unsigned tokens (alg none) are not accepted');
    if (header.kid !== undefined && (typeof header.kid !== 'string' || header.kid.length > MAX_KID_LENGTH)) throw invalid('the token kid is malformed');
    // No extension is understood, so any critical one must be refused (RFC 7515 §4.1.11).
    if (header.crit !== undefined) throw invalid('the token has critical header parameters (crit) this gateway does not understand');
    // iss is read unverified only to choose the keys; the signature and jose's issuer check then bind it.
    if (typeof unverified.iss !== 'string') throw invalid('the token has no iss claim');
    const issuer = this.#issuers.get(unverified.iss);
    if (issuer === undefined) throw invalid('the token issuer is not trusted');
    if (!issuer.config.algorithms.includes(header.alg as JwsAlgorithm)) throw invalid('the token algorithm is not allowed for its issuer');

    let keys;
    try {
      // Only the issuer's configured keys: jku, x5u, x5c and an embedded jwk are never looked at.
      keys = await issuer.keys.candidates(header);
    } catch (err) {
      if (err instanceof KeyLookupError && err.reason === 'keys-unavailable') {
        throw authError('GW_ERR_AUTH_KEYS_UNAVAILABLE', this.realm, undefined, { cause: err });
      }
      if (err instanceof KeyLookupError) throw invalid('no signing key of the issuer matches the token', err);
      throw err;
    }

    let payload: JWTPayload | undefined;
    let failure: unknown;
    for (const key of keys) {
      try {
        ({ payload } = await jwtVerify(token, key, {
          algorithms: issuer.config.algorithms,
          issuer: issuer.config.issuer,
          audience: issuer.config.audiences,
          requiredClaims: ['exp', 'sub'],
          clockTolerance: issuer.config.clockToleranceSeconds,
          typ: issuer.config.typ,
          currentDate: new Date(this.#deps.now()),
        }));
        break;
      } catch (err) {
        failure = err;
        if (!(err instanceof errors.JWSSignatureVerificationFailed)) break;
      }
    }
    if (payload === undefined) throw this.#rejection(failure);
    if (typeof payload.sub !== 'string' || payload.sub === '') throw invalid('the token sub claim must be a non-empty string');
    const maxLifetime = issuer.config.maxLifetimeSeconds;
    if (maxLifetime !== undefined) {
      // exp is verified present and numeric; iat, when present, must be numeric and not in the future.
      const now = this.#deps.now() / 1000;
      const iat = payload.iat;
      if (iat !== undefined && (typeof iat !== 'number' || !Number.isFinite(iat))) throw invalid('the token iat claim is not a number');
      if (iat !== undefined && iat > now + issuer.config.clockToleranceSeconds) throw invalid('the token was issued in the future (iat)');
      if (payload.exp! - (iat ?? now) > maxLifetime) throw invalid(`the token lifetime exceeds its issuer's maximum of ${maxLifetime} s`);
    }

    const claims = Object.freeze({ ...payload });
    const identity: Identity = { issuer: issuer.config.issuer, subject: payload.sub, scopes: scopesOf(claims), claims };
    this.stats.verified++;
    this.#cache.set(cacheKey, identity, payload.exp!);
    if (connection !== undefined) this.#cache.remember(connection, token, identity, payload.exp!);
    return identity;
  }

  #rejection(err: unknown): GatewayError {
    const invalid = (message: string) => authError('GW_ERR_INVALID_TOKEN', this.realm, message, { cause: err });
    if (err instanceof errors.JWTExpired) return invalid('the token has expired');
    if (err instanceof errors.JWTClaimValidationFailed) {
      const missing = err.reason === 'missing';
      switch (err.claim) {
        case 'nbf':
          return invalid('the token is not valid yet (nbf)');
        case 'exp':
          return invalid(missing ? 'the token has no exp claim' : 'the token exp claim is not a number');
        case 'iss':
          return invalid('the token issuer does not match');
        case 'aud':
          return invalid(missing ? 'the token has no aud claim' : 'the token audience is not accepted');
        case 'sub':
          return invalid('the token has no sub claim');
        case 'typ':
          return invalid('the token type (typ) is not accepted');
        default:
          return invalid(`the token ${err.claim} claim is invalid`);
      }
    }
    if (err instanceof errors.JWSSignatureVerificationFailed) return invalid('the token signature is invalid');
    if (err instanceof errors.JOSEAlgNotAllowed || err instanceof errors.JOSENotSupported) return invalid('the token algorithm is not allowed for its issuer');
    return invalid('the token is malformed');
  }
}
