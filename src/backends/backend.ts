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
   * transport failures, with a GatewayError. Callers find it through wrappers with forwardingBackend().
   */
  forward?(request: ForwardedRequest): Promise<ForwardedResponse>;
  /** True when the backend wants bodies undecoded (it validates them itself); only meaningful with `forward`. */
  readonly passThrough?: boolean;
  /** Asks the backend now whether it can serve (a remote's ready endpoint); absent: ready() is current. */
  checkReady?(signal: AbortSignal): Promise<boolean>;
  /** Set by wrappers (e.g. reload's TrackedBackend): the backend they wrap, so optional capabilities stay reachable. */
  readonly inner?: Backend;
}

/** A backend that can take a client's body as received. */
export type ForwardingBackend = Backend & Required<Pick<Backend, 'forward'>>;

/**
 * The backend (this one or one it wraps) that forwards undecoded bodies, if any. Calls made through it bypass a
 * wrapper's own bookkeeping; forwarding only ever happens inside a request, which reload's drain already waits for.
 */
export function forwardingBackend(backend: Backend): ForwardingBackend | undefined {
  for (let b: Backend | undefined = backend, depth = 0; b !== undefined && depth < 8; b = b.inner, depth++) {
    if (b.forward !== undefined) return b as ForwardingBackend;
  }
  return undefined;
}

/** A client's inference request as received, for a backend that speaks OIP itself. */
export interface ForwardedRequest {
  /**
   * The body bytes exactly as the client sent them: whole, or (a large body still arriving) streamed as it arrives;
   * a StreamedBody can be opened again from its first byte for a retry.
   */
  body: Buffer | StreamedBody;
  /** The client's end-to-end headers: hop-by-hop and credential headers already removed. */
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
