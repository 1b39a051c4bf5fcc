// Backends shared across config generations: an unchanged version keeps its loaded backend, a removed one closes once idle.

import { stat } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { Backend } from '../backends/backend.js';
import type { BackendConfig, GatewayConfig } from '../config/schema.js';
import { ModelCatalog, type BackendFactory } from '../models/catalog.js';
import type { BackendMetadata, InferenceRequest, InferenceResult } from '../protocol/oip.js';

/** A backend that counts its calls in flight, so it can be closed only once they have ended. */
export class TrackedBackend implements Backend {
  readonly label: string;
  readonly #inner: Backend;
  #inFlight = 0;
  #idle: (() => void)[] = [];

  constructor(inner: Backend, label: string) {
    this.#inner = inner;
    this.label = label;
  }

  get kind(): string {
    return this.#inner.kind;
  }

  /** The wrapped implementation (tests use it to tell reused backends from new ones). */
  get inner(): Backend {
    return this.#inner;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  start(): Promise<void> {
    return this.#inner.start();
  }

  metadata(): BackendMetadata {
    return this.#inner.metadata();
  }

  ready(): boolean {
    return this.#inner.ready();
  }

  infer(request: InferenceRequest, signal: AbortSignal): Promise<InferenceResult> {
    this.#inFlight++;
    let call: Promise<InferenceResult>;
    try {
      call = this.#inner.infer(request, signal);
    } catch (err) {
      call = Promise.reject(err);
    }
    return call.finally(() => {
      if (--this.#inFlight === 0) for (const resolve of this.#idle.splice(0)) resolve();
    });
  }

  /** Resolves when no call is in flight. */
  whenIdle(): Promise<void> {
    return this.#inFlight === 0 ? Promise.resolve() : new Promise((resolve) => this.#idle.push(resolve));
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}

/** What a new config needs from the pool: its catalog and which backends it adds, keeps and drops. */
export interface PreparedBackends {
  catalog: ModelCatalog;
  /** `model/version` labels. */
  added: string[];
  reused: string[];
  retired: string[];
  /** Makes the new set current; returns the backends to close once the old generations have drained. */
  commit(): TrackedBackend[];
  /** Closes the backends this preparation started (the config was not applied). */
  abandon(): Promise<void>;
}

interface Entry {
  fingerprint: string;
  backend: TrackedBackend;
}

/**
 * Identifies a version's backend: its model, version and backend config, plus the model file's size and mtime so a
 * model replaced at the same path is reloaded too.
 */
async function fingerprint(model: string, version: string, config: BackendConfig): Promise<string> {
  let file = '';
  if (config.kind === 'onnx') {
    const s = await stat(config.path).catch(() => undefined);
    file = s ? `${s.size}:${s.mtimeMs}` : 'missing';
  }
  return JSON.stringify([model, version, config, file]);
}

export class BackendPool {
  readonly #factory: BackendFactory;
  readonly #log: Logger;
  #entries = new Map<string, Entry>();

  constructor(factory: BackendFactory, log: Logger) {
    this.#factory = factory;
    this.#log = log;
  }

  /** Every backend currently in the pool. */
  backends(): TrackedBackend[] {
    return [...this.#entries.values()].map((e) => e.backend);
  }

  /**
   * Builds the catalog for `config`, reusing every backend whose fingerprint is unchanged and starting the new ones
   * (in parallel, while the old ones keep serving). Rejects, with the new ones closed again, if any fails to start.
   */
  async prepare(config: GatewayConfig): Promise<PreparedBackends> {
    const next = new Map<string, Entry>();
    const fresh: TrackedBackend[] = [];
    const added: string[] = [];
    const reused: string[] = [];
    for (const [model, modelConfig] of Object.entries(config.models)) {
      for (const [version, versionConfig] of Object.entries(modelConfig.versions)) {
        const label = `${model}/${version}`;
        const print = await fingerprint(model, version, versionConfig.backend);
        const current = this.#entries.get(label);
        if (current && current.fingerprint === print) {
          next.set(label, current);
          reused.push(label);
          continue;
        }
        const backend = new TrackedBackend(this.#factory(model, version, versionConfig.backend), label);
        next.set(label, { fingerprint: print, backend });
        fresh.push(backend);
        added.push(label);
      }
    }
    const catalog = ModelCatalog.fromConfig(config, (model, version) => next.get(`${model}/${version}`)!.backend);
    const results = await Promise.allSettled(fresh.map((b) => b.start()));
    const failures = results.flatMap((r, i) => (r.status === 'rejected' ? [`models.${fresh[i]!.label.replace('/', '.versions.')}: ${(r.reason as Error).message}`] : []));
    if (failures.length > 0) {
      await Promise.allSettled(fresh.map((b) => b.close()));
      throw new Error(`some model versions failed to start:\n  - ${failures.join('\n  - ')}`);
    }
    const retiredEntries = [...this.#entries].filter(([label, e]) => next.get(label) !== e);
    return {
      catalog,
      added,
      reused,
      retired: retiredEntries.map(([label]) => label),
      commit: () => {
        this.#entries = next;
        return retiredEntries.map(([, e]) => e.backend);
      },
      abandon: async () => {
        await Promise.allSettled(fresh.map((b) => b.close()));
      },
    };
  }

  /**
   * Closes retired backends once `drained` resolves (the generations that could still call them have finished) and
   * their own calls have ended, or after `timeoutMs`, whichever is first.
   */
  async retire(backends: readonly TrackedBackend[], drained: Promise<void>, timeoutMs: number): Promise<void> {
    if (backends.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
      timer.unref();
    });
    const idle = drained.then(() => Promise.all(backends.map((b) => b.whenIdle()))).then(() => 'idle' as const);
    const outcome = await Promise.race([idle, deadline]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      this.#log.warn({ backends: backends.map((b) => b.label), inFlight: backends.reduce((n, b) => n + b.inFlight, 0), timeoutMs }, 'closing retired backends with calls still in flight');
    }
    await Promise.allSettled(backends.map((b) => b.close()));
    this.#log.info({ backends: backends.map((b) => b.label) }, 'retired backends closed');
  }

  /** Closes every backend in the pool. */
  async close(): Promise<void> {
    const all = this.backends();
    this.#entries = new Map();
    await Promise.allSettled(all.map((b) => b.close()));
  }
}
