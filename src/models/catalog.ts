// The served models: each model's versions with their backends, built from the config.

import type { Backend } from '../backends/backend.js';
import type { GatewayConfig } from '../config/schema.js';

export interface ServedVersion {
  readonly model: string;
  readonly version: string;
  readonly backend: Backend;
}

export interface ServedModel {
  readonly name: string;
  /** Versions in ascending order. */
  readonly versions: ReadonlyMap<string, ServedVersion>;
  readonly defaultVersion: string;
}

/** Orders versions numerically when both are numbers ("2" < "10"), else lexically. */
export function compareVersions(a: string, b: string): number {
  const na = Number(a);
  const nb = Number(b);
  if (Number.isFinite(na) && Number.isFinite(nb)) return na - nb;
  return a < b ? -1 : a > b ? 1 : 0;
}

export type BackendFactory = (model: string, version: string, config: GatewayConfig['models'][string]['versions'][string]['backend']) => Backend;

export class ModelCatalog {
  readonly #models: ReadonlyMap<string, ServedModel>;

  constructor(models: readonly ServedModel[]) {
    this.#models = new Map(models.map((m) => [m.name, m]));
  }

  static fromConfig(config: GatewayConfig, createBackend: BackendFactory): ModelCatalog {
    const models: ServedModel[] = [];
    for (const [name, model] of Object.entries(config.models)) {
      const ordered = Object.keys(model.versions).sort(compareVersions);
      const versions = new Map<string, ServedVersion>();
      for (const version of ordered) {
        versions.set(version, { model: name, version, backend: createBackend(name, version, model.versions[version]!.backend) });
      }
      models.push({ name, versions, defaultVersion: model.defaultVersion ?? ordered[ordered.length - 1]! });
    }
    return new ModelCatalog(models);
  }

  get(name: string): ServedModel | undefined {
    return this.#models.get(name);
  }

  all(): ServedModel[] {
    return [...this.#models.values()];
  }

  #backends(): Backend[] {
    return this.all().flatMap((m) => [...m.versions.values()].map((v) => v.backend));
  }

  /** Loads and warms every backend in parallel; rejects with every failure if any version cannot start. */
  async start(): Promise<void> {
    const versions = this.all().flatMap((m) => [...m.versions.values()]);
    const results = await Promise.allSettled(versions.map((v) => v.backend.start()));
    const failures = results.flatMap((r, i) =>
      r.status === 'rejected' ? [`models.${versions[i]!.model}.versions.${versions[i]!.version}: ${(r.reason as Error).message}`] : [],
    );
    if (failures.length > 0) throw new Error(`some model versions failed to start:\n  - ${failures.join('\n  - ')}`);
  }

  /** True when every version can serve. */
  ready(): boolean {
    return this.#backends().every((b) => b.ready());
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.#backends().map((b) => b.close()));
  }
}
