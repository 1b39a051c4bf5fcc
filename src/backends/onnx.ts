// In-process ONNX backend: a small pool of worker threads, one session each, fed from a bounded FIFO queue.

import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { GatewayError } from '../errors/gateway-error.js';
import type { BackendMetadata, InferenceRequest, InferenceResult } from '../protocol/oip.js';
import type { Backend } from './backend.js';
import type { OnnxWorkerData, WorkerRequest, WorkerResponse } from './onnx-messages.js';

export interface OnnxBackendOptions {
  path: string;
  workers: number;
  intraOpThreads: number;
  maxQueue: number;
  /** Human name used in errors, e.g. `model iris version 2`. */
  label: string;
  log: Logger;
}

interface Job {
  request: InferenceRequest;
  signal: AbortSignal;
  resolve(result: InferenceResult): void;
  reject(err: unknown): void;
  settled: boolean;
}

interface Slot {
  worker: Worker;
  job: Job | undefined;
}

const WORKER_URL = new URL('./onnx-worker.js', import.meta.url);
const RESPAWN_DELAY_MS = { first: 100, max: 5_000 };
/** close() waits this long for a worker to finish an abandoned run and exit by itself before terminating it, ms. */
const CLOSE_GRACE_MS = 30_000;

/** Why a call was aborted: the signal's own GatewayError (deadline, shutdown) or a client disconnect. */
function abortReason(signal: AbortSignal): GatewayError {
  return signal.reason instanceof GatewayError ? signal.reason : new GatewayError('GW_ERR_CLIENT_CLOSED');
}

export class OnnxBackend implements Backend {
  readonly kind = 'onnx';
  readonly #opts: OnnxBackendOptions;
  readonly #slots = new Set<Slot>();
  readonly #queue: Job[] = [];
  #metadata: BackendMetadata | undefined;
  #nextId = 1;
  #closed = false;
  #respawnDelay = RESPAWN_DELAY_MS.first;

  constructor(opts: OnnxBackendOptions) {
    this.#opts = opts;
  }

