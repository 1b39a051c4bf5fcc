// Route: picks the serving version — the path's, else an allowed x-model-version header, else sticky/weighted choice, else the default.

import { versionChoiceDenial } from '../auth/version-choice.js';
import { GatewayError } from '../errors/gateway-error.js';
import type { ModelCatalog, ServedModel } from '../models/catalog.js';
import type { Context, Stage } from '../pipeline/stage.js';
import { VERSION_HEADER } from '../protocol/headers.js';
import { rendezvousPick, sha256KeyHash, stickyKey, type KeyHash } from '../routing/sticky.js';
import type { ModelRouting, RouteOptions, RoutingTable } from '../routing/table.js';
import type { Rng } from '../routing/weighted.js';

export interface RouteStageOptions extends RouteOptions {
  readonly catalog: ModelCatalog;
  /** This generation's routing rules; absent (the runtime container): only the path's version or the default. */
  readonly routing?: RoutingTable;
}

/** The version the caller pinned with the header, if the model honours it and the caller may choose one. */
function headerVersion(ctx: Context, routing: ModelRouting): string | undefined {
  if (!routing.versionHeader.enabled) return undefined;
  // A pin must be unambiguous: two x-model-version lines are refused rather than one of them silently chosen.
  if (ctx.headerLines(VERSION_HEADER) > 1) throw new GatewayError('GW_ERR_INVALID_REQUEST', `the ${VERSION_HEADER} header must be sent at most once`);
  const value = ctx.header(VERSION_HEADER)?.trim();
  if (!value) return undefined;
  const denied = versionChoiceDenial(ctx.identity, routing.model, routing.versionHeader.requiredScope, 'header');
  if (denied) throw denied;
  return value;
}

function chosenVersion(ctx: Context, routing: ModelRouting, rng: Rng, keyHash: KeyHash): string {
  // Metadata and readiness describe "the model": a stable answer, not a coin flip per probe.
  if (ctx.operation !== 'infer' || routing.choice === undefined) return routing.defaultVersion;
  if (routing.sticky) {
    const key = stickyKey(routing.sticky, (name) => ctx.header(name), ctx.identity?.claims);
    if (key !== undefined) return rendezvousPick(routing.model, key, routing.choice.weights, keyHash)!;
  }
  return routing.choice.pick(rng);
}

export function routeStage({ catalog, routing, rng = Math.random, keyHash = sha256KeyHash }: RouteStageOptions): Stage {
  const fail = (model: ServedModel, version: string) =>
    new GatewayError(
      'GW_ERR_VERSION_NOT_FOUND',
      `model '${model.name}' has no version '${version.slice(0, 64)}' (versions: ${[...model.versions.keys()].join(', ')})`,
    );
  return {
    name: 'route',
    handle(ctx, next) {
      const model = catalog.get(ctx.modelName);
      if (!model) throw new GatewayError('GW_ERR_MODEL_NOT_FOUND', `unknown model '${ctx.modelName.slice(0, 128)}'`);
      const rules = routing?.get(model.name);
      let version = ctx.pathVersion;
      let weighted = false;
      if (version !== undefined && rules) {
        // A version in the path is a choice too, under the same rule as the header (`override.requiredScope`).
        const denied = versionChoiceDenial(ctx.identity, model.name, rules.versionHeader.requiredScope, 'path');
        if (denied) throw denied;
      }
      if (version === undefined && rules) {
        version = headerVersion(ctx, rules);
        if (version === undefined) {
          version = chosenVersion(ctx, rules, rng, keyHash);
          weighted = true;
        }
      }
      version ??= model.defaultVersion;
      const target = model.versions.get(version);
      if (!target) throw fail(model, version);
      ctx.target = target;
      // A rollout's candidate picked by weight (never one the caller pinned) is backed by stable if it fails.
      const failover = rules?.rollout?.failover;
      if (weighted && failover && failover.candidate === version) ctx.failover = model.versions.get(failover.stable);
      ctx.responseHeaders[VERSION_HEADER] = target.version;
      return next();
    },
  };
}
