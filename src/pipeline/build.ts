// THE request chain, in order. Every model-aware request runs through exactly these stages.

import type { GatewayConfig } from '../config/schema.js';
import type { ModelCatalog } from '../models/catalog.js';
import type { Logger } from '../telemetry/log.js';
import type { RemoteKeySources } from '../auth/jwks.js';
import type { AuthStats } from '../auth/stats.js';
import { MemoryStore } from '../ratelimit/memory-store.js';
import { compileRules } from '../ratelimit/rules.js';
import type { RateLimitStore } from '../ratelimit/store.js';
import type { Clock } from '../ratelimit/token-bucket.js';
import { GuardRegistry } from '../resilience/registry.js';
import type { RolloutSignals } from '../rollout/signals.js';
import { authStage } from '../stages/auth.js';
import { breakerStage } from '../stages/breaker.js';
import { deadlineStage } from '../stages/deadline.js';
import { rateLimitStage } from '../stages/rate-limit.js';
import { requestIdStage } from '../stages/request-id.js';
import { routeStage, type RouteOptions } from '../stages/route.js';
import { shadowStage } from '../stages/shadow.js';
import { RoutingTable } from '../routing/table.js';
import { ShadowRuntime } from '../shadow/runtime.js';
import { upstreamStage } from '../stages/upstream.js';
import { validateStage } from '../stages/validate.js';
import { tracingEnabled } from '../telemetry/tracing.js';
import { compose } from './compose.js';
import type { Pipeline } from './stage.js';

export interface PipelineDeps {
  config: GatewayConfig;
  catalog: ModelCatalog;
  log: Logger;
  /** This generation's routing (weights incl. runtime overrides); absent: the config's, without overrides. */
  routing?: RoutingTable;
  /** Shadow state shared by all generations (stats, caps, log); absent: a private one nobody reads. */
  shadow?: ShadowRuntime;
  /** Injected randomness and hashing for routing (tests). */
  route?: RouteOptions;
  /** The process's rate-limit store, shared by all generations so buckets survive reloads; absent: a private memory store. */
  rateLimitStore?: RateLimitStore;
  /** Process-wide auth counters; absent: private ones. */
  authStats?: AuthStats;
  /** The process's remote JWKS sources, shared by all generations so key sets survive reloads. */
  remoteKeySources?: RemoteKeySources;
  /** Injected clock (epoch ms) for token expiry, JWKS cooldowns and token buckets (tests). */
  clock?: Clock;
  /**
   * Every version's circuit breaker and concurrency cap, shared by all generations so a reload keeps breaker state
   * and caps for unchanged versions; absent: a private registry (state lost on reload).
   */
  guards?: GuardRegistry;
  /** Samples of running progressive rollouts (a refused candidate call counts against it). */
  rolloutSignals?: RolloutSignals;
}

/** Process-wide state (security and resilience) the control plane passes to every generation's pipeline. */
export type PipelineSecurity = Pick<PipelineDeps, 'rateLimitStore' | 'authStats' | 'clock' | 'guards' | 'remoteKeySources' | 'rolloutSignals'>;

/** Builds the chain for one config generation; everything a stage precomputes happens here, not per request. */
export function buildPipeline({ config, catalog, log, routing, shadow, route, rateLimitStore, authStats, clock, guards, remoteKeySources, rolloutSignals }: PipelineDeps): Pipeline {
  const now = clock ?? Date.now;
  const limits = { rules: compileRules(config.rateLimits), store: rateLimitStore ?? new MemoryStore(100_000, now), log, now };
  return compose([
    requestIdStage(), //  x-request-id in, x-request-id out
    authStage({ auth: config.auth, models: config.models, log, now, stats: authStats, ...(remoteKeySources ? { remoteSources: remoteKeySources } : {}) }), // bearer → ctx.identity, per-model scopes (400/401/403); identity → ctx.upstreamHeaders
    rateLimitStage('admission', limits), // model rules, charged before routing and before the body is read (429/503)
    routeStage(catalog, routing ?? new RoutingTable(config, catalog), route), // path/header/sticky/weights → ctx.target (403/404)
    validateStage(config), // body → ctx.inference, checked against the model's metadata (400/413); skipped for pass-through remotes
    rateLimitStage('routed', limits), // rules on the serving version or on batch rows, now both are known (413/429/503)
    shadowStage(config, catalog, shadow ?? new ShadowRuntime({ log })), // fire-and-forget copies, compared off the request path
    deadlineStage(config), // model's timeoutMs from the end of the body; aborts the backend call (504)
    breakerStage(config, catalog, (guards ?? new GuardRegistry({ log })).bind(config, catalog), rolloutSignals), // open breaker → fallback or 503; cap → 503; failed rollout candidate → stable
    upstreamStage(catalog), // backend call (in-process, or forwarded to a remote) → OIP reply
  ], { traced: tracingEnabled() });
}

/**
 * The runtime container's chain (`model-gateway serve-model`): it sits behind a gateway inside the pod, so no auth,
 * rate limits, routing rules or shadows; deadlines and load shedding still protect it.
 */
export function buildRuntimePipeline({ config, catalog, log, guards }: PipelineDeps): Pipeline {
  return compose([
    requestIdStage(),
    routeStage(catalog),
    validateStage(config),
    deadlineStage(config),
    breakerStage(config, catalog, (guards ?? new GuardRegistry({ log })).bind(config, catalog)),
    upstreamStage(catalog),
  ], { traced: tracingEnabled() });
}
