// A version's backend (in-process ONNX or a remote OIP server) and its guards: limits and circuit breaker.

import { z } from 'zod';
import { HEADER_NAME, name } from './common.js';

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
  maxResponseBytes: z
    .int()
    .min(1024)
    .default(64 * 1024 * 1024),
  /** How often the remote's model metadata is fetched (and, until the first success, retried), ms. */
  probeIntervalMs: z.int().min(100).default(5_000),
  /** Metadata and readiness requests give up after this long, ms (gateway start waits at most this for the first). */
  probeTimeoutMs: z.int().min(1).default(2_000),
  /** Extra headers sent with every request to the remote (the client's Authorization is never forwarded). */
  headers: z.record(z.string().regex(HEADER_NAME, 'header names must be valid HTTP tokens'), z.string()).default({}),
  retry: retrySchema.prefault({}),
});

const grpcBackend = z.strictObject({
  kind: z.literal('grpc'),
  /** The remote's OIP gRPC address, `host:port` (Triton's gRPC port, `serve-model --grpc-port`, KServe, MLServer). */
  target: z.string().regex(/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'target must be host:port (an IPv6 host in brackets)'),
  /** TLS with the system's root certificates; false: plaintext HTTP/2, as inside a pod. */
  tls: z.boolean().default(false),
  /** The model's name on the remote; default: this model's name. */
  model: name('model').optional(),
  /** The version on the remote; default: none (the remote's default version). */
  version: name('version').optional(),
  /** Deadline of a call the gateway gives no deadline of its own (the model's timeoutMs usually comes first), ms. */
  callTimeoutMs: z.int().min(1).default(60_000),
  /** Ping the connection after this long without activity while calls are open, ms (grpc.keepalive_time_ms). */
  keepaliveTimeMs: z.int().min(1000).default(60_000),
  /** A ping unanswered this long closes the connection, ms (grpc.keepalive_timeout_ms). */
  keepaliveTimeoutMs: z.int().min(100).default(20_000),
  /** Largest accepted response message, bytes. */
  maxResponseBytes: z
    .int()
    .min(1024)
    .default(64 * 1024 * 1024),
  /** How often the remote's model metadata is fetched (and, until the first success, retried), ms. */
  probeIntervalMs: z.int().min(100).default(5_000),
  /** Metadata and readiness calls give up after this long, ms (gateway start waits at most this for the first). */
  probeTimeoutMs: z.int().min(1).default(2_000),
  /** Extra metadata sent with every call (lower-case names; the client's authorization is never forwarded). */
  headers: z
    .record(
      z
        .string()
        .regex(/^[0-9a-z_.-]+$/, 'metadata names must be lower-case tokens')
        .refine((n) => !n.startsWith('grpc-') && !n.endsWith('-bin'), 'grpc-* and *-bin names are reserved'),
      z.string(),
    )
    .default({}),
});

export const backendSchema = z.discriminatedUnion('kind', [onnxBackend, httpBackend, grpcBackend]);

/** Load shedding for one version, enforced by the upstream stage's guard for every backend kind. */
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
  /**
   * This many calls in a row that could not reach the backend (connection refused, reset before any answer, connect
   * timeout) open the breaker at once, without waiting for the window's volume: a dead backend is known. 0: off.
   */
  consecutiveConnectFailures: z.int().min(0).default(5),
});

export const versionSchema = z.strictObject({
  backend: backendSchema,
  limits: limitsSchema.prefault({}),
  breaker: breakerSchema.prefault({}),
});
