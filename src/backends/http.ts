// Remote backend (kind `http`): an OIP server (the `serve-model` runtime container, Triton, KServe) behind an undici
// Pool with keep-alive and timeouts; forwards bodies undecoded, retries once what never left, probes metadata.

import { context, propagation } from '@opentelemetry/api';
import { isShadowRequest, SHADOW_HEADER } from '../protocol/shadow-mark.js';
import { Readable } from 'node:stream';
import { Pool } from 'undici';
import type { Logger } from 'pino';
import type { HttpBackendConfig } from '../config/schema.js';
import { GatewayError } from '../errors/gateway-error.js';
import type { BackendMetadata, InferenceRequest, InferenceResult } from '../protocol/oip.js';
import { MetadataProbe } from './metadata-probe.js';
import { RetryBudget } from './retry-budget.js';
import { systemClock, type Clock } from '../core/clock.js';
import type { StreamedBody } from '../http/request-body.js';
import type { Backend, ForwardedRequest, ForwardedResponse } from './backend.js';
import { exchange, ExchangeError, type ExchangeRequest, type ExchangeResponse } from './http-dispatch.js';
import { currentHttpExchange } from '../telemetry/http-semconv.js';
import { decodeOutputs, encodeInferRequest, parseInferenceResponse, parseRemoteMetadata, remoteErrorMessage, RemoteModelPaths } from './http-oip.js';

export interface HttpBackendOptions {
  config: HttpBackendConfig;
  /** The gateway's model name: the remote's name when `config.model` is unset. */
  model: string;
  /** Human name used in errors, e.g. `model iris version 2`. */
  label: string;
  log: Logger;
  clock?: Clock;
}

/** Failures of a connection that say nothing about the request (it never reached the remote if it was not sent). */
const CONNECTION_FAILURES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);

const RETRY_AFTER = { 'retry-after': '1' };

/** An exchange whose body may be a StreamedBody, opened afresh for each attempt. */
type OutgoingRequest = Omit<ExchangeRequest, 'body'> & { body?: Buffer | StreamedBody };

export class HttpBackend implements Backend {
  readonly kind = 'http';
  readonly remote = true;
  readonly passThrough: boolean;
  /** Where inference calls go (the origin and path only: never credentials or a query). */
  readonly inferUrl: URL;
  readonly #config: HttpBackendConfig;
  readonly #label: string;
  readonly #log: Logger;
  readonly #paths: RemoteModelPaths;
  readonly #pool: Pool;
  readonly #budget: RetryBudget | undefined;
  /** `headers` from the config, names lower-cased so they replace (never duplicate) a forwarded header. */
  readonly #configuredHeaders: Record<string, string>;
  readonly #probe: MetadataProbe;
  #closed = false;
  #retries = 0;

