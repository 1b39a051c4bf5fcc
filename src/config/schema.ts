// The one strict config schema: every key, its default and its unit. Unknown keys are rejected everywhere.

import { z } from 'zod';

/** Model and version names appear in URL paths and metric labels: keep them to a safe alphabet. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const name = (what: string) =>
  z.string().regex(NAME, `${what} must match ${NAME.source} (letters, digits, '_', '.', '-')`);

const onnxBackend = z.strictObject({
  kind: z.literal('onnx'),
  /** Path to the .onnx file; relative paths are resolved against the config file's directory. */
  path: z.string().min(1),
  /** Worker threads, each holding its own ONNX Runtime session for this version. */
  workers: z.int().min(1).max(64).default(1),
  /** ONNX Runtime intra-op threads per session (parallelism inside one inference). */
  intraOpThreads: z.int().min(1).max(64).default(1),
  /** Requests waiting for a worker beyond this many are rejected with 503 (bounded memory under overload). */
  maxQueue: z.int().min(0).default(256),
  /**
   * Dynamic batching (off when absent): queued calls with compatible shapes are stacked along dim 0 into one run of at
   * most `maxBatchSize` rows; a call waits at most `maxQueueDelayUs` µs for others while a worker is free.
   */
  batching: z
    .strictObject({
      maxBatchSize: z.int().min(2).max(65536),
      maxQueueDelayUs: z.int().min(0).max(1_000_000).default(500),
    })
    .optional(),
});

/** Header names a remote backend gets from `headers` (static, e.g. its own Authorization). */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Retries of calls that never reached the remote (connection refused/reset before the request was sent). */
export const retrySchema = z.strictObject({
  /** Retry such a call once; timeouts and anything the remote may have seen are never retried. */
  enabled: z.boolean().default(true),
  /** Retries may add at most this share of the window's requests, percent. */
  budgetPercent: z.number().min(0).max(100).default(20),
  /** Retries always allowed per second of window (so a quiet version can still be retried). */
  minRetriesPerSecond: z.number().min(0).default(3),
  /** Window the budget is counted over, ms. */
  budgetWindowMs: z.int().min(1000).default(10_000),
});

const httpBackend = z.strictObject({
  kind: z.literal('http'),
  /** Base URL of a remote Open Inference Protocol server, e.g. http://127.0.0.1:8000 (a path prefix is kept). */
  url: z.url({ protocol: /^https?$/, error: 'url must be an http:// or https:// URL' }),
  /** The model's name on the remote; default: this model's name. */
  model: name('model').optional(),
  /** The version on the remote; default: none (the remote's default version). */
  version: name('version').optional(),
  /** `remote`: forward the client's body undecoded and let the remote validate; `gateway`: validate here first. */
  validate: z.enum(['remote', 'gateway']).default('remote'),
  /** Connections to the remote at most (HTTP/1.1 keep-alive, no pipelining). */
  connections: z.int().min(1).max(1024).default(32),
  /** Time to establish a TCP (and TLS) connection, ms. */
  connectTimeoutMs: z.int().min(1).default(2_000),
  /** Time from sending a request to the response headers, ms; a transport backstop behind the model's `timeoutMs`. */
  headersTimeoutMs: z.int().min(1).default(60_000),
  /** Longest gap between two chunks of a response body, ms. */
  bodyTimeoutMs: z.int().min(1).default(30_000),
  /** Idle keep-alive connections are closed after this, ms; keep it below the remote's own keep-alive timeout. */
  keepAliveTimeoutMs: z.int().min(100).default(4_000),
  /** Largest accepted response body, bytes. */
  maxResponseBytes: z.int().min(1024).default(64 * 1024 * 1024),
  /** How often the remote's model metadata is fetched (and, until the first success, retried), ms. */
  probeIntervalMs: z.int().min(100).default(5_000),
  /** Metadata and readiness requests give up after this long, ms (gateway start waits at most this for the first). */
  probeTimeoutMs: z.int().min(1).default(2_000),
  /** Extra headers sent with every request to the remote (the client's Authorization is never forwarded). */
  headers: z.record(z.string().regex(HEADER_NAME, 'header names must be valid HTTP tokens'), z.string()).default({}),
  retry: retrySchema.prefault({}),
});

