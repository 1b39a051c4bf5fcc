// The process: the data-plane listener and its timeouts, logging, telemetry, the admin API, reload, the disagreement
// log, ext_authz and cross-replica coordination.

import { z } from 'zod';

/** The gRPC data-plane listener. Its message limit is server.maxBodyBytes; the shutdown timeline is the HTTP one's. */
export const grpcServerSchema = z.strictObject({
  /** Serve the gRPC data plane. */
  enabled: z.boolean().default(true),
  /** gRPC listen port (8081 is the admin API's); 0 picks a free port. */
  port: z.int().min(0).max(65535).default(8082),
  /** Ping a client connection after this long without activity, to find peers that are gone, ms (grpc.keepalive_time_ms). */
  keepaliveTimeMs: z.int().min(1000).default(60_000),
  /** A ping unanswered this long closes the connection, ms (grpc.keepalive_timeout_ms). */
  keepaliveTimeoutMs: z.int().min(100).default(20_000),
  /**
   * Connections older than this are closed gracefully (GOAWAY; calls in flight finish), so long-lived clients spread
   * over replicas added since, ms (grpc.max_connection_age_ms); 0: never.
   */
  maxConnectionAgeMs: z.int().min(0).default(0),
  /** Calls in flight on one connection at most (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS). */
  maxConcurrentStreams: z.int().min(1).max(1_000_000).default(1000),
});

/** The data-plane HTTP listener, its limits and the shutdown timeline. */
export const serverSchema = z
  .strictObject({
    /** Data-plane listen address. */
    host: z.string().min(1).default('0.0.0.0'),
    /** Data-plane port; 0 picks a free port. */
    port: z.int().min(0).max(65535).default(8080),
    /** Largest accepted request body, in bytes; larger bodies get 413 before they are read. */
    maxBodyBytes: z
      .int()
      .min(1024)
      .default(16 * 1024 * 1024),
    /** Idle keep-alive socket lifetime, ms. Must exceed the idle timeout of the Envoy in front (docs/mesh.md). */
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
    /**
     * After the drain delay, keep accepting until no request has arrived for this long, ms (0: stop at the delay).
     * serve-model uses 1000 when unset: its client, the gateway beside it, forwards until its own drain ends.
     */
    drainQuietMs: z.int().min(0).default(0),
    /** Largest accepted request head (request line and headers), bytes; larger ones get 431 (Node's maxHeaderSize). */
    maxHeaderBytes: z
      .int()
      .min(1024)
      .max(1024 * 1024)
      .default(16 * 1024),
    /**
     * Data-plane processes. 1: this process serves. N > 1: it becomes a supervisor that forks N gateway workers sharing
     * the data-plane port (Node's cluster), restarts any that dies, and relays the admin API to all of them; workers
     * are replicas, so rate limits and rollouts need their Redis store (read at start).
     */
    workers: z.int().min(1).max(64).default(1),
    /** Connections on the HTTP data-plane listener at most; beyond it new ones are closed at once. 0: no limit. */
    maxConnections: z.int().min(0).default(0),
    /**
     * Memory the request bodies in flight may take at once (admission by bytes): a body the gateway only forwards (or
     * binary tensor data) counts its size, a JSON body it decodes 20× its size (its parsed arrays, tensor and answer);
     * a body that would pass the cap is refused with 503 and Retry-After before it is read, unless nothing else is held.
     * 0: no limit. At least maxBodyBytes. The default only stops floods; set it from the container's memory limit
     * (deploy/ uses 192 MiB under 512Mi).
     */
    maxBufferedBodyBytes: z
      .int()
      .min(0)
      .default(1024 * 1024 * 1024),
    /** Shed new inference with 503 while the process's RSS is above this many bytes (read every 100 ms). 0: off. */
    shedAboveRssBytes: z.int().min(0).default(0),
    /** The OIP over gRPC (inference.GRPCInferenceService and grpc.health.v1.Health): its own port, on server.host. */
    grpc: grpcServerSchema.prefault({}),
  })
  .refine((s) => s.drainDelayMs < s.shutdownTimeoutMs || s.shutdownTimeoutMs === 0, {
    path: ['drainDelayMs'],
    message: 'must be below server.shutdownTimeoutMs (the drain delay counts against the same deadline)',
  })
  .refine((s) => s.maxBufferedBodyBytes === 0 || s.maxBufferedBodyBytes >= s.maxBodyBytes, {
    path: ['maxBufferedBodyBytes'],
    message: 'must be 0 (no limit) or at least server.maxBodyBytes, so that one largest body always fits',
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
  /** The audit trail of operator actions (every admin change, console or CLI, and every refused call); read at start. */
  audit: z
    .strictObject({
      enabled: z.boolean().default(true),
      /**
       * JSON Lines file; relative paths resolve against the config file's directory. Unset: `model-gateway-audit.jsonl`
       * next to the config file (a gateway started without a file keeps the trail in memory and in its log only).
       */
      path: z.string().min(1).optional(),
      /** When the file would grow past this many bytes it is rotated to `<path>.1` (one old file kept). */
      maxFileBytes: z
        .int()
        .min(4096)
        .default(16 * 1024 * 1024),
    })
    .prefault({}),
  /** The ops console at /console on the admin port: its login sessions and live stream; read at start. */
  console: z
    .strictObject({
      enabled: z.boolean().default(true),
      /** A console session ends this long after login (a JWT's own expiry ends it sooner), ms. */
      sessionTtlMs: z
        .int()
        .min(60_000)
        .default(8 * 60 * 60 * 1000),
      /** Console sessions held at once; a login beyond it ends the oldest. */
      maxSessions: z.int().min(1).max(10_000).default(64),
      /** Live streams (GET /admin/events) open at once; more are refused with 503. */
      maxStreams: z.int().min(1).max(1000).default(16),
      /** Mark the session cookie `Secure` (set it when the console is reached over HTTPS through a proxy). */
      secureCookie: z.boolean().default(false),
    })
    .prefault({}),
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

/** A JSON Lines file of sampled shadow disagreements (request id and both outputs; the inputs only when asked). */
export const disagreementLogSchema = z.strictObject({
  /** File path; relative paths resolve against the config file's directory. */
  path: z.string().min(1),
  /** Fraction of disagreements written, 0–1. */
  sampleRate: z.number().min(0).max(1).default(1),
  /** When the file would grow past this many bytes it is rotated to `<path>.1` (one old file kept). */
  maxFileBytes: z
    .int()
    .min(1024)
    .default(64 * 1024 * 1024),
  /** Elements of each output written per line; longer outputs are cut and marked `truncated`. */
  maxElementsPerOutput: z.int().min(1).default(1024),
  /** Also write the request's inputs (cut like the outputs): they may be personal data, so off unless chosen. */
  includeInputs: z.boolean().default(false),
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
 * Where a gateway without `coordination` keeps its rollouts' state, so a restart resumes each rollout where it was
 * (docs/rollouts.md#restarts-and-the-state-file). Read at start only.
 */
export const rolloutStateSchema = z.strictObject({
  /** Keep the state in a file; false: in memory only (a restart starts every rollout again from the shadow phase). */
  persist: z.boolean().default(true),
  /**
   * The state file, relative to the config file's directory; its directory must be writable. Unset:
   * `<config file>.rollout-state.json` beside the config file (nothing is kept for a gateway started without one).
   */
  path: z.string().min(1).optional(),
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
      pathPrefix: z
        .string()
        .regex(/^(\/[A-Za-z0-9._~-]+)*$/, 'pathPrefix is empty or /segment[/segment...]')
        .default('/ext-authz'),
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
