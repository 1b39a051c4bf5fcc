// JWT authentication (issuers, keys, identity headers, token cache) and per-model authorisation.

import { z } from 'zod';
import { httpHeaderName } from './common.js';

/** A scope token (RFC 6749 §3.3): visible ASCII except space, `"` and `\`. */
const scopeToken = z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/, 'a scope is visible ASCII without spaces, quotes or backslashes');

/** What a verified caller must hold for an operation: every listed scope, and for each listed claim one of its values. */
export const accessRequirementSchema = z.strictObject({
  /** Every scope must appear in the token's `scope` (space-separated) or `scp` claim. */
  scopes: z.array(scopeToken).default([]),
  /** claim → accepted values; the claim must equal one of them (an array claim must contain one). Top-level claims only. */
  claims: z.record(z.string().min(1), z.array(z.union([z.string(), z.number(), z.boolean()])).min(1)).default({}),
});

/** Per-model authorisation (needs the top-level `auth` section). */
export const modelAuthSchema = z.strictObject({
  /** Let requests without a token through; a token that is present is still verified and must be valid. */
  allowAnonymous: z.boolean().default(false),
  /** Dry run for this model only; default: `auth.enforce`. */
  enforce: z.boolean().optional(),
  /** What `POST .../infer` requires. */
  infer: accessRequirementSchema.prefault({}),
  /** What model metadata and model ready require. */
  metadata: accessRequirementSchema.prefault({}),
});
/** JWS algorithms an issuer may allow. HMAC (`HS*`) is not offered: a shared secret cannot live in a JWKS. */
export const JWS_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'] as const;
/** Headers the gateway must never let a claim overwrite. */
const RESERVED_HEADERS = new Set([
  'authorization',
  'host',
  'connection',
  'content-length',
  'content-type',
  'transfer-encoding',
  'te',
  'upgrade',
  'cookie',
  'x-request-id',
  'x-forwarded-for',
]);
const identityHeaderName = httpHeaderName.refine((h) => !RESERVED_HEADERS.has(h), 'this header is reserved and cannot carry identity');

/** Where an issuer's verification keys come from: exactly one of `file`, `keys`, `url`. */
export const jwksSourceSchema = z
  .strictObject({
    /** A JWKS file (`{"keys": [...]}`), read when the pipeline is built (start and reload); relative to the config file. */
    file: z.string().min(1).optional(),
    /** Inline public JWKs. */
    keys: z.array(z.record(z.string(), z.unknown())).min(1).optional(),
    /** JWKS URL (http or https), fetched at start, cached, refreshed in the background when older than cacheMaxAgeMs. */
    url: z.url({ protocol: /^https?$/, error: 'jwks.url must be an http(s) URL' }).optional(),
    /** Refresh the remote JWKS when it is older than this, ms (the last good set stays in use if a refresh fails). */
    cacheMaxAgeMs: z.int().min(1000).default(600_000),
    /** At most one remote fetch per this period, ms: an unknown `kid` (or a failed fetch) never triggers more. */
    cooldownMs: z.int().min(0).default(30_000),
    /** Timeout of one remote fetch, ms. */
    timeoutMs: z.int().min(100).default(5_000),
  })
  .refine((j) => [j.file, j.keys, j.url].filter((v) => v !== undefined).length === 1, 'set exactly one of jwks.file, jwks.keys or jwks.url');

/** A trusted token issuer. */
export const issuerSchema = z.strictObject({
  /** The exact `iss` value of its tokens. */
  issuer: z.string().min(1),
  /** Accepted `aud` values; a token must carry at least one of them. */
  audiences: z.array(z.string().min(1)).min(1),
  /** Allowed `alg` values. A key without its own `alg` is bound to the first listed algorithm its type supports. */
  algorithms: z.array(z.enum(JWS_ALGORITHMS)).min(1),
  jwks: jwksSourceSchema,
  /** Required `typ` header (e.g. `at+jwt`, RFC 9068); unset: not checked. */
  typ: z.string().min(1).optional(),
  /** Leeway for `exp` and `nbf`, seconds. */
  clockToleranceSeconds: z.int().min(0).max(300).default(30),
  /**
   * Longest lifetime a token may claim, seconds (Envoy's `max_lifetime`): `exp - iat`, or `exp - now` for a token
   * without `iat`. Unset: any `exp` is accepted.
   */
  maxLifetimeSeconds: z
    .int()
    .min(1)
    .max(10 * 365 * 24 * 3600)
    .optional(),
});

/** JWT authentication of every model request (RFC 8725, RFC 6750). Absent: auth is off. */
export const authSchema = z.strictObject({
  /** The `realm` in `WWW-Authenticate`. */
  realm: z
    .string()
    .regex(/^[\x20\x21\x23-\x5b\x5d-\x7e]{1,128}$/, 'realm is printable ASCII without quotes or backslashes')
    .default('model-gateway'),
  /** false: dry run — would-be denials are logged and counted, and the request goes on (without an identity). */
  enforce: z.boolean().default(true),
  issuers: z
    .array(issuerSchema)
    .min(1)
    .refine((list) => new Set(list.map((i) => i.issuer)).size === list.length, 'each issuer may be listed once'),
  /** Longer bearer tokens are rejected before any parsing, bytes. */
  maxTokenBytes: z.int().min(256).max(65_536).default(8192),
  /** Pass the client's Authorization header on to the backend; false strips it after verification. */
  forwardToken: z.boolean().default(false),
  /** Gateway-owned request headers carrying the verified identity to the backend; client copies are always removed. */
  identityHeaders: z
    .strictObject({
      subject: identityHeaderName.default('x-auth-subject'),
      issuer: identityHeaderName.default('x-auth-issuer'),
      /** claim → header, for extra top-level claims (string, number, boolean or array of strings). */
      claims: z.record(z.string().min(1), identityHeaderName).default({}),
      /** If set, the verified claims as base64url JSON (like Envoy's forward_payload_header). */
      payload: identityHeaderName.optional(),
    })
    .prefault({}),
  /** Verified tokens are cached (keyed by SHA-256 of the token) so RS256/ES256 is not re-verified per request. */
  tokenCache: z
    .strictObject({
      /** Entries at most (least recently used evicted); 0 disables the cache. */
      maxEntries: z.int().min(0).default(10_000),
      /** An entry lives until the token's `exp` or this long, whichever is sooner, ms (bounds key-revocation lag). */
      maxTtlMs: z.int().min(1000).default(300_000),
    })
    .prefault({}),
  /** What the admin API requires when it authorises by JWT. */
  admin: z
    .strictObject({
      read: accessRequirementSchema.prefault({ scopes: ['gateway:admin'] }),
      write: accessRequirementSchema.prefault({ scopes: ['gateway:admin'] }),
    })
    .prefault({}),
});