export const backendSchema = z.discriminatedUnion('kind', [onnxBackend, httpBackend]);

/** Load shedding for one version, enforced in the breaker stage for every backend kind. */
export const limitsSchema = z.strictObject({
  /** Requests in flight to the backend at most (ONNX: running or waiting for a worker; http: at the remote). */
  maxConcurrent: z.int().min(1).default(64),
  /** Requests that may wait for a slot beyond that; 0 = reject at once (503 + Retry-After). */
  maxQueue: z.int().min(0).default(0),
  /** Longest wait for a slot, ms; then 503 + Retry-After. */
  maxQueueWaitMs: z.int().min(1).default(100),
});

/** Circuit breaker for one version (opossum): 5xx, timeouts and connection failures count, 4xx never. */
export const breakerSchema = z.strictObject({
  enabled: z.boolean().default(true),
  /** Requests in the window before the error rate is looked at. */
  volumeThreshold: z.int().min(1).default(20),
  /** Failed share of the window's requests above which the breaker opens, percent. */
  errorThresholdPercent: z.number().min(1).max(100).default(50),
  /** Rolling window the error rate is computed over, ms. */
  windowMs: z.int().min(100).default(10_000),
  /** Slices the window rotates in. */
  windowBuckets: z.int().min(1).max(100).default(10),
  /** How long an open breaker fails fast before letting one trial request through, ms. */
  resetTimeoutMs: z.int().min(100).default(10_000),
});

export const versionSchema = z.strictObject({
  backend: backendSchema,
  limits: limitsSchema.prefault({}),
  breaker: breakerSchema.prefault({}),
});

/** Largest weight a version may have; weights are relative, so this only keeps sums far from float trouble. */
export const MAX_WEIGHT = 1_000_000;

/** Traffic split of requests without a version: version → integer weight (share = weight / sum). Unlisted versions get 0. */
export const weightsSchema = z.record(name('version'), z.int().min(0).max(MAX_WEIGHT));

/** The `x-model-version` request header (a version in the path still wins over it). */
export const overrideSchema = z.strictObject({
  /** Honour the header; when false it is ignored. */
  enabled: z.boolean().default(false),
  /** Only callers whose verified identity carries this scope may use it (needs the auth stage); others get 403. */
  requiredScope: z.string().min(1).optional(),
});

/** Sticky routing: the same key always lands on the same version for the same weights. Exactly one source. */
export const stickySchema = z
  .strictObject({
    /** Request header holding the key, e.g. `x-user-id` (matched case-insensitively). */
    header: z
      .string()
      .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'header must be a valid HTTP header name')
      .transform((h) => h.toLowerCase())
      .optional(),
    /** Verified JWT claim holding the key, e.g. `sub` (set by the auth stage). */
    claim: z.string().min(1).optional(),
  })
  .refine((s) => (s.header === undefined) !== (s.claim === undefined), 'set exactly one of header or claim');

/** How one output of a primary and its shadow are compared (see README "Shadow comparison"). */
export const compareRuleSchema = z.discriminatedUnion('mode', [
  /** Top-1 per row: exact match for labels; argmax (or p ≥ 0.5 for a single score) for floating-point scores. */
  z.strictObject({ mode: z.literal('classification') }),
  /** A row agrees when its relative L2 error ≤ maxRelL2 or its largest absolute difference ≤ maxAbsDiff. */
  z.strictObject({
    mode: z.literal('regression'),
    /** ‖shadow − primary‖₂ / ‖primary‖₂ per row, unitless. */
    maxRelL2: z.number().min(0).default(0.01),
    /** max |shadow − primary| per row, in the output's units (catches rows whose primary is ~0). */
    maxAbsDiff: z.number().min(0).default(1e-6),
  }),
  /** Not compared (e.g. a timestamp output). */
  z.strictObject({ mode: z.literal('ignore') }),
]);

