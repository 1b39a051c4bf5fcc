// The one interface every inference backend implements (in-process ONNX, remote HTTP, ...).

import type { StreamedBody } from '../http/request-body.js';
import type { BackendMetadata, InferenceRequest, InferenceResult } from '../protocol/oip.js';

export interface Backend {
  /** The config `kind` that created it, e.g. `onnx`. */
  readonly kind: string;
  /** Loads and warms up; resolves once the backend can serve. Rejects if it never can. */
  start(): Promise<void>;
  /** Inputs/outputs/platform; only valid after start() resolved. */
  metadata(): BackendMetadata;
  /** True while the backend can take requests. */
  ready(): boolean;
  /**
   * Runs one inference. `signal` aborts this one call (client gone, deadline): a queued call is dropped,
   * a running one is abandoned. Rejects with a GatewayError.
   */
  infer(request: InferenceRequest, signal: AbortSignal): Promise<InferenceResult>;
  /** Releases threads, sockets and sessions. Idempotent. */
  close(): Promise<void>;
  /**
   * Present on backends that are OIP servers themselves (kind `http`): sends the client's body as received and
   * returns the remote's answer untouched (the upstream stage rewrites names and maps statuses). Rejects only for
   * transport failures, with a GatewayError.
   */
  forward?(request: ForwardedRequest): Promise<ForwardedResponse>;
  /** True when the backend wants bodies undecoded (it validates them itself); only meaningful with `forward`. */
  readonly passThrough?: boolean;
  /** A remote backend's inference URL (its calls' client spans carry it, per the OpenTelemetry HTTP conventions). */
  readonly inferUrl?: URL;
  /** Asks the backend now whether it can serve (a remote's ready endpoint); absent: ready() is current. */
  checkReady?(signal: AbortSignal): Promise<boolean>;
  /**
   * True for a backend that calls another server (kinds `http`, `grpc`): `infer` sends the request's gateway headers
   * and deadline on (InferenceRequest.gatewayHeaders, .deadline), so the upstream stage supplies them.
   */
  readonly remote?: boolean;
}

/** A backend that can take a client's body as received. */
export type ForwardingBackend = Backend & Required<Pick<Backend, 'forward'>>;

/** The calls of a backend that carry a request: what interceptors see and wrap. */
export interface BackendCalls {
  infer(request: InferenceRequest, signal: AbortSignal): Promise<InferenceResult>;
  forward?(request: ForwardedRequest): Promise<ForwardedResponse>;
}

/**
 * undici's interceptor shape, for backends: given the calls beneath it, returns the calls to make instead
 * (instrumentation, the in-flight count, test faults). It must keep `forward` exactly when the calls beneath have it.
 */
export type BackendInterceptor = (next: BackendCalls) => BackendCalls;

/**
 * `backend` with every call passed through `interceptors`, the first outermost; lifecycle and metadata (start, ready,
 * metadata, checkReady, close) go straight to `backend`. Validated here, when composed, never on a call.
 */
export function intercept(backend: Backend, ...interceptors: readonly BackendInterceptor[]): Backend {
  // Looked up on each call, not bound once: the backend's own methods stay the ones that run.
  const infer: BackendCalls['infer'] = (request, signal) => backend.infer(request, signal);
  let calls: BackendCalls = backend.forward ? { infer, forward: (request) => backend.forward!(request) } : { infer };
  for (let i = interceptors.length - 1; i >= 0; i--) {
    const interceptor = interceptors[i];
    if (typeof interceptor !== 'function') throw new TypeError('invalid backend interceptor: not a function');
    const wrapped = interceptor(calls);
    if (typeof wrapped?.infer !== 'function' || (typeof wrapped.forward === 'function') !== (calls.forward !== undefined)) {
      throw new TypeError(`invalid backend interceptor ${interceptor.name || i}: it must return infer, and forward exactly when the backend has it`);
    }
    calls = wrapped;
  }
  const checkReady = backend.checkReady?.bind(backend);
  return {
    kind: backend.kind,
    start: () => backend.start(),
    metadata: () => backend.metadata(),
    ready: () => backend.ready(),
    close: () => backend.close(),
    infer: calls.infer,
    ...(calls.forward ? { forward: calls.forward } : {}),
    ...(backend.passThrough !== undefined ? { passThrough: backend.passThrough } : {}),
    ...(backend.remote !== undefined ? { remote: backend.remote } : {}),
    ...(backend.inferUrl !== undefined ? { inferUrl: backend.inferUrl } : {}),
    ...(checkReady ? { checkReady } : {}),
  };
}

/** An interceptor that runs the same code around every call, whichever kind (`infer` or `forward`). */
export function aroundEveryCall(wrap: <T>(operation: 'infer' | 'forward', call: () => Promise<T>) => Promise<T>): BackendInterceptor {
  return (next) => ({
    infer: (request, signal) => wrap('infer', () => next.infer(request, signal)),
    ...(next.forward ? { forward: (request: ForwardedRequest) => wrap('forward', () => next.forward!(request)) } : {}),
  });
}

/** A client's inference request as received, for a backend that speaks OIP itself. */
export interface ForwardedRequest {
  /**
   * The body bytes exactly as the client sent them: whole, or (a large body still arriving) streamed as it arrives;
   * a StreamedBody can be opened again from its first byte for a retry.
   */
  body: Buffer | StreamedBody;
  /** The client's end-to-end headers: hop-by-hop and credential headers already removed; the backend adds its own to it. */
  headers: Record<string, string>;
  /**
   * Headers the gateway itself vouches for (verified identity, a forwarded verified token, the request id). They are
   * applied last, over the client's headers and over the backend's configured `headers`, so neither can forge them.
   */
  gatewayHeaders?: Record<string, string>;
  /** Aborts this one call (deadline, client gone). */
  signal: AbortSignal;
}

/** A remote's answer: status, headers (lower-case names) and body, untouched. */
export interface ForwardedResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}
