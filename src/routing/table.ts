// The routing state of one config generation: per model its weights (config or runtime override), stickiness and header rules.

import type { GatewayConfig, ModelConfig } from '../config/schema.js';
import { compareVersions, type ModelCatalog } from '../models/catalog.js';
import type { KeyHash, StickySource } from './sticky.js';
import { completeWeights, sameWeights, WeightedChoice, type Rng, type VersionWeight } from './weighted.js';

/** Randomness and hashing for weighted and sticky choices, injected by tests. */
export interface RouteOptions {
  rng?: Rng;
  keyHash?: KeyHash;
}

/** Weights set through the admin API. They live in memory only: a restart returns to the config's weights. */
export interface WeightOverride {
  /** Every version's weight (unlisted in the request → 0). */
  readonly weights: readonly VersionWeight[];
  /** The config's weights when the override was set; a reload that changes them drops the override. */
  readonly configWeights: readonly VersionWeight[] | undefined;
  readonly setAt: Date;
}

/** Weights set by a progressive rollout (src/rollout): they win over overrides and the config while the rollout runs. */
export interface RolloutRouting {
  readonly weights: Readonly<Record<string, number>>;
  /** Set in the rollout's weight steps: a failed call of `candidate` chosen by weight is answered by `stable`. */
  readonly failover: { readonly candidate: string; readonly stable: string } | undefined;
}

export interface ModelRouting {
  readonly model: string;
  /** Versions in the catalog's order. */
  readonly versions: readonly string[];
  /** Every version's weight from the config, or undefined when the model has no `weights`. */
  readonly configWeights: readonly VersionWeight[] | undefined;
  readonly override: WeightOverride | undefined;
  readonly rollout: RolloutRouting | undefined;
  /** The effective split of unversioned inference; undefined = all of it goes to defaultVersion. */
  readonly choice: WeightedChoice | undefined;
  /** Answers unversioned metadata/ready requests (and unversioned inference when there is no split). */
  readonly defaultVersion: string;
  readonly sticky: StickySource | undefined;
  readonly versionHeader: { readonly enabled: boolean; readonly requiredScope: string | undefined };
}

function routingFor(
  model: ModelConfig,
  name: string,
  versions: readonly string[],
  catalogDefault: string,
  override: WeightOverride | undefined,
  rollout: RolloutRouting | undefined,
): ModelRouting {
  const configWeights = model.weights === undefined ? undefined : completeWeights(model.weights, versions);
  const effective = (rollout && completeWeights(rollout.weights, versions)) ?? override?.weights ?? configWeights;
  const choice = effective === undefined ? undefined : new WeightedChoice(effective);
  const sticky: StickySource | undefined =
    model.sticky?.header !== undefined ? { header: model.sticky.header } : model.sticky?.claim !== undefined ? { claim: model.sticky.claim } : undefined;
  return {
    model: name,
    versions,
    configWeights,
    override,
    rollout,
    choice,
    defaultVersion: model.defaultVersion ?? choice?.heaviest() ?? catalogDefault,
    sticky,
    versionHeader: { enabled: model.override.enabled, requiredScope: model.override.requiredScope },
  };
}

export class RoutingTable {
  readonly #config: GatewayConfig;
  readonly #catalog: ModelCatalog;
  // Entries are replaced whole, never mutated: a request holding one sees one consistent split.
  readonly #models = new Map<string, ModelRouting>();

  constructor(
    config: GatewayConfig,
    catalog: ModelCatalog,
    overrides: ReadonlyMap<string, WeightOverride> = new Map(),
    rollouts: ReadonlyMap<string, RolloutRouting> = new Map(),
  ) {
    this.#config = config;
    this.#catalog = catalog;
    for (const name of Object.keys(config.models)) this.#rebuild(name, overrides.get(name), rollouts.get(name));
  }

  get(model: string): ModelRouting | undefined {
    return this.#models.get(model);
  }

  all(): ModelRouting[] {
    return [...this.#models.values()];
  }

  /** Applies (or with undefined, clears) a runtime override for one model; requests already routed are unaffected. */
  setOverride(model: string, override: WeightOverride | undefined): ModelRouting {
    const current = this.#models.get(model);
    if (!current) throw new Error(`unknown model '${model}'`);
    return this.#rebuild(model, override, current.rollout);
  }

  /** Applies (or with undefined, ends) a rollout's weights for one model. */
  setRollout(model: string, rollout: RolloutRouting | undefined): ModelRouting {
    const current = this.#models.get(model);
    if (!current) throw new Error(`unknown model '${model}'`);
    return this.#rebuild(model, current.override, rollout);
  }

  #rebuild(name: string, override: WeightOverride | undefined, rollout: RolloutRouting | undefined): ModelRouting {
    const served = this.#catalog.get(name);
    const model = this.#config.models[name];
    if (!served || !model) throw new Error(`model '${name}' is in the config but not in the catalog`);
    const routing = routingFor(model, name, [...served.versions.keys()], served.defaultVersion, override, rollout);
    this.#models.set(name, routing);
    return routing;
  }
}

/** Why a runtime override did not survive a reload. */
export interface DroppedOverride {
  model: string;
  reason: string;
}

/**
 * Decides which runtime overrides survive a reload into `next`. An override stays unless the reloaded config changed
 * that model's weights (the newer, deliberate intent wins), removed the model, or removed a version it sends traffic to.
 * An unrelated config change (a GitOps sync, a new model) therefore never undoes a traffic shift made at runtime.
 */
export function reconcileOverrides(
  overrides: ReadonlyMap<string, WeightOverride>,
  next: GatewayConfig,
): { kept: Map<string, WeightOverride>; dropped: DroppedOverride[] } {
  const kept = new Map<string, WeightOverride>();
  const dropped: DroppedOverride[] = [];
  for (const [model, override] of overrides) {
    const config = next.models[model];
    if (!config) {
      dropped.push({ model, reason: 'the model was removed from the config' });
      continue;
    }
    if (config.rollout) {
      dropped.push({ model, reason: 'the model is now under a progressive rollout, which owns its weights' });
      continue;
    }
    const versions = Object.keys(config.versions).sort(compareVersions);
    const gone = override.weights.filter((w) => w.weight > 0 && !versions.includes(w.version)).map((w) => w.version);
    if (gone.length > 0) {
      dropped.push({ model, reason: `version ${gone.join(', ')} was removed from the config` });
      continue;
    }
    const newConfigWeights = config.weights === undefined ? undefined : completeWeights(config.weights, versions);
    const before = override.configWeights;
    const unchanged = before === undefined || newConfigWeights === undefined ? before === newConfigWeights : sameWeights(before, newConfigWeights);
    if (!unchanged) {
      dropped.push({ model, reason: "the reloaded config changed the model's weights" });
      continue;
    }
    // Keep the split, restricted to the versions that still exist (new versions join at weight 0).
    kept.set(model, {
      ...override,
      weights: completeWeights(Object.fromEntries(override.weights.map((w) => [w.version, w.weight])), versions),
      configWeights: newConfigWeights,
    });
  }
  return { kept, dropped };
}
