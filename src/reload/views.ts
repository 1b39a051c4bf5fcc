// JSON views of the running traffic setup for the admin API: versions, weights and their source, shadows, readiness.

import type { ModelRouting } from '../routing/table.js';
import type { VersionWeight } from '../routing/weighted.js';
import type { ShadowRuntime } from '../shadow/runtime.js';
import type { PairSummary } from '../shadow/stats.js';
import { compareVersions } from '../models/catalog.js';
import type { LiveGeneration } from './generation.js';

/** What the admin API says about runtime overrides, so nobody mistakes one for config. */
export const OVERRIDE_NOTE =
  "runtime override set through the admin API: kept across reloads unless the reloaded config changes this model's weights; lost on restart (put the weights in the config to keep them)";

export interface VersionView {
  version: string;
  /** Effective weight for unversioned inference. */
  weight: number;
  /** Share of unversioned inference, 0–1. */
  share: number;
  ready: boolean;
  backend: string;
  /** Percent of this model's other traffic mirrored to this version, when it is a shadow target. */
  shadowPercent: number | null;
}

export interface ModelView {
  name: string;
  ready: boolean;
  defaultVersion: string;
  /**
   * `rollout`: set by the model's progressive rollout; `override`: set through the admin API; `config`: from the
   * config file; `default`: no weights, defaultVersion takes all.
   */
  weightsSource: 'rollout' | 'override' | 'config' | 'default';
  weights: Record<string, number>;
  configWeights: Record<string, number> | null;
  override: { weights: Record<string, number>; setAt: string; note: string } | null;
  sticky: { header: string } | { claim: string } | null;
  versionHeader: { enabled: boolean; requiredScope: string | null };
  versions: VersionView[];
  shadow: { targets: { version: string; percent: number }[]; timeoutMs: number; maxConcurrent: number; inFlight: number } | null;
}

function asRecord(weights: readonly VersionWeight[]): Record<string, number> {
  return Object.fromEntries(weights.map((w) => [w.version, w.weight]));
}

export function modelView(generation: LiveGeneration, routing: ModelRouting, shadow: ShadowRuntime): ModelView {
  const served = generation.catalog.get(routing.model)!;
  const config = generation.config.models[routing.model]!;
  const effective = routing.choice?.weights ?? routing.versions.map((version) => ({ version, weight: version === routing.defaultVersion ? 1 : 0 }));
  const versions = routing.versions.map((version): VersionView => {
    const backend = served.versions.get(version)!.backend;
    const weight = routing.choice ? (effective.find((w) => w.version === version)?.weight ?? 0) : version === routing.defaultVersion ? 1 : 0;
    return {
      version,
      weight,
      share: routing.choice ? Math.round(routing.choice.share(version) * 10_000) / 10_000 : weight,
      ready: backend.ready(),
      backend: backend.kind,
      shadowPercent: config.shadow?.targets.find((t) => t.version === version)?.percent ?? null,
    };
  });
  return {
    name: routing.model,
    ready: versions.every((v) => v.ready),
    defaultVersion: routing.defaultVersion,
    weightsSource: routing.rollout ? 'rollout' : routing.override ? 'override' : routing.configWeights ? 'config' : 'default',
    weights: asRecord(effective),
    configWeights: routing.configWeights ? asRecord(routing.configWeights) : null,
    override: routing.override ? { weights: asRecord(routing.override.weights), setAt: routing.override.setAt.toISOString(), note: OVERRIDE_NOTE } : null,
    sticky: routing.sticky ? (routing.sticky.header !== undefined ? { header: routing.sticky.header } : { claim: routing.sticky.claim }) : null,
    versionHeader: { enabled: routing.versionHeader.enabled, requiredScope: routing.versionHeader.requiredScope ?? null },
    versions,
    shadow: config.shadow
      ? {
          targets: config.shadow.targets.map((t) => ({ version: t.version, percent: t.percent })),
          timeoutMs: config.shadow.timeoutMs,
          maxConcurrent: config.shadow.maxConcurrent,
          inFlight: shadow.inFlight(routing.model),
        }
      : null,
  };
}

export interface ShadowView {
  model: string;
  /** The model's shadow setup now (null when it has none; statistics from earlier setups may remain). */
  config: ModelView['shadow'];
  pairs: PairSummary[];
  disagreementLog: ReturnType<NonNullable<ShadowRuntime['disagreementLog']>['stats']> | null;
}

export function shadowView(generation: LiveGeneration, model: string, shadow: ShadowRuntime): ShadowView {
  const routing = generation.routing.get(model)!;
  return {
    model,
    config: modelView(generation, routing, shadow).shadow,
    pairs: shadow.stats.forModel(model, compareVersions),
    disagreementLog: shadow.disagreementLog?.stats() ?? null,
  };
}