  async start(): Promise<void> {
    const started = await Promise.allSettled(Array.from({ length: this.#opts.workers }, () => this.#spawn()));
    const failure = started.find((r) => r.status === 'rejected');
    if (failure) {
      await this.close();
      throw (failure as PromiseRejectedResult).reason;
    }
  }

  metadata(): BackendMetadata {
    if (!this.#metadata) throw new GatewayError('GW_ERR_MODEL_NOT_READY', `${this.#opts.label} is not loaded yet`);
    return this.#metadata;
  }

  ready(): boolean {
    return !this.#closed && this.#slots.size > 0;
  }

  infer(request: InferenceRequest, signal: AbortSignal): Promise<InferenceResult> {
    if (this.#closed) return Promise.reject(new GatewayError('GW_ERR_SHUTTING_DOWN'));
    if (this.#slots.size === 0) {
      return Promise.reject(new GatewayError('GW_ERR_MODEL_NOT_READY', `${this.#opts.label} has no running worker`, { headers: { 'retry-after': '1' } }));
    }
    if (signal.aborted) return Promise.reject(abortReason(signal));
    if (this.#queue.length >= this.#opts.maxQueue && !this.#freeSlot()) {
      return Promise.reject(
        new GatewayError('GW_ERR_BACKEND_UNAVAILABLE', `${this.#opts.label} is overloaded: ${this.#queue.length} requests already queued`, {
          headers: { 'retry-after': '1' },
        }),
      );
    }
    return new Promise<InferenceResult>((resolve, reject) => {
      const onAbort = () => {
        const queued = this.#queue.indexOf(job);
        if (queued >= 0) this.#queue.splice(queued, 1);
        // A running session cannot be interrupted: its result is dropped when it arrives.
        settle(() => reject(abortReason(signal)));
      };
      const settle = (fn: () => void) => {
        if (job.settled) return;
        job.settled = true;
        signal.removeEventListener('abort', onAbort);
        fn();
      };
      const job: Job = {
        request,
        signal,
        settled: false,
        resolve: (result) => settle(() => resolve(result)),
        reject: (err) => settle(() => reject(err)),
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.#queue.push(job);
      this.#pump();
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const job of this.#queue.splice(0)) job.reject(new GatewayError('GW_ERR_SHUTTING_DOWN'));
    const slots = [...this.#slots];
    this.#slots.clear();
    for (const slot of slots) slot.job?.reject(new GatewayError('GW_ERR_SHUTTING_DOWN'));
    await Promise.allSettled(slots.map((s) => this.#stop(s.worker)));
  }

  /**
   * Asks a worker to end after its current run and waits for it. terminate() while a session is running (an abandoned
   * call: deadline passed, client gone) makes onnxruntime-node abort the process; it is only the last resort.
   */
  async #stop(worker: Worker): Promise<void> {
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    const close: WorkerRequest = { type: 'close' };
    worker.postMessage(close);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), CLOSE_GRACE_MS)));
    const outcome = await Promise.race([exited.then(() => 'exited' as const), late]);
    clearTimeout(timer);
    if (outcome === 'late') {
      this.#opts.log.warn({ graceMs: CLOSE_GRACE_MS }, 'ONNX worker still running after close; terminating it');
      await worker.terminate();
    }
  }

  #freeSlot(): Slot | undefined {
    for (const slot of this.#slots) if (!slot.job) return slot;
    return undefined;
  }

  #pump(): void {
    let slot: Slot | undefined;
    while (this.#queue.length > 0 && (slot = this.#freeSlot())) {
      const job = this.#queue.shift()!;
      if (job.settled) continue;
      slot.job = job;
      const msg: WorkerRequest = { type: 'infer', id: this.#nextId++, inputs: job.request.inputs, outputs: job.request.outputs };
      slot.worker.postMessage(msg);
    }
  }

  /** Starts one worker and resolves once its session is loaded and warmed up. */
  #spawn(): Promise<void> {
    const data: OnnxWorkerData = { path: this.#opts.path, intraOpThreads: this.#opts.intraOpThreads };
    const worker = new Worker(WORKER_URL, { workerData: data });
    return new Promise<void>((resolve, reject) => {
      const slot: Slot = { worker, job: undefined };
      let loaded = false;
      worker.on('message', (msg: WorkerResponse) => {
        switch (msg.type) {
          case 'ready':
            loaded = true;
            this.#metadata ??= msg.metadata;
            if (msg.warmupError) this.#opts.log.warn({ err: msg.warmupError }, 'warm-up inference failed; serving anyway');
            if (this.#closed) {
              void worker.terminate();
              resolve();
              return;
            }
            this.#slots.add(slot);
            this.#respawnDelay = RESPAWN_DELAY_MS.first;
            resolve();
            this.#pump();
            return;
          case 'load-error':
            void worker.terminate();
            reject(new Error(`cannot load ${this.#opts.path}: ${msg.message}`));
            return;
          case 'result':
          case 'error': {
            const job = slot.job;
            slot.job = undefined;
            if (job && msg.type === 'result') job.resolve({ outputs: msg.outputs });
            if (job && msg.type === 'error') {
              job.reject(new GatewayError('GW_ERR_BACKEND_FAILED', `${this.#opts.label}: inference failed: ${msg.message}`));
            }
            this.#pump();
            return;
          }
        }
      });
      worker.on('error', (err) => {
        this.#opts.log.error({ err }, 'ONNX worker crashed');
        if (!loaded) reject(err);
      });
      worker.on('exit', (code) => {
        const wasServing = this.#slots.delete(slot);
        slot.job?.reject(new GatewayError('GW_ERR_BACKEND_FAILED', `${this.#opts.label}: worker thread exited (code ${code})`));
        slot.job = undefined;
        if (!loaded) reject(new Error(`worker thread exited with code ${code} before the model loaded`));
        if (wasServing && this.#slots.size === 0) {
          // No worker left to take queued calls: fail them now rather than let them wait for a respawn.
          for (const job of this.#queue.splice(0)) {
            job.reject(new GatewayError('GW_ERR_BACKEND_UNAVAILABLE', `${this.#opts.label} has no running worker`, { headers: { 'retry-after': '1' } }));
          }
        }
        if (wasServing && !this.#closed) this.#respawnLater();
      });
    });
  }

  #respawnLater(): void {
    const delay = this.#respawnDelay;
    this.#respawnDelay = Math.min(delay * 2, RESPAWN_DELAY_MS.max);
    this.#opts.log.warn({ delayMs: delay }, 'respawning ONNX worker');
    setTimeout(() => {
      if (this.#closed) return;
      this.#spawn().catch((err: unknown) => {
        this.#opts.log.error({ err }, 'ONNX worker respawn failed');
        this.#respawnLater();
      });
    }, delay).unref();
  }
}