export const shadowSchema = z.strictObject({
  /** Versions that get a fire-and-forget copy of this model's inference traffic (never of their own). */
  targets: z
    .array(
      z.strictObject({
        version: name('version'),
        /** Share of the primary's requests mirrored to this version, percent (0–100; fractions allowed). */
        percent: z.number().min(0).max(100).default(100),
      }),
    )
    .min(1, 'list at least one shadow target'),
  /** Each shadow call is abandoned after this long, ms. */
  timeoutMs: z.int().min(1).default(5_000),
  /** Shadow calls in flight for this model at most; a copy beyond it is dropped and counted, never queued. */
  maxConcurrent: z.int().min(1).default(8),
  /** Per output name; unlisted outputs: integer/BOOL/BYTES → classification, floating point → regression. */
  compare: z.record(z.string().min(1), compareRuleSchema).default({}),
});

/**
 * Progressive rollout of `candidate` over `stable` (see README "Progressive rollout"): a shadow phase, then weight
 * steps, each advanced only while the gates pass on a sliding window; a failing gate rolls back to stable and holds.
 */
export const rolloutSchema = z.strictObject({
  /** The version serving today; it takes all unversioned traffic until the candidate earns some. */
  stable: name('stable'),
  /** The version being rolled out. */
  candidate: name('candidate'),
  /** Phase 1: the candidate gets a copy of stable's traffic (never real traffic) until enough has been compared. */
  shadow: z
    .strictObject({
      /** Share of stable's requests mirrored to the candidate, percent; mirroring continues during weight steps. */
      percent: z.number().min(0.01).max(100).default(100),
      /** The phase may end once this many requests have been compared in it... */
      requests: z.int().min(1).default(1000),
      /** ...or once it has lasted this long, ms, whichever comes first (and only while every gate passes). */
      durationMs: z.int().min(1).default(600_000),
      /**
       * How each output is compared, per output name (see `shadow.compare`); unlisted outputs: the model's
       * `shadow.compare`, else the datatype default. Timeout and concurrency cap: the model's `shadow` section's.
       */
      compare: z.record(z.string().min(1), compareRuleSchema).default({}),
    })
    .prefault({}),
  /** Phase 2: the candidate's share of unversioned traffic, percent, step by step (ascending, 1–100). */
  steps: z
    .array(z.int().min(1).max(100))
    .min(1)
    .refine((s) => s.every((w, i) => i === 0 || w > s[i - 1]!), 'steps must be strictly ascending')
    .default([5, 25, 50, 100]),
  /** Each step is held at least this long, ms, and until every gate passes. */
  stepHoldMs: z.int().min(1).default(300_000),
  /** How often the gates are evaluated and the next decision taken, ms. */
  evaluationIntervalMs: z.int().min(1).default(30_000),
  /** Gates look at the last windowMs of samples, never before the current phase or step began, ms. */
  windowMs: z.int().min(1).default(120_000),
  gates: z
    .strictObject({
      /** Share of compared requests whose every output agreed, 0–1 (judged while stable traffic is mirrored). */
      minAgreement: z.number().min(0).max(1).default(0.99),
      /** Share of the candidate's backend calls that failed (5xx, timeouts, connection errors), 0–1. */
      maxErrorRate: z.number().min(0).max(1).default(0.01),
      /** The candidate's p99 latency may be at most this multiple of stable's... */
      maxP99Ratio: z.number().min(1).default(1.5),
      /** ...or at most this much above it, ms, whichever allows more (sub-ms models would fail on noise). */
      p99AllowanceMs: z.number().min(0).default(5),
      /** A gate is judged only on at least this many samples (comparisons, or calls of each version); until then it waits. */
      minSamples: z.int().min(1).default(100),
    })
    .prefault({}),
});

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

