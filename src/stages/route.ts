// Route: picks the serving version — the path's, else an allowed x-model-version header, else sticky/weighted choice, else the default.

import { GatewayError } from '../errors/gateway-error.js';
import type { ModelCatalog, ServedModel } from '../models/catalog.js';
import type { Context, Stage } from '../pipeline/stage.js';
import { rendezvousPick, sha256KeyHash, stickyKey, type KeyHash } from '../routing/sticky.js';
import type { ModelRouting, RoutingTable } from '../routing/table.js';
import type { Rng } from '../routing/weighted.js';

/** Request header naming a version (honoured only where the model allows it) and response header naming the one used. */
export const VERSION_HEADER = 'x-model-version';

export interface RouteOptions {
  rng?: Rng;
  keyHash?: KeyHash;
}

/** The version the caller pinned with the header, if the model honours it and the caller may use it. */
function headerVersion(ctx: Context, routing: ModelRouting): string | undefined {
  if (!routing.versionHeader.enabled) return undefined;
  const raw = ctx.headers[VERSION_HEADER];
  const value = (Array.isArray(raw) ? raw[0] : raw)?.trim();
  if (!value) return undefined;
  const scope = routing.versionHeader.requiredScope;
  if (scope !== undefined && !ctx.identity?.scopes.has(scope)) {
    throw new GatewayError(
      'GW_ERR_OVERRIDE_FORBIDDEN',
      ctx.identity
        ? `choosing a version of model '${routing.model}' with ${VERSION_HEADER} needs the scope '${scope}'`
        : `choosing a version of model '${routing.model}' with ${VERSION_HEADER} needs an authenticated caller with the scope '${scope}'`,
    );
  }
  return value;
}

function chosenVersion(ctx: Context, routing: ModelRouting, rng: Rng, keyHash: KeyHash): string {
  // Metadata and readiness describe "the model": a stable answer, not a coin flip per probe.
  if (ctx.operation !== 'infer' || routing.choice === undefined) return routing.defaultVersion;
  if (routing.sticky) {
    const key = stickyKey(routing.sticky, ctx.headers, ctx.identity?.claims);
    if (key !== undefined) return rendezvousPick(routing.model, key, routing.choice.weights, keyHash)!;
  }
  return routing.choice.pick(rng);
}

export function routeStage(catalog: ModelCatalog, routing?: RoutingTable, options: RouteOptions = {}): Stage {
  const rng = options.rng ?? Math.random;
  const keyHash = options.keyHash ?? sha256KeyHash;
  const fail = (model: ServedModel, version: string) =>
    new GatewayError('GW_ERR_VERSION_NOT_FOUND', `model '${model.name}' has no version '${version.slice(0, 64)}' (versions: ${[...model.versions.keys()].join(', ')})`);
  return {
    name: 'route',
    handle(ctx, next) {
      const model = catalog.get(ctx.modelName);
      if (!model) throw new GatewayError('GW_ERR_MODEL_NOT_FOUND', `unknown model '${ctx.modelName.slice(0, 128)}'`);
      const rules = routing?.get(model.name);
      let version = ctx.pathVersion;
      let weighted = false;
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
