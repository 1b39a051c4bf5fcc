// Backends shared across config generations: an unchanged version keeps its loaded backend, a removed one closes once idle.

import { stat } from 'node:fs/promises';
import type { Logger } from 'pino';
import { intercept, type Backend } from '../backends/backend.js';
import { InFlightCalls } from '../backends/in-flight.js';
import type { BackendConfig, GatewayConfig } from '../config/schema.js';
import { ModelCatalog, type BackendFactory } from '../models/catalog.js';

/** One version's backend in the pool, with the count of its calls in flight (every call, whichever generation made it). */
export interface PooledBackend {
  readonly label: string;
  readonly backend: Backend;
  readonly inFlight: InFlightCalls;
}

/** What a new config needs from the pool: its catalog and which backends it adds, keeps and drops. */
export interface PreparedBackends {
  catalog: ModelCatalog;
  /** `model/version` labels. */
  added: string[];
  reused: string[];
  retired: string[];
  /** Makes the new set current; returns the backends to close once the old generations have drained. */
  commit(): PooledBackend[];
  /** Closes the backends this preparation started (the config was not applied). */
  abandon(): Promise<void>;
}

interface Entry {
  fingerprint: string;
  pooled: PooledBackend;
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
  backends(): PooledBackend[] {
    return [...this.#entries.values()].map((e) => e.pooled);
  }

  /**
   * Builds the catalog for `config`, reusing every backend whose fingerprint is unchanged and starting the new ones
   * (in parallel, while the old ones keep serving). Rejects, with the new ones closed again, if any fails to start.
   */
  async prepare(config: GatewayConfig): Promise<PreparedBackends> {
    const next = new Map<string, Entry>();
    const fresh: PooledBackend[] = [];
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
        // Counted outermost: whatever the factory composed, every call through the served backend is seen.
        const inFlight = new InFlightCalls();
        const pooled = { label, backend: intercept(this.#factory(model, version, versionConfig.backend), inFlight.interceptor), inFlight };
        next.set(label, { fingerprint: print, pooled });
        fresh.push(pooled);
        added.push(label);
      }
    }
    const catalog = ModelCatalog.fromConfig(config, (model, version) => next.get(`${model}/${version}`)!.pooled.backend);
    const results = await Promise.allSettled(fresh.map((p) => p.backend.start()));
    const failures = results.flatMap((r, i) =>
      r.status === 'rejected' ? [`models.${fresh[i]!.label.replace('/', '.versions.')}: ${(r.reason as Error).message}`] : [],
    );
    if (failures.length > 0) {
      await Promise.allSettled(fresh.map((p) => p.backend.close()));
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
        return retiredEntries.map(([, e]) => e.pooled);
      },
      abandon: async () => {
        await Promise.allSettled(fresh.map((p) => p.backend.close()));
      },
    };
  }

  /**
   * Closes retired backends once `drained` resolves (the generations that could still call them have finished) and
   * their own calls have ended, or after `timeoutMs`, whichever is first.
   */
  async retire(backends: readonly PooledBackend[], drained: Promise<void>, timeoutMs: number): Promise<void> {
    if (backends.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
      timer.unref();
    });
    const idle = drained.then(() => Promise.all(backends.map((b) => b.inFlight.whenIdle()))).then(() => 'idle' as const);
    const outcome = await Promise.race([idle, deadline]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      this.#log.warn(
        { backends: backends.map((b) => b.label), inFlight: backends.reduce((n, b) => n + b.inFlight.count, 0), timeoutMs },
        'closing retired backends with calls still in flight',
      );
    }
    await Promise.allSettled(backends.map((b) => b.backend.close()));
    this.#log.info({ backends: backends.map((b) => b.label) }, 'retired backends closed');
  }

  /** Closes every backend in the pool. */
  async close(): Promise<void> {
    const all = this.backends();
    this.#entries = new Map();
    await Promise.allSettled(all.map((b) => b.backend.close()));
  }
}
