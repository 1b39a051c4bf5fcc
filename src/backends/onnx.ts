// In-process ONNX backend: a small pool of worker threads, one session each, fed from a bounded FIFO queue that can
// stack compatible calls into one run (dynamic batching).

import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { GatewayError } from '../errors/gateway-error.js';
import type { BackendMetadata, InferenceRequest, InferenceResult, Tensor } from '../protocol/oip.js';
import { isShadowRequest } from '../protocol/shadow-mark.js';
import type { Backend } from './backend.js';
import { batchKey, modelIsBatchable, planRun, splitOutputs, stackInputs, type BatchingOptions, type Plan } from './batcher.js';
import { deliverInCompletionOrder } from './completion-order.js';
import type { OnnxWorkerData, WorkerRequest, WorkerResponse } from './onnx-messages.js';

export interface OnnxBackendOptions {
  path: string;
  workers: number;
  intraOpThreads: number;
  maxQueue: number;
  /** Human name used in errors, e.g. `model iris version 2`. */
  label: string;
  log: Logger;
  /** Dynamic batching; absent: every call runs alone. */
  batching?: BatchingOptions;
  /** Monotonic clock in µs for batching delays (tests inject one). */
  nowUs?: () => number;
  /**
   * Called once per run sent to a worker with its rows (sum of dim 0 over its calls) and calls: a batch, a call run
   * alone, and each member re-run alone after a failed batch (the batch-size metric).
   */
  onRun?: (rows: number, calls: number) => void;
}

interface Job {
  request: InferenceRequest;
  signal: AbortSignal;
  resolve(result: InferenceResult): void;
  reject(err: unknown): void;
  settled: boolean;
  /** Batch compatibility (see batchKey); undefined: runs alone (batching off, or retried alone after a failed batch). */
  key: string | undefined;
  rows: number;
  queuedAtUs: number;
}

interface Slot {
  worker: Worker;
  /** The calls of the run in progress: one, or the members of a batch in stacking order. */
  run: Job[] | undefined;
}

/** Counters of the batching queue, for tests and benchmarks. */
export interface BatchStats {
  /** Runs sent to workers (a batch counts once). */
  runs: number;
  /** Runs that held more than one call, and the calls they held. */
  batchedRuns: number;
  batchedCalls: number;
  /** Calls re-run alone because the batch they were in failed or could not be split. */
  retriedAlone: number;
}

