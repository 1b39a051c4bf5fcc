// Each model's shadow plan, built once per config generation: which versions get copies, how often, and how answers compare.

import { shadowSchema, type GatewayConfig } from '../config/schema.js';
import type { ModelCatalog, ServedVersion } from '../models/catalog.js';
import { ShadowComparator } from './compare.js';

export interface ShadowTarget {
  readonly version: string;
  readonly percent: number;
  readonly served: ServedVersion;
}

export interface ShadowPlan {
  readonly targets: readonly ShadowTarget[];
  readonly timeoutMs: number;
  readonly maxConcurrent: number;
  readonly comparator: ShadowComparator;
}

/** A rollout model without a `shadow` section mirrors to its candidate with the section's defaults. */
const SHADOW_DEFAULTS = {
  timeoutMs: shadowSchema.shape.timeoutMs.parse(undefined),
  maxConcurrent: shadowSchema.shape.maxConcurrent.parse(undefined),
  compare: {},
};

/**
 * Models without `shadow` or `rollout` have no plan and pass straight through the shadow stage. A rollout's candidate
 * is not in `targets`: the rollout switches it on and off at runtime (ShadowRuntime.rolloutTarget).
 */
export function shadowPlans(config: GatewayConfig, catalog: ModelCatalog): Map<string, ShadowPlan> {
  const plans = new Map<string, ShadowPlan>();
  for (const [name, model] of Object.entries(config.models)) {
    const shadow = model.shadow ?? (model.rollout ? SHADOW_DEFAULTS : undefined);
    const served = catalog.get(name);
    if (!shadow || !served) continue;
    const targets = (model.shadow?.targets ?? [])
      .filter((t) => t.percent > 0)
      .map((t) => ({ version: t.version, percent: t.percent, served: served.versions.get(t.version)! }));
    if (targets.length === 0 && !model.rollout) continue;
    const compare = model.rollout ? { ...shadow.compare, ...model.rollout.shadow.compare } : shadow.compare;
    plans.set(name, { targets, timeoutMs: shadow.timeoutMs, maxConcurrent: shadow.maxConcurrent, comparator: new ShadowComparator(compare) });
  }
  return plans;
}
