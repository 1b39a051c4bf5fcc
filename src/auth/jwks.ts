// Verification keys of one issuer: a local JWKS (file or inline) or a remote one (cached, refreshed, cooldown on unknown kid).

import { createPublicKey, type JsonWebKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createLocalJWKSet, errors, type CryptoKey, type JWK, type JWSHeaderParameters, type LocalJWKSet } from 'jose';
import type { JwksSourceConfig, JwsAlgorithm } from '../config/schema.js';
import type { Logger } from '../telemetry/log.js';

/** Why no key could be found; the verifier maps each to its own client message. */
export class KeyLookupError extends Error {
  constructor(
    readonly reason: 'no-matching-key' | 'keys-unavailable',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'KeyLookupError';
  }
}

/** Keys of one issuer that may have signed a token with this header (more than one only when the token has no kid). */
export interface KeySource {
  candidates(header: JWSHeaderParameters): Promise<CryptoKey[]>;
  /** Loads remote keys ahead of the first request; never throws (a failure is logged and retried on use). */
  warm(): Promise<void>;
}

/** A token without `kid` is tried against at most this many keys. */
const MAX_CANDIDATES = 4;
/** A JWKS document larger than this is refused, bytes. */
const MAX_JWKS_BYTES = 512 * 1024;

const EC_CURVE_ALG: Record<string, JwsAlgorithm> = { 'P-256': 'ES256', 'P-384': 'ES384', 'P-521': 'ES512' };
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k', 'oth'];

/**
 * Binds every key to exactly one allowed algorithm (RFC 8725 §3.1): a key's own `alg` must be allowed; a key without
 * one gets the first allowed algorithm its type and curve support. Keys for other uses or algorithms are dropped.
 * Throws on private or malformed key material: a JWKS holding a private key is a leak, not a key set.
 */
export function bindKeys(keys: readonly unknown[], allowed: readonly JwsAlgorithm[]): { keys: JWK[]; dropped: number } {
  const bound: JWK[] = [];
  let dropped = 0;
  keys.forEach((raw, i) => {
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`key ${i} is not a JSON object`);
    const jwk = raw as JWK;
    if (PRIVATE_MEMBERS.some((m) => m in jwk))
      throw new Error(`key ${i}${jwk.kid ? ` (kid ${jwk.kid})` : ''} holds private key material; publish public keys only`);
    if (jwk.use !== undefined && jwk.use !== 'sig') return void dropped++;
    const alg = jwk.alg !== undefined ? (allowed.includes(jwk.alg as JwsAlgorithm) ? (jwk.alg as JwsAlgorithm) : undefined) : defaultAlgorithm(jwk, allowed);
    if (alg === undefined) return void dropped++;
    try {
      // Checks the key material now, so a bad key fails at start or reload, not on a request.
      createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' });
    } catch (err) {
      throw new Error(`key ${i}${jwk.kid ? ` (kid ${jwk.kid})` : ''} is not a valid public JWK: ${(err as Error).message}`, { cause: err });
    }
    bound.push({ ...jwk, alg });
  });
  return { keys: bound, dropped };
}

function defaultAlgorithm(jwk: JWK, allowed: readonly JwsAlgorithm[]): JwsAlgorithm | undefined {
  switch (jwk.kty) {
    case 'RSA':
      return allowed.find((a) => a.startsWith('RS') || a.startsWith('PS'));
    case 'EC': {
      const alg = EC_CURVE_ALG[jwk.crv ?? ''];
      return alg !== undefined && allowed.includes(alg) ? alg : undefined;
    }
    case 'OKP':
      return jwk.crv === 'Ed25519' ? allowed.find((a) => a === 'EdDSA' || a === 'Ed25519') : undefined;
    default:
      return undefined;
  }
}

/** All keys of a local set that match the header (jose insists on exactly one; a kid-less token may match several). */
async function lookup(set: LocalJWKSet, header: JWSHeaderParameters): Promise<CryptoKey[]> {
  try {
    return [await set(header)];
  } catch (err) {
    if (err instanceof errors.JWKSMultipleMatchingKeys) {
      const found: CryptoKey[] = [];
      for await (const key of err) {
        found.push(key);
        if (found.length >= MAX_CANDIDATES) break;
      }
      return found;
    }
    if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JOSENotSupported) {
      throw new KeyLookupError('no-matching-key', 'no signing key matches the token', { cause: err });
    }
    throw err;
  }
}