export const modelSchema = z.strictObject({
  /**
   * Version answering unversioned metadata/ready requests, and unversioned inference when `weights` is unset.
   * Default: the version with the highest weight when `weights` is set, else the highest version.
   */
  defaultVersion: name('defaultVersion').optional(),
  versions: z
    .record(name('version'), versionSchema)
    .refine((v) => Object.keys(v).length > 0, 'a model needs at least one version'),
  /** Unset: every unversioned inference goes to defaultVersion. */
  weights: weightsSchema.optional(),
  override: overrideSchema.prefault({}),
  /** Unset: each unversioned request is routed by weighted random choice. */
  sticky: stickySchema.optional(),
  shadow: shadowSchema.optional(),
  /** Deadline of one inference request, ms, from the moment its body is received; beyond it → 504. */
  timeoutMs: z.int().min(1).default(30_000),
  /** Version that serves a request whose chosen version's circuit breaker is open (answer carries x-model-fallback). */
  fallback: name('fallback').optional(),
  /** Who may call this model (see README "Authentication and authorisation"); unset: any verified caller. */
  auth: modelAuthSchema.optional(),
  /** Automated canary of one version over another; while it runs it owns this model's weights. */
  rollout: rolloutSchema.optional(),
});

export const serverSchema = z.strictObject({
  /** Data-plane listen address. */
  host: z.string().min(1).default('0.0.0.0'),
  /** Data-plane port; 0 picks a free port. */
  port: z.int().min(0).max(65535).default(8080),
  /** Largest accepted request body, in bytes; larger bodies get 413 before they are read. */
  maxBodyBytes: z.int().min(1024).default(16 * 1024 * 1024),
  /** Idle keep-alive socket lifetime, ms. Must exceed the idle timeout of the Envoy in front (see README). */
  keepAliveTimeoutMs: z.int().min(1000).default(75_000),
  /** Time allowed to receive the request headers, ms. */
  headersTimeoutMs: z.int().min(1000).default(10_000),
  /** Time allowed to receive the whole request, ms (0 disables). */
  requestTimeoutMs: z.int().min(0).default(60_000),
  /**
   * On SIGTERM: the hard deadline, counted from the signal, by which the process has exited, ms. Keep it below the
   * pod's terminationGracePeriodSeconds (default 30 s), or the kubelet's SIGKILL cuts requests mid-reply.
   */
  shutdownTimeoutMs: z.int().min(0).default(25_000),
  /**
   * On SIGTERM: how long the gateway keeps accepting new connections after readiness starts failing, ms, while
   * Kubernetes and the mesh's Envoys remove the pod from their endpoints. Must be below shutdownTimeoutMs.
   */
  drainDelayMs: z.int().min(0).default(5_000),
  /** Largest accepted request head (request line and headers), bytes; larger ones get 431 (Node's maxHeaderSize). */
  maxHeaderBytes: z.int().min(1024).max(1024 * 1024).default(16 * 1024),
}).refine((s) => s.drainDelayMs < s.shutdownTimeoutMs || s.shutdownTimeoutMs === 0, {
  path: ['drainDelayMs'],
  message: 'must be below server.shutdownTimeoutMs (the drain delay counts against the same deadline)',
});

export const loggingSchema = z.strictObject({
  level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** One JSON line per model request (request id, trace id, model, version, status, latency, subject, shadow/fallback). */
  accessLog: z
    .strictObject({
      enabled: z.boolean().default(true),
      /** Fraction of non-5xx requests logged, 0–1; 5xx are always logged. */
      sampleRate: z.number().min(0).max(1).default(1),
    })
    .prefault({}),
});

/** Traces (OpenTelemetry, OTLP/HTTP) and Prometheus metrics. */
export const telemetrySchema = z.strictObject({
  tracing: z
    .strictObject({
      /**
       * OTLP/HTTP traces endpoint (full URL, e.g. http://otel-collector:4318/v1/traces). Unset: the standard
       * OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT variables decide; with neither, no span is recorded or exported.
       */
      otlpEndpoint: z.url({ protocol: /^https?$/ }).optional(),
      /**
       * Share of new traces recorded, 0–1 (head sampling); a caller's sampled flag in `traceparent` is honoured
       * (parent-based), so one trace is recorded everywhere or nowhere.
       */
      sampleRatio: z.number().min(0).max(1).default(1),
    })
    .prefault({}),
  metrics: z
    .strictObject({
      /** Serve Prometheus metrics at /metrics on the admin port (without the admin token: they hold no secrets). */
      enabled: z.boolean().default(true),
    })
    .prefault({}),
});

