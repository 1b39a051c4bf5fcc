// THE request chains, in order, in one file: the gateway's, the runtime container's and ext_authz's. Each stage
// factory takes only its own options; this file is the one place that reads the config to build them.

import type { RemoteKeySources } from '../auth/jwks.js';
import { RetryBudget } from '../backends/retry-budget.js';
import type { AccessPolicy } from '../auth/authorize.js';
import { DEFAULT_IDENTITY_HEADERS } from '../auth/identity-headers.js';
import { AuthStats } from '../auth/stats.js';
import { TokenVerifier } from '../auth/verify.js';
import type { GatewayConfig } from '../config/schema.js';
import type { ModelCatalog, ServedVersion } from '../models/catalog.js';
import { compose } from '../pipeline/compose.js';
import type { Pipeline, Stage } from '../pipeline/stage.js';
import { MemoryStore } from '../ratelimit/memory-store.js';
import { compileRules } from '../ratelimit/rules.js';
import type { RateLimitStore } from '../ratelimit/store.js';
import { GuardRegistry } from '../resilience/registry.js';
import type { RolloutSignals } from '../rollout/signals.js';
import { RoutingTable, type RouteOptions } from '../routing/table.js';
import { shadowPlans } from '../shadow/plan.js';
import { ShadowRuntime } from '../shadow/runtime.js';
import type { Logger } from '../telemetry/log.js';
import { tracingEnabled } from '../telemetry/tracing.js';
import { authStage, type AuthStageOptions } from './auth.js';
import { deadlineStage } from './deadline.js';
import { rateLimitStage } from './rate-limit.js';
import { requestIdStage } from './request-id.js';
import { routeStage } from './route.js';
import { shadowStage } from './shadow.js';
import { upstreamStage } from './upstream.js';
import { validateStage } from './validate.js';
import { versionChoiceStage, type ModelChoiceRules } from './version-choice.js';

/** Process-wide state every generation's chain shares, so reloads keep buckets, key sets, breakers and samples. */
export interface ChainState {
  /** Rate-limit buckets; absent: a private memory store. */
  rateLimitStore?: RateLimitStore;
  /** Auth counters; absent: private ones. */
  authStats?: AuthStats;
  /** Remote JWKS sources, so key sets survive reloads. */
  remoteKeySources?: RemoteKeySources;
  /** Epoch-ms clock for token expiry, JWKS cooldowns and token buckets (tests). */
  now?: () => number;
  /** Every version's breaker and concurrency cap; absent: a private registry (state lost on reload). */
  guards?: GuardRegistry;
  /** Samples of running progressive rollouts. */
  rolloutSignals?: RolloutSignals;
}

export interface ChainDeps extends ChainState {
  config: GatewayConfig;
  catalog: ModelCatalog;
  log: Logger;
  /** This generation's routing (weights incl. runtime overrides); absent: the config's, without overrides. */
  routing?: RoutingTable;
  /** Shadow state shared by all generations (stats, caps, log); absent: a private one nobody reads. */
  shadow?: ShadowRuntime;
  /** Injected randomness and hashing for routing (tests). */
  route?: RouteOptions;
}

/** The gateway's chain for one config generation; everything a stage precomputes happens here, not per request. */
export function gatewayChain(deps: ChainDeps): Pipeline {
  const { config, catalog, log } = deps;
  const now = deps.now ?? Date.now;
  const limits = { rules: compileRules(config.rateLimits), store: deps.rateLimitStore ?? new MemoryStore(100_000, now), log, now };
  const guards = (deps.guards ?? new GuardRegistry({ log })).bind(config, catalog);
  return compose(
    [
      requestIdStage(), // x-request-id on every reply
      authStage(authStageOptions(config, deps)), // bearer → ctx.identity, per-model scopes (400/401/403); identity → ctx.upstreamHeaders
      rateLimitStage('admission', limits), // model rules, charged before routing and before the body is read (429/503)
      routeStage({ catalog, routing: deps.routing ?? new RoutingTable(config, catalog), ...deps.route }), // path/header/sticky/weights → ctx.target (403/404)
      validateStage({ needsTensors: modelsNeedingTensors(config) }), // body → ctx.inference, checked against the model's metadata (400/413); skipped for pass-through remotes
      rateLimitStage('routed', limits), // rules on the serving version or on batch rows, now both are known (413/429/503)
      shadowStage({ plans: shadowPlans(config, catalog), catalog, runtime: deps.shadow ?? new ShadowRuntime({ log }) }), // fire-and-forget copies, compared off the request path
      deadlineStage({ timeouts: timeoutsOf(config) }), // model's timeoutMs from the end of the body; aborts the backend call (504)
      upstreamStage({
        catalog,
        guards,
        fallbacks: fallbacksOf(config, catalog),
        fallbackBudgets: fallbackBudgetsOf(config),
        ...(deps.rolloutSignals ? { signals: deps.rolloutSignals } : {}),
      }), // guard (breaker → cap, 503) → backend call → OIP reply; fallback (open breaker, unreachable backend) and rollout failover
    ],
    { traced: tracingEnabled() },
  );
}

/**
 * The runtime container's chain (`model-gateway serve-model`): it sits behind a gateway inside the pod, so no auth,
 * rate limits, routing rules or shadows; deadlines and load shedding still protect it.
 */