  constructor(opts: HttpBackendOptions) {
    const { config } = opts;
    this.#config = config;
    this.#label = opts.label;
    this.#log = opts.log;
    this.passThrough = config.validate === 'remote';
    this.#configuredHeaders = Object.fromEntries(Object.entries(config.headers).map(([name, value]) => [name.toLowerCase(), value]));
    this.#paths = new RemoteModelPaths(config.url, config.model ?? opts.model, config.version);
    this.inferUrl = new URL(this.#paths.infer, this.#paths.origin);
    this.#pool = new Pool(this.#paths.origin, {
      connections: config.connections,
      // No pipelining: inference calls are long and non-idempotent; one slow call must not stall those behind it.
      pipelining: 1,
      connectTimeout: config.connectTimeoutMs,
      headersTimeout: config.headersTimeoutMs,
      bodyTimeout: config.bodyTimeoutMs,
      // Close idle sockets before the remote does (it would race our next request); Keep-Alive hints may shorten it.
      keepAliveTimeout: config.keepAliveTimeoutMs,
      keepAliveMaxTimeout: config.keepAliveTimeoutMs,
      maxResponseSize: config.maxResponseBytes,
    });
    this.#budget = config.retry.enabled
      ? new RetryBudget(
          { percent: config.retry.budgetPercent, minPerSecond: config.retry.minRetriesPerSecond, windowMs: config.retry.budgetWindowMs },
          opts.clock ?? systemClock,
        )
      : undefined;
    this.#probe = new MetadataProbe({
      fetch: () => this.#fetchMetadata(),
      intervalMs: config.probeIntervalMs,
      log: opts.log,
      target: `${this.#paths.origin}${this.#paths.metadata}`,
    });
  }

  /**
   * Fetches the remote's metadata once. A remote that is not up yet is no reason to fail the gateway (in a pod the
   * runtime container may start later): the version stays not-ready and the probe keeps trying in the background.
   */
  start(): Promise<void> {
    return this.#probe.start();
  }

  metadata(): BackendMetadata {
    const metadata = this.#probe.metadata;
    if (!metadata)
      throw new GatewayError('GW_ERR_MODEL_NOT_READY', `${this.#label}: the backend's metadata has not been fetched yet`, { headers: RETRY_AFTER });
    return metadata;
  }

  /**
   * Ready once the remote's metadata was fetched. Later failures do not flip it back: gateway readiness failing would
   * pull the whole pod (and any fallback version) out of service; breakers deal with a failing remote instead.
   */
  ready(): boolean {
    return !this.#closed && this.#probe.metadata !== undefined;
  }

  /** Asks the remote's own ready endpoint now. */
  async checkReady(signal: AbortSignal): Promise<boolean> {
    if (this.#closed) return false;
    try {
      const res = await this.#request(
        {
          method: 'GET',
          path: this.#paths.ready,
          headers: { ...this.#configuredHeaders },
          signal: AbortSignal.any([signal, AbortSignal.timeout(this.#config.probeTimeoutMs)]),
        },
        false,
      );
      return res.status === 200;
    } catch (err) {
      if (signal.aborted) throw err;
      return false;
    }
  }

  forward(request: ForwardedRequest): Promise<ForwardedResponse> {
    if (this.#closed) return Promise.reject(new GatewayError('GW_ERR_SHUTTING_DOWN'));
    // The client's headers object is the request's own (clientHeaders made it): the backend's and the gateway's go on top.
    const headers = Object.assign(request.headers, this.#configuredHeaders, request.gatewayHeaders);
    const { body } = request;
    // A body still arriving streams through with the client's framing: its declared length, else chunked.
    if (!Buffer.isBuffer(body) && body.length !== undefined) headers['content-length'] = String(body.length);
    return this.#request({ method: 'POST', path: this.#paths.infer, headers, body, signal: request.signal }, true);
  }

  /** Tensors in, tensors out (shadow copies, or callers without a client body): JSON-encodes and decodes. */
  async infer(request: InferenceRequest, signal: AbortSignal): Promise<InferenceResult> {
    const body = encodeInferRequest(request);
    // A mirrored copy is marked for the remote too, so it can keep shadow traffic out of its own statistics.
    const gatewayHeaders: Record<string, string> = { ...request.gatewayHeaders, ...(isShadowRequest(request) ? { [SHADOW_HEADER]: 'true' } : {}) };
    propagation.inject(context.active(), gatewayHeaders);
    const res = await this.forward({ body, headers: { 'content-type': 'application/json' }, gatewayHeaders, signal });
    if (res.status >= 200 && res.status < 300) {
      return { outputs: decodeOutputs(parseInferenceResponse(res, this.#label), this.#label) };
    }
    throw this.#statusError(res);
  }

  /** Retries made since start (each one a request that never reached the remote). */
  get retries(): number {
    return this.#retries;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#probe.close();
    // destroy, not close: by the time backends close, the server has drained; a call still waiting on a hung remote
    // must not hold shutdown up.
    await this.#pool.destroy();
  }

  /** One request, retried once when it failed before the remote could have seen it and the budget allows. */
  async #request(request: OutgoingRequest, retryable: boolean): Promise<ExchangeResponse> {
    const budget = retryable ? this.#budget : undefined;
    budget?.recordRequest();
    // Each attempt sends the body from its first byte.
    const attempt = (): ExchangeRequest =>
      request.body === undefined || Buffer.isBuffer(request.body)
        ? (request as ExchangeRequest)
        : { ...request, body: Readable.from(request.body.open(), { objectMode: false }) };
    const req = attempt();
    // The traced call this exchange serves (its client span records the status and any resend); none for probes.
    const traced = retryable ? currentHttpExchange() : undefined;
    try {
      const res = await exchange(this.#pool, req);
      if (traced) traced.status = res.status;
      return res;
    } catch (first) {
      if (!(budget && isSafeToRetry(first) && !req.signal.aborted && budget.tryRetry())) throw this.#transportError(first, req.signal);
      this.#retries++;
      if (traced) traced.resends++;
      this.#log.debug({ err: first }, 'retrying a request that never reached the backend');
      try {
        const res = await exchange(this.#pool, attempt());
        if (traced) traced.status = res.status;
        return res;
      } catch (second) {
        throw this.#transportError(second, req.signal);
      }
    }
  }

  /** Maps a failed exchange to the gateway's error: the signal's own reason, a timeout, or an unreachable remote. */
  #transportError(err: unknown, signal: AbortSignal): GatewayError {
    if (err instanceof ExchangeError && err.aborted) {
      if (signal.reason instanceof GatewayError) return signal.reason;
      // Only probes use AbortSignal.timeout; requests are cut by the deadline stage's GatewayError.
      if (signal.reason instanceof DOMException && signal.reason.name === 'TimeoutError') {
        return new GatewayError(
          'GW_ERR_BACKEND_TIMEOUT',
          `${this.#label}: the backend did not answer within probeTimeoutMs (${this.#config.probeTimeoutMs} ms)`,
          { cause: err },
        );
      }
      return new GatewayError('GW_ERR_CLIENT_CLOSED', undefined, { cause: err });
    }
    if (err instanceof GatewayError) return err;
    // A streamed body that failed while it was sent (too large, client gone) fails the exchange with its own error.
    if (err instanceof ExchangeError && err.cause instanceof GatewayError) return err.cause;
    const code = err instanceof ExchangeError ? err.code : undefined;
    const label = this.#label;
    switch (code) {
      case 'UND_ERR_HEADERS_TIMEOUT':
        return new GatewayError('GW_ERR_BACKEND_TIMEOUT', `${label}: the backend sent no response within ${this.#config.headersTimeoutMs} ms`, { cause: err });
      case 'UND_ERR_BODY_TIMEOUT':
        return new GatewayError('GW_ERR_BACKEND_TIMEOUT', `${label}: the backend stalled for ${this.#config.bodyTimeoutMs} ms while sending its response`, {
          cause: err,
        });
      case 'UND_ERR_CONNECT_TIMEOUT':
        return new GatewayError('GW_ERR_BACKEND_UNREACHABLE', `${label}: connecting to the backend timed out`, { cause: err, headers: RETRY_AFTER });
      case 'UND_ERR_RES_EXCEEDED_MAX_SIZE':
        return new GatewayError('GW_ERR_BAD_GATEWAY', `${label}: the backend's response exceeds ${this.#config.maxResponseBytes} bytes`, { cause: err });
      case 'UND_ERR_DESTROYED':
      case 'UND_ERR_CLOSED':
        return new GatewayError('GW_ERR_SHUTTING_DOWN', undefined, { cause: err });
    }
    if (code !== undefined && CONNECTION_FAILURES.has(code)) {
      // No answer came back: the remote either never got the request or died on it. Inference has no side effects, so
      // the upstream stage may re-serve it from the model's fallback version (another backend) at once.
      const how = err instanceof ExchangeError && err.responded ? 'GW_ERR_BACKEND_UNAVAILABLE' : 'GW_ERR_BACKEND_UNREACHABLE';
      return new GatewayError(how, `${label}: the backend is unreachable (${code})`, { cause: err, headers: RETRY_AFTER });
    }
    return new GatewayError('GW_ERR_BAD_GATEWAY', `${label}: the exchange with the backend failed${code ? ` (${code})` : ''}`, { cause: err });
  }

  /** A remote's non-2xx answer to a tensor call, as the gateway's error for it. */
  #statusError(res: ForwardedResponse): GatewayError {
    const detail = remoteErrorMessage(res.body) ?? `status ${res.status}`;
    const message = `${this.#label}: the backend refused the request: ${detail}`;
    const retryAfter = { 'retry-after': res.headers['retry-after'] ?? '1' };
    if (res.status === 404) return new GatewayError('GW_ERR_BAD_GATEWAY', `${this.#label}: the backend does not serve its configured model: ${detail}`);
    if (res.status === 413) return new GatewayError('GW_ERR_BODY_TOO_LARGE', message);
    if (res.status === 429 || res.status === 503) return new GatewayError('GW_ERR_BACKEND_UNAVAILABLE', message, { headers: retryAfter });
    if (res.status === 408 || res.status === 504) return new GatewayError('GW_ERR_BACKEND_TIMEOUT', message);
    if (res.status >= 400 && res.status < 500) return new GatewayError('GW_ERR_INVALID_REQUEST', message);
    if (res.status === 500) return new GatewayError('GW_ERR_BACKEND_FAILED', `${this.#label}: inference failed in the backend: ${detail}`);
    return new GatewayError('GW_ERR_BAD_GATEWAY', `${this.#label}: the backend answered ${detail}`);
  }

  /** One fetch of the remote's model metadata (the probe calls it at start and every probeIntervalMs). */
  async #fetchMetadata(): Promise<BackendMetadata> {
    const res = await this.#request(
      { method: 'GET', path: this.#paths.metadata, headers: { ...this.#configuredHeaders }, signal: AbortSignal.timeout(this.#config.probeTimeoutMs) },
      false,
    );
    const metadata = res.status === 200 ? parseRemoteMetadata(res.body) : undefined;
    if (!metadata) throw new Error(res.status === 200 ? 'the metadata body is not OIP model metadata' : `metadata request answered ${res.status}`);
    return metadata;
  }
}

/** Only connection failures of a request that was never completely written: the remote cannot have acted on it. */
function isSafeToRetry(err: unknown): boolean {
  return err instanceof ExchangeError && !err.aborted && !err.sent && !err.responded && err.code !== undefined && CONNECTION_FAILURES.has(err.code);
}