/** The admin API (traffic shifting, reload, shadow statistics): its own port, loopback by default. */
export const adminSchema = z.strictObject({
  enabled: z.boolean().default(true),
  /** Listen address; keep it on loopback unless a network policy protects the port. */
  host: z.string().min(1).default('127.0.0.1'),
  /** Listen port; 0 picks a free port. */
  port: z.int().min(0).max(65535).default(8081),
  /**
   * Bearer token every admin call must present; write `${ADMIN_TOKEN}` to keep it out of the file. Unset: the
   * MODEL_GATEWAY_ADMIN_TOKEN environment variable; neither set: admin calls are refused (401) unless a JWT with
   * `auth.admin`'s scopes is presented, while /metrics is still served; with metrics disabled too, the admin server
   * does not start.
   */
  token: z.string().min(16, 'admin.token must be at least 16 characters').optional(),
});

/** Watching the config file and swapping in a new pipeline when it changes. */
export const reloadSchema = z.strictObject({
  /** Watch the config file's directory (Kubernetes ConfigMap symlink swaps included) and reload on change. */
  watch: z.boolean().default(true),
  /** Quiet period after the last file event before reading the file, ms (editors and kubelet write in steps). */
  debounceMs: z.int().min(0).default(300),
  /** Also re-read the file this often, ms, for filesystems without change events; 0 disables. */
  pollIntervalMs: z.int().min(0).default(5_000),
  /** After a swap, retired backends wait this long for their in-flight calls before being closed anyway, ms. */
  drainTimeoutMs: z.int().min(0).default(30_000),
});

/** A JSON Lines file of sampled shadow disagreements (request id and both outputs; never the inputs). */
export const disagreementLogSchema = z.strictObject({
  /** File path; relative paths resolve against the config file's directory. */
  path: z.string().min(1),
  /** Fraction of disagreements written, 0–1. */
  sampleRate: z.number().min(0).max(1).default(1),
  /** When the file would grow past this many bytes it is rotated to `<path>.1` (one old file kept). */
  maxFileBytes: z.int().min(1024).default(64 * 1024 * 1024),
  /** Elements of each output written per line; longer outputs are cut and marked `truncated`. */
  maxElementsPerOutput: z.int().min(1).default(1024),
});

/** JWS algorithms an issuer may allow. HMAC (`HS*`) is not offered: a shared secret cannot live in a JWKS. */
export const JWS_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'] as const;

const httpHeaderName = z
  .string()
  .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'must be a valid HTTP header name')
  .transform((h) => h.toLowerCase());

/** Headers the gateway must never let a claim overwrite. */
const RESERVED_HEADERS = new Set(['authorization', 'host', 'connection', 'content-length', 'content-type', 'transfer-encoding', 'te', 'upgrade', 'cookie', 'x-request-id', 'x-forwarded-for']);
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
});