function parseJwks(text: string, allowed: readonly JwsAlgorithm[]): { set: LocalJWKSet; count: number; dropped: number } {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new Error(`not JSON: ${(err as Error).message}`, { cause: err });
  }
  const keys = (doc as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys)) throw new Error('not a JWKS: expected {"keys": [...]}');
  const bound = bindKeys(keys, allowed);
  return { set: createLocalJWKSet({ keys: bound.keys }), count: bound.keys.length, dropped: bound.dropped };
}

/** Keys from a file or inline config: fixed for the life of the pipeline. Throws at build time if unusable. */
export class StaticKeySource implements KeySource {
  readonly #set: LocalJWKSet;

  constructor(keys: readonly unknown[], allowed: readonly JwsAlgorithm[], what: string) {
    const bound = bindKeys(keys, allowed);
    if (bound.keys.length === 0) throw new Error(`${what}: no key usable with algorithms ${allowed.join(', ')}`);
    this.#set = createLocalJWKSet({ keys: bound.keys });
  }

  static fromFile(file: string, allowed: readonly JwsAlgorithm[]): StaticKeySource {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new Error(`jwks.file ${file}: cannot read: ${(err as Error).message}`, { cause: err });
    }
    let keys: unknown;
    try {
      keys = (JSON.parse(text) as { keys?: unknown } | null)?.keys;
    } catch (err) {
      throw new Error(`jwks.file ${file}: not JSON: ${(err as Error).message}`, { cause: err });
    }
    if (!Array.isArray(keys)) throw new Error(`jwks.file ${file}: not a JWKS: expected {"keys": [...]}`);
    return new StaticKeySource(keys, allowed, `jwks.file ${file}`);
  }

  candidates(header: JWSHeaderParameters): Promise<CryptoKey[]> {
    return lookup(this.#set, header);
  }

  async warm(): Promise<void> {}
}

export interface RemoteKeySourceOptions {
  url: string;
  cacheMaxAgeMs: number;
  cooldownMs: number;
  timeoutMs: number;
  algorithms: readonly JwsAlgorithm[];
  now: () => number;
  log: Logger;
  fetch?: typeof fetch;
}

/**
 * A remote JWKS. Unlike jose's createRemoteJWKSet it takes an injected clock (cooldowns are tested exactly) and keeps
 * the last good key set when a refresh fails, as Envoy does: an IdP outage does not reject tokens signed by known keys.
 * With no key set at all, verification fails closed. Fetches are deduplicated and at most one starts per cooldown.
 */
export class RemoteKeySource implements KeySource {
  readonly #o: RemoteKeySourceOptions;
  #set: LocalJWKSet | undefined;
  #fetchedAt = -Infinity;
  #attemptedAt = -Infinity;
  #inflight: Promise<void> | undefined;
  /** Fetches started, for tests and the observability issue. */
  fetches = 0;

  constructor(options: RemoteKeySourceOptions) {
    this.#o = options;
  }

  async warm(): Promise<void> {
    await this.#refresh('start').catch(() => undefined);
  }

