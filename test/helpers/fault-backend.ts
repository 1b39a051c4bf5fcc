// Fault injection for tests: a real Backend implementation, wrapping a real ONNX backend, that is slow or fails on purpose.

import type { Logger } from 'pino';
import type { Backend } from '../../src/backends/backend.js';
import { createBackend } from '../../src/backends/create.js';
import { GatewayError } from '../../src/errors/gateway-error.js';
import type { BackendFactory } from '../../src/models/catalog.js';
import type { BackendMetadata, InferenceRequest, InferenceResult } from '../../src/protocol/oip.js';
import { isShadowRequest } from '../../src/protocol/shadow-mark.js';

export interface Faults {
  /** Every call waits this long (honouring its abort signal) before running for real. */
  delayMs?: number;
  /** Every call fails with a 500-class backend error instead of running. */
  fail?: boolean;
  /** The version reports not ready (a backend still loading, or a remote not reached yet); flip it to false at any time. */
  notReady?: boolean;
}

/** Wraps a real backend; counts calls (and how many were marked as shadows) and injects the configured faults. */
export class FaultyBackend implements Backend {
  readonly kind: string;
  readonly #inner: Backend;
  readonly faults: Faults;
  calls = 0;
  shadowCalls = 0;
  aborted = 0;
  closed = false;
  started = 0;

  constructor(inner: Backend, faults: Faults) {
    this.#inner = inner;
    this.faults = faults;
    this.kind = inner.kind;
  }

  start(): Promise<void> {
    this.started++;
    return this.#inner.start();
  }

  metadata(): BackendMetadata {
    return this.#inner.metadata();
  }

  ready(): boolean {
    return !this.faults.notReady && this.#inner.ready();
  }

  async infer(request: InferenceRequest, signal: AbortSignal): Promise<InferenceResult> {
    this.calls++;
    if (isShadowRequest(request)) this.shadowCalls++;
    if (this.faults.fail) throw new GatewayError('GW_ERR_BACKEND_FAILED', 'injected failure');
    if (this.faults.delayMs) {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(resolve, this.faults.delayMs);
        signal.addEventListener(
          'abort',
          () => {
            clearTimeout(timer);
            this.aborted++;
            reject(signal.reason);
          },
          { once: true },
        );
      });
    }
    return this.#inner.infer(request, signal);
  }

  close(): Promise<void> {
    this.closed = true;
    return this.#inner.close();
  }
}

/**
 * A BackendFactory that builds the real backend for every version and wraps the ones named in `faults`
 * (`model/version` → faults). Every backend it made is kept in `made`, newest last, for assertions.
 */
export function faultInjectingFactory(faults: Record<string, Faults>, log: Logger): { factory: BackendFactory; made: Map<string, FaultyBackend[]> } {
  const made = new Map<string, FaultyBackend[]>();
  const factory: BackendFactory = (model, version, config) => {
    const label = `${model}/${version}`;
    const backend = new FaultyBackend(createBackend(model, version, config, log), faults[label] ?? {});
    made.set(label, [...(made.get(label) ?? []), backend]);
    return backend;
  };
  return { factory, made };
}