/** JWT authentication of every model request (RFC 8725, RFC 6750). Absent: auth is off. */
export const authSchema = z.strictObject({
  /** The `realm` in `WWW-Authenticate`. */
  realm: z.string().regex(/^[\x20\x21\x23-\x5b\x5d-\x7e]{1,128}$/, 'realm is printable ASCII without quotes or backslashes').default('model-gateway'),
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

/** Where a rate-limit rule takes its bucket key from: exactly one source. Requests without a value share one bucket. */
export const rateLimitKeySchema = z
  .strictObject({
    /** A top-level claim of the verified token, e.g. `sub` or `tenant` (needs `auth`). */
    claim: z.string().min(1).optional(),
    /** A request header, e.g. `x-tenant-id`. */
    header: httpHeaderName.optional(),
    /** The client address; with trustedHops N ≥ 1 the N-th X-Forwarded-For entry from the right (1 = set by the Envoy in front). */
    clientAddress: z.strictObject({ trustedHops: z.int().min(0).max(10).default(0) }).optional(),
  })
  .refine((k) => [k.claim, k.header, k.clientAddress].filter((v) => v !== undefined).length === 1, 'set exactly one of key.claim, key.header or key.clientAddress');

export const rateLimitRuleSchema = z.strictObject({
  /** Policy name: shown in the RateLimit headers and used in store keys. */
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'name must match [A-Za-z0-9][A-Za-z0-9_.-]{0,63}'),
  /** Models the rule applies to; unset: every model. */
  models: z.array(name('model')).min(1).optional(),
  /** Versions (of those models) it applies to, the version actually serving; unset: every version. */
  versions: z.array(name('version')).min(1).optional(),
  operations: z.array(z.enum(['infer', 'model-metadata', 'model-ready'])).min(1).default(['infer']),
  key: rateLimitKeySchema,
  /** Sustained refill rate, tokens per second. */
  ratePerSecond: z.number().positive().max(1_000_000),
  /** Bucket size: the most tokens a key can spend at once. */
  burst: z.int().min(1).max(1_000_000_000),
  /** `request`: 1 token per request; `rows`: the batch's first dimension (inference only; other operations cost 1). */
  cost: z.enum(['request', 'rows']).default('request'),
  /** When the shared store is unreachable: `open` decides with a per-replica local bucket, `closed` answers 503. */
  failureMode: z.enum(['open', 'closed']).default('open'),
  /** Dry run for this rule only; default: `rateLimits.enforce`. */
  enforce: z.boolean().optional(),
});

export const rateLimitStoreSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('memory'),
    /** Buckets kept at most (least recently used evicted: an evicted key starts again with a full bucket). */
    maxKeys: z.int().min(1).default(100_000),
  }),
  z.strictObject({
    kind: z.literal('redis'),
    /** e.g. `redis://:${REDIS_PASSWORD}@redis:6379/0` (rediss:// for TLS). */
    url: z.string().regex(/^rediss?:\/\//, 'url must start with redis:// or rediss://'),
    /** Prefix of every bucket key. */
    keyPrefix: z.string().default('model-gateway:rl:'),
    /** One decision may take this long before the rule's failureMode applies, ms. */
    commandTimeoutMs: z.int().min(1).default(100),
    /** Connect timeout, ms; the client reconnects on its own with backoff. */
    connectTimeoutMs: z.int().min(100).default(2_000),
    /** Buckets kept at most by the local fallback used while Redis is unreachable (failureMode open). */
    fallbackMaxKeys: z.int().min(1).default(100_000),
  }),
]);

/** Token-bucket rate limits, per model (and version), keyed by claim, header or client address. Absent: none. */
export const rateLimitsSchema = z.strictObject({
  /** false: dry run for every rule (would-be 429s are logged and counted, no RateLimit headers are sent). */
  enforce: z.boolean().default(true),
  /** Where buckets live; read once at start (a reload keeps the running store). */
  store: rateLimitStoreSchema.prefault({ kind: 'memory' }),
  rules: z
    .array(rateLimitRuleSchema)
    .refine((rules) => new Set(rules.map((r) => r.name)).size === rules.length, 'rule names must be unique'),
});