export function runtimeChain({ config, catalog, log, guards }: Pick<ChainDeps, 'config' | 'catalog' | 'log' | 'guards'>): Pipeline {
  return compose(
    [
      requestIdStage(),
      routeStage({ catalog }),
      validateStage(),
      deadlineStage({ timeouts: timeoutsOf(config) }),
      upstreamStage({ catalog, guards: (guards ?? new GuardRegistry({ log })).bind(config, catalog), fallbacks: fallbacksOf(config, catalog) }),
    ],
    { traced: tracingEnabled() },
  );
}

/** An ext_authz check: nothing to run behind the checks, so an allowed request ends here with 200. */
const ALLOW: Stage = { name: 'ext-authz:allow', handle: () => Promise.resolve({ status: 200, body: null }) };

/**
 * Envoy's ext_authz checks: the gateway's own auth stage and, with `extAuthz.rateLimits`, its admission rate limits —
 * the same factories as the gateway's chain, so a check never disagrees with the data plane — then the model (which
 * must exist) and the version the caller names, authorised as the route stage does. Routed rules need the serving
 * version or the body, which a check does not have.
 */
export function extAuthzChain(
  deps: Pick<ChainDeps, 'config' | 'log' | 'rateLimitStore' | 'authStats' | 'remoteKeySources' | 'now'> & { rateLimitStore: RateLimitStore },
): Pipeline {
  const { config, log } = deps;
  const now = deps.now ?? Date.now;
  const stages: Stage[] = [authStage(authStageOptions(config, deps))];
  if (config.extAuthz.rateLimits) stages.push(rateLimitStage('admission', { rules: compileRules(config.rateLimits), store: deps.rateLimitStore, log, now }));
  stages.push(versionChoiceStage({ models: choiceRulesOf(config) }), ALLOW);
  return compose(stages);
}

/** The auth stage's options: a verifier for the issuers, and each model's policy with `auth.enforce` applied. */
export function authStageOptions(
  config: GatewayConfig,
  deps: Pick<ChainDeps, 'log' | 'now' | 'authStats' | 'remoteKeySources'> & { fetch?: typeof fetch },
): AuthStageOptions {
  const { log } = deps;
  const now = deps.now ?? Date.now;
  const auth = config.auth;
  if (auth === undefined) return { identityHeaders: DEFAULT_IDENTITY_HEADERS, log, now };
  const stats = deps.authStats ?? new AuthStats();
  const verifier = new TokenVerifier(auth, {
    now,
    log,
    stats,
    ...(deps.fetch ? { fetch: deps.fetch } : {}),
    ...(deps.remoteKeySources ? { remoteSources: deps.remoteKeySources } : {}),
  });
  void verifier.warm();
  const policies = new Map<string, AccessPolicy>();
  for (const [name, model] of Object.entries(config.models)) {
    if (model.auth) policies.set(name, { ...model.auth, enforce: model.auth.enforce ?? auth.enforce });
  }
  const open = { scopes: [], claims: {} };
  const defaultPolicy: AccessPolicy = { allowAnonymous: false, enforce: auth.enforce, infer: open, metadata: open };
  return {
    identityHeaders: auth.identityHeaders,
    authentication: { verifier, realm: auth.realm, forwardToken: auth.forwardToken, policies, defaultPolicy, stats },
    log,
    now,
  };
}

/** Model → what an ext_authz check needs to decide a version choice. */
function choiceRulesOf(config: GatewayConfig): Map<string, ModelChoiceRules> {
  return new Map(
    Object.entries(config.models).map(([name, model]) => [
      name,
      { versions: new Set(Object.keys(model.versions)), headerEnabled: model.override.enabled, requiredScope: model.override.requiredScope },
    ]),
  );
}

/** Model → `timeoutMs`. */
function timeoutsOf(config: GatewayConfig): Map<string, number> {
  return new Map(Object.entries(config.models).map(([name, model]) => [name, model.timeoutMs]));
}

/** Model → the budget its fallback re-serves unreachable calls within, for models that name a fallback. */
function fallbackBudgetsOf(config: GatewayConfig): Map<string, RetryBudget> {
  const budgets = new Map<string, RetryBudget>();
  for (const [name, model] of Object.entries(config.models)) {
    if (model.fallback === undefined) continue;
    const { percent, minPerSecond, windowMs } = model.fallbackBudget;
    budgets.set(name, new RetryBudget({ percent, minPerSecond, windowMs }));
  }
  return budgets;
}

/** Model → its `fallback` version, for models that name one. */
function fallbacksOf(config: GatewayConfig, catalog: ModelCatalog): Map<string, ServedVersion> {
  const fallbacks = new Map<string, ServedVersion>();
  for (const [name, model] of Object.entries(config.models)) {
    const fallback = model.fallback === undefined ? undefined : catalog.get(name)?.versions.get(model.fallback);
    if (fallback) fallbacks.set(name, fallback);
  }
  return fallbacks;
}

/**
 * Models whose requests other stages need decoded even when the serving version would forward them as received:
 * shadow copies and comparisons work on tensors, and `cost: rows` rate limits charge the batch's first dimension.
 */
export function modelsNeedingTensors(config: GatewayConfig): (model: string) => boolean {
  const names = new Set(
    Object.entries(config.models)
      .filter(([, model]) => model.rollout !== undefined || model.shadow?.targets.some((t) => t.percent > 0))
      .map(([name]) => name),
  );
  let all = false;
  for (const rule of config.rateLimits?.rules ?? []) {
    if (rule.cost !== 'rows') continue;
    if (rule.models === undefined) all = true;
    else for (const model of rule.models) names.add(model);
  }
  return (model) => all || names.has(model);
}