  async candidates(header: JWSHeaderParameters): Promise<CryptoKey[]> {
    if (this.#set === undefined) {
      // A fetch under way (the start-up one, say) is awaited; a failed one is retried only after the cooldown.
      if (this.#inflight === undefined && this.#o.now() - this.#attemptedAt >= this.#o.cooldownMs) void this.#refresh('no key set').catch(() => undefined);
      const cause = await this.#inflight?.then(
        () => undefined,
        (err: unknown) => err,
      );
      if (this.#set === undefined) throw new KeyLookupError('keys-unavailable', 'JWKS unavailable', { cause });
    } else if (
      this.#o.now() - this.#fetchedAt >= this.#o.cacheMaxAgeMs &&
      this.#inflight === undefined &&
      this.#o.now() - this.#attemptedAt >= this.#o.cooldownMs
    ) {
      // Stale: refresh in the background and answer from the keys we have.
      this.#refresh('stale').catch(() => undefined);
    }
    try {
      return await lookup(this.#set, header);
    } catch (err) {
      if (!(err instanceof KeyLookupError)) throw err;
      // An unknown kid may be a freshly rotated key: refetch (or join a fetch under way), never more than once per cooldown.
      if (this.#inflight === undefined && this.#o.now() - this.#attemptedAt < this.#o.cooldownMs) throw err;
      try {
        await this.#refresh('unknown kid');
      } catch {
        throw err; // the failed fetch was logged once, where it ran
      }
      return lookup(this.#set, header);
    }
  }

  /**
   * One fetch at a time, shared by every caller that asks meanwhile; its failure is logged here, once, however many
   * callers joined it (`why`: what started it).
   */
  #refresh(why: 'start' | 'no key set' | 'stale' | 'unknown kid'): Promise<void> {
    this.#inflight ??= this.#fetch()
      .catch((err: unknown) => {
        const outcome = this.#set === undefined ? 'tokens of this issuer fail until a fetch succeeds' : 'the last good key set stays in use';
        this.#o.log.warn({ err, url: this.#o.url, why }, `JWKS fetch failed; ${outcome}`);
        throw err;
      })
      .finally(() => {
        this.#inflight = undefined;
      });
    return this.#inflight;
  }

  async #fetch(): Promise<void> {
    this.#attemptedAt = this.#o.now();
    this.fetches++;
    const doFetch = this.#o.fetch ?? fetch;
    const res = await doFetch(this.#o.url, {
      headers: { accept: 'application/jwk-set+json, application/json' },
      redirect: 'error',
      signal: AbortSignal.timeout(this.#o.timeoutMs),
    });
    if (res.status !== 200) {
      await res.body?.cancel();
      throw new Error(`JWKS ${this.#o.url} answered ${res.status}`);
    }
    const text = await readCapped(res, MAX_JWKS_BYTES);
    const parsed = parseJwks(text, this.#o.algorithms);
    if (parsed.count === 0) throw new Error(`JWKS ${this.#o.url} has no key usable with ${this.#o.algorithms.join(', ')}`);
    this.#set = parsed.set;
    this.#fetchedAt = this.#o.now();
    this.#o.log.info({ url: this.#o.url, keys: parsed.count, dropped: parsed.dropped }, 'JWKS loaded');
  }
}

async function readCapped(res: Response, limit: number): Promise<string> {
  const declared = Number(res.headers.get('content-length'));
  if (declared > limit) {
    await res.body?.cancel();
    throw new Error(`JWKS is larger than ${limit} bytes`);
  }
  if (!res.body) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of res.body) {
    size += chunk.byteLength;
    if (size > limit) throw new Error(`JWKS is larger than ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Remote key sources shared by every config generation of a process, keyed by their settings: a reload must not
 * start from an empty key set, or an IdP outage during a reload would turn every token into a 401.
 */
export type RemoteKeySources = Map<string, RemoteKeySource>;

/** The key source an issuer's config describes; local sources are read and checked now, remote ones reused if known. */
export function createKeySource(
  jwks: JwksSourceConfig,
  algorithms: readonly JwsAlgorithm[],
  deps: { now: () => number; log: Logger; fetch?: typeof fetch; remoteSources?: RemoteKeySources },
): KeySource {
  if (jwks.file !== undefined) return StaticKeySource.fromFile(jwks.file, algorithms);
  if (jwks.keys !== undefined) return new StaticKeySource(jwks.keys, algorithms, 'jwks.keys');
  const { remoteSources, ...sourceDeps } = deps;
  const key = JSON.stringify([jwks.url, jwks.cacheMaxAgeMs, jwks.cooldownMs, jwks.timeoutMs, algorithms]);
  const known = remoteSources?.get(key);
  if (known) return known;
  const source = new RemoteKeySource({
    url: jwks.url!,
    cacheMaxAgeMs: jwks.cacheMaxAgeMs,
    cooldownMs: jwks.cooldownMs,
    timeoutMs: jwks.timeoutMs,
    algorithms,
    ...sourceDeps,
  });
  remoteSources?.set(key, source);
  return source;
}