const defaultNowUs = (): number => performance.now() * 1000;

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
  /** Batching as configured, once the model's metadata shows it can be batched. */
  #batching: BatchingOptions | undefined;
  readonly #nowUs: () => number;
  #batchTimer: { cancel(): void } | undefined;
  readonly #stats: BatchStats = { runs: 0, batchedRuns: 0, batchedCalls: 0, retriedAlone: 0 };

  constructor(opts: OnnxBackendOptions) {
    this.#opts = opts;
    this.#nowUs = opts.nowUs ?? defaultNowUs;
  }

  /** A snapshot of the batching counters. */
  batchStats(): BatchStats {
    return { ...this.#stats };
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
        key: this.#batching ? batchKey(request) : undefined,
        rows: request.inputs[0]?.shape[0] ?? 1,
        queuedAtUs: this.#batching ? this.#nowUs() : 0,
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.#enqueue(job);
      this.#pump();
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#clearBatchTimer();
    for (const job of this.#queue.splice(0)) job.reject(new GatewayError('GW_ERR_SHUTTING_DOWN'));
    const slots = [...this.#slots];
    this.#slots.clear();
    for (const slot of slots) for (const job of slot.run ?? []) job.reject(new GatewayError('GW_ERR_SHUTTING_DOWN'));
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

  /**
   * FIFO, except that a real call goes ahead of every queued mirrored copy: copies are fire-and-forget and unbounded
   * by the callers' own concurrency, so without this they pile up (to the shadow cap) in front of the version's real
   * callers — slowing a rollout candidate's real traffic by the mirror's load, not by anything of its own.
   */
  #enqueue(job: Job): void {
    if (!isShadowRequest(job.request)) {
      const firstCopy = this.#queue.findIndex((queued) => isShadowRequest(queued.request));
      if (firstCopy >= 0) {
        this.#queue.splice(firstCopy, 0, job);
        return;
      }
    }
    this.#queue.push(job);
  }

  #freeSlot(): Slot | undefined {
    for (const slot of this.#slots) if (!slot.run) return slot;
    return undefined;
  }

  #pump(): void {
    let slot: Slot | undefined;
    while (this.#queue.length > 0 && (slot = this.#freeSlot())) {
      const plan = this.#nextRun();
      if (plan === undefined) return;
      if ('waitUntilUs' in plan) {
        this.#armBatchTimer(plan.waitUntilUs);
        return;
      }
      const run = plan.run.filter((job) => !job.settled);
      if (run.length > 0) this.#dispatch(slot, run);
    }
  }

  #nextRun(): Plan<Job> | undefined {
    while (this.#queue[0]?.settled) this.#queue.shift();
    if (this.#batching === undefined) {
      const job = this.#queue.shift();
      return job && { run: [job] };
    }
    return planRun(this.#queue, this.#nowUs(), this.#batching);
  }

  #dispatch(slot: Slot, run: Job[]): void {
    slot.run = run;
    this.#stats.runs++;
    if (run.length > 1) {
      this.#stats.batchedRuns++;
      this.#stats.batchedCalls += run.length;
    }
    if (this.#opts.onRun) {
      let rows = 0;
      for (const job of run) rows += job.rows;
      this.#opts.onRun(rows, run.length);
    }
    const inputs = run.length === 1 ? run[0]!.request.inputs : stackInputs(run.map((job) => job.request));
    const msg: WorkerRequest = { type: 'infer', id: this.#nextId++, inputs: inputs.map(compactForCopy), outputs: run[0]!.request.outputs };
    slot.worker.postMessage(msg);
  }

  /** Hands a finished run's answer to its calls: split by rows for a batch, or each member re-run alone if it failed. */
  #finish(run: Job[], msg: Extract<WorkerResponse, { type: 'result' | 'error' }>): void {
    if (run.length === 1) {
      const job = run[0]!;
      if (msg.type === 'result') job.resolve({ outputs: msg.outputs });
      else job.reject(new GatewayError('GW_ERR_BACKEND_FAILED', `${this.#opts.label}: inference failed: ${msg.message}`));
      return;
    }
    const split =
      msg.type === 'result'
        ? splitOutputs(
            msg.outputs,
            run.map((job) => job.rows),
          )
        : undefined;
    if (split !== undefined) {
      // One call per event-loop turn: each answer's continuation (its reply's encoding and write) runs in its own
      // turn, so a batch of 32 never holds the loop for all 32 replies at once; timers and new requests interleave.
      let i = 0;
      const next = (): void => {
        run[i]!.resolve({ outputs: split[i]! });
        if (++i < run.length) setImmediate(next);
      };
      next();
      return;
    }
    // One member's data can fail the whole run (an index out of range, say): re-run each member alone, first in line,
    // so the failure reaches only the calls it belongs to. It costs one extra run per member, on failures only.
    const retry = run.filter((job) => !job.settled);
    for (const job of retry) job.key = undefined;
    this.#stats.retriedAlone += retry.length;
    this.#queue.unshift(...retry);
  }

  /**
   * Asks #pump again when the head call's batching delay is over. Timers have 1 ms granularity, so the last sub-ms is
   * waited with setImmediate (one event-loop turn each), which keeps the bound at the configured µs.
   */
  #armBatchTimer(atUs: number): void {
    this.#clearBatchTimer();
    const waitMs = Math.floor((atUs - this.#nowUs()) / 1000);
    const fire = () => {
      this.#batchTimer = undefined;
      this.#pump();
    };
    if (waitMs >= 1) {
      const timer = setTimeout(fire, waitMs).unref();
      this.#batchTimer = { cancel: () => clearTimeout(timer) };
    } else {
      const immediate = setImmediate(fire).unref();
      this.#batchTimer = { cancel: () => clearImmediate(immediate) };
    }
  }

  #clearBatchTimer(): void {
    this.#batchTimer?.cancel();
    this.#batchTimer = undefined;
  }

  /** Starts one worker and resolves once its session is loaded and warmed up. */
  #spawn(): Promise<void> {
    const data: OnnxWorkerData = { path: this.#opts.path, intraOpThreads: this.#opts.intraOpThreads };
    const worker = new Worker(WORKER_URL, { workerData: data });
    return new Promise<void>((resolve, reject) => {
      const slot: Slot = { worker, run: undefined };
      let loaded = false;
      worker.on('message', (msg: WorkerResponse) => {
        switch (msg.type) {
          case 'ready':
            loaded = true;
            if (this.#metadata === undefined) {
              this.#metadata = msg.metadata;
              if (this.#opts.batching !== undefined) {
                if (modelIsBatchable(msg.metadata)) this.#batching = this.#opts.batching;
                else this.#opts.log.warn('batching is configured but the model has an input or output without a variable first dimension; calls run alone');
              }
            }
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
            const run = slot.run;
            slot.run = undefined;
            // The worker takes its next run at once; its callers get this answer in completion order (fairness
            // between versions, see completion-order.ts).
            if (run) deliverInCompletionOrder(msg.completedAtUs, () => this.#finish(run, msg));
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
        for (const job of slot.run ?? []) job.reject(new GatewayError('GW_ERR_BACKEND_FAILED', `${this.#opts.label}: worker thread exited (code ${code})`));
        slot.run = undefined;
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

/**
 * postMessage copies a typed array's whole ArrayBuffer, not just its view. A view into a much larger buffer (a binary
 * request body, Node's 8 KB buffer pool) is cut to its own bytes first, so the copy to the worker stays the tensor's size.
 */
function compactForCopy(t: Tensor): Tensor {
  const data = t.data;
  if (Array.isArray(data) || data.buffer.byteLength <= 2 * data.byteLength + 1024) return t;
  return { ...t, data: data.slice() };
}
