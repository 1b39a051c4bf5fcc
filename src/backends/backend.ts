// The one interface every inference backend implements (in-process ONNX, remote HTTP, ...).

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
}