/** State shared by the gateway replicas of one deployment (today: progressive rollouts). Absent: each replica on its own. */
export const coordinationSchema = z.strictObject({
  redis: z.strictObject({
    /** e.g. `redis://:${REDIS_PASSWORD}@redis:6379/0` (rediss:// for TLS). */
    url: z.string().regex(/^rediss?:\/\//, 'url must start with redis:// or rediss://'),
    /** Prefix of every key; replicas sharing rollouts must use the same one. */
    keyPrefix: z.string().default('model-gateway:rollout:'),
    /** The leader's lease lives this long unless renewed, ms; a crashed leader is replaced after at most this. */
    leaseTtlMs: z.int().min(100).default(10_000),
    /** How often each replica renews or tries the lease, publishes its samples and reads the shared state, ms. */
    syncIntervalMs: z.int().min(10).default(1_000),
    /** One Redis command may take this long, ms. */
    commandTimeoutMs: z.int().min(1).default(1_000),
    /** Connect timeout, ms; the client reconnects on its own with backoff. */
    connectTimeoutMs: z.int().min(100).default(2_000),
  }),
});

/**
 * Envoy external authorization (ext_authz): the gateway answers Envoy's checks with the same JWT and rate-limit
 * policy it enforces itself. Each service listens on its own port, off the data plane's OIP path space.
 */
export const extAuthzSchema = z.strictObject({
  /** The HTTP service (Envoy `http_service`). */
  http: z
    .strictObject({
      enabled: z.boolean().default(false),
      /** Listen address; loopback because Envoy runs in the same pod. */
      host: z.string().min(1).default('127.0.0.1'),
      port: z.int().min(0).max(65535).default(9191),
      /** Envoy's `path_prefix`: checked paths start with it and it is removed before matching the OIP path. */
      pathPrefix: z.string().regex(/^(\/[A-Za-z0-9._~-]+)*$/, 'pathPrefix is empty or /segment[/segment...]').default('/ext-authz'),
    })
    .prefault({}),
  /** The gRPC service `envoy.service.auth.v3.Authorization/Check` (Envoy `grpc_service`). */
  grpc: z
    .strictObject({
      enabled: z.boolean().default(false),
      host: z.string().min(1).default('127.0.0.1'),
      port: z.int().min(0).max(65535).default(9192),
    })
    .prefault({}),
  /**
   * Charge the admission rate-limit rules in the check. Turn off when Envoy forwards to this gateway's own data plane,
   * which charges them again (each request would cost two tokens).
   */
  rateLimits: z.boolean().default(true),
});

export const configSchema = z
  .strictObject({
    server: serverSchema.prefault({}),
    logging: loggingSchema.prefault({}),
    telemetry: telemetrySchema.prefault({}),
    admin: adminSchema.prefault({}),
    reload: reloadSchema.prefault({}),
    disagreementLog: disagreementLogSchema.optional(),
    auth: authSchema.optional(),
    rateLimits: rateLimitsSchema.optional(),
    extAuthz: extAuthzSchema.prefault({}),
    coordination: coordinationSchema.optional(),
    models: z
      .record(name('model name'), modelSchema)
      .refine((m) => Object.keys(m).length > 0, 'at least one model must be configured'),
  })
  .superRefine((config, ctx) => {
    for (const [modelName, model] of Object.entries(config.models)) {
      if (model.defaultVersion !== undefined && !(model.defaultVersion in model.versions)) {
        ctx.addIssue({
          code: 'custom',
          path: ['models', modelName, 'defaultVersion'],
          message: `version '${model.defaultVersion}' is not one of ${Object.keys(model.versions).join(', ')}`,
        });
      }
      for (const problem of checkTraffic(model)) ctx.addIssue({ code: 'custom', path: ['models', modelName, ...problem.path], message: problem.message });
      if (model.fallback !== undefined && !(model.fallback in model.versions)) {
        ctx.addIssue({
          code: 'custom',
          path: ['models', modelName, 'fallback'],
          message: `version '${model.fallback}' is not one of ${Object.keys(model.versions).join(', ')}`,
        });
      }
    }
    for (const problem of checkSecurity(config)) ctx.addIssue({ code: 'custom', path: problem.path, message: problem.message });
  });

/** Cross-field checks of auth and rate limits: model auth and claim keys need `auth`; rules name real models and versions. */
function checkSecurity(config: {
  auth?: unknown;
  models: Record<string, { versions: Record<string, unknown>; auth?: unknown }>;
  rateLimits?: { rules: { models?: string[]; versions?: string[]; key: { claim?: string } }[] };
}): { path: (string | number)[]; message: string }[] {
  const problems: { path: (string | number)[]; message: string }[] = [];
  for (const [modelName, model] of Object.entries(config.models)) {
    if (model.auth !== undefined && config.auth === undefined) problems.push({ path: ['models', modelName, 'auth'], message: 'needs the top-level auth section (issuers)' });
  }
  config.rateLimits?.rules.forEach((rule, i) => {
    const at = ['rateLimits', 'rules', i];
    if (rule.key.claim !== undefined && config.auth === undefined) problems.push({ path: [...at, 'key', 'claim'], message: 'a claim key needs the top-level auth section' });
    rule.models?.forEach((m, j) => {
      if (!(m in config.models)) problems.push({ path: [...at, 'models', j], message: `model '${m}' is not configured` });
    });
    const scope = (rule.models ?? Object.keys(config.models)).filter((m) => m in config.models);
    rule.versions?.forEach((v, j) => {
      if (!scope.some((m) => v in config.models[m]!.versions)) problems.push({ path: [...at, 'versions', j], message: `no model of this rule has version '${v}'` });
    });
  });
  return problems;
}

/** Cross-field checks of a model's traffic keys: weights and shadows may only name versions the model has. */
function checkTraffic(model: z.output<typeof modelSchema>): { path: (string | number)[]; message: string }[] {
  const problems: { path: (string | number)[]; message: string }[] = [];
  const known = Object.keys(model.versions);
  const unknown = (v: string) => `version '${v}' is not one of ${known.join(', ')}`;
  if (model.weights !== undefined) {
    for (const v of Object.keys(model.weights)) if (!known.includes(v)) problems.push({ path: ['weights', v], message: unknown(v) });
    if (Object.values(model.weights).every((w) => w === 0)) problems.push({ path: ['weights'], message: 'at least one weight must be above 0' });
  }
  const seen = new Set<string>();
  model.shadow?.targets.forEach((target, i) => {
    if (!known.includes(target.version)) problems.push({ path: ['shadow', 'targets', i, 'version'], message: unknown(target.version) });
    if (seen.has(target.version)) problems.push({ path: ['shadow', 'targets', i, 'version'], message: `version '${target.version}' is listed twice` });
    seen.add(target.version);
  });
  const rollout = model.rollout;
  if (rollout) {
    if (!known.includes(rollout.stable)) problems.push({ path: ['rollout', 'stable'], message: unknown(rollout.stable) });
    if (!known.includes(rollout.candidate)) problems.push({ path: ['rollout', 'candidate'], message: unknown(rollout.candidate) });
    if (rollout.stable === rollout.candidate) problems.push({ path: ['rollout', 'candidate'], message: 'must differ from rollout.stable' });
    const owned = model.shadow?.targets.findIndex((t) => t.version === rollout.candidate) ?? -1;
    if (owned >= 0) problems.push({ path: ['shadow', 'targets', owned, 'version'], message: `version '${rollout.candidate}' is the rollout's candidate: the rollout mirrors traffic to it itself` });
  }
  return problems;
}

export type GatewayConfig = z.output<typeof configSchema>;
export type ModelConfig = GatewayConfig['models'][string];
export type VersionConfig = ModelConfig['versions'][string];
export type BackendConfig = VersionConfig['backend'];
export type HttpBackendConfig = Extract<BackendConfig, { kind: 'http' }>;
export type OnnxBackendConfig = Extract<BackendConfig, { kind: 'onnx' }>;
export type ServerConfig = GatewayConfig['server'];
export type AdminConfig = GatewayConfig['admin'];
export type ReloadConfig = GatewayConfig['reload'];
export type ShadowConfig = NonNullable<ModelConfig['shadow']>;
export type CompareRule = z.output<typeof compareRuleSchema>;
export type DisagreementLogConfig = NonNullable<GatewayConfig['disagreementLog']>;
export type AuthConfig = NonNullable<GatewayConfig['auth']>;
export type IssuerConfig = AuthConfig['issuers'][number];
export type JwksSourceConfig = IssuerConfig['jwks'];
export type AccessRequirement = z.output<typeof accessRequirementSchema>;
export type ModelAuthConfig = z.output<typeof modelAuthSchema>;
export type RateLimitsConfig = NonNullable<GatewayConfig['rateLimits']>;
export type RateLimitRule = RateLimitsConfig['rules'][number];
export type RateLimitStoreConfig = RateLimitsConfig['store'];
export type JwsAlgorithm = (typeof JWS_ALGORITHMS)[number];
export type ExtAuthzConfig = GatewayConfig['extAuthz'];
export type RolloutConfig = NonNullable<ModelConfig['rollout']>;
export type CoordinationConfig = NonNullable<GatewayConfig['coordination']>;
