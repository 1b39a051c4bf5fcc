// Starting and stopping a gateway: config → backends (loaded, warmed) → pipeline → data plane + admin API; drain on stop.

import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import type http from 'node:http';
import { startAdminServer, type RunningAdmin } from '../admin/server.js';
import { AuditTrail, auditPath } from '../admin/audit.js';
import { LiveStats } from '../admin/live-stats.js';
import { RELAY_SECRET_ENV } from '../admin/relayed.js';
import { anyOf, bearerTokenAuthorizer, jwtAdminAuthorizer, type AdminAuthorizer } from '../admin/auth.js';
import { adminToken } from '../admin/token.js';
import { createBackend, servedBackend } from '../backends/create.js';
import type { RemoteKeySources } from '../auth/jwks.js';
import { AuthStats } from '../auth/stats.js';
import { createRateLimitStore } from '../ratelimit/create-store.js';
import { GuardRegistry } from '../resilience/registry.js';
import type { RateLimitStore } from '../ratelimit/store.js';
import type { GatewayConfig } from '../config/schema.js';
import type { BackendFactory } from '../models/catalog.js';
import { GatewayController } from '../reload/controller.js';
import type { KeyHash } from '../routing/sticky.js';
import type { Rng } from '../routing/weighted.js';
import { drainGateway } from './drain.js';
import { startExtAuthz, type RunningExtAuthz } from '../ext-authz/start.js';
import type { GatewayState } from '../pipeline/generation.js';
import { createDataPlane } from '../server/data-plane.js';
import { Overload } from '../server/overload.js';
import type { RunningGrpcDataPlane } from '../server/grpc.js';
import type { Logger } from '../telemetry/log.js';
import { createAccessLog } from '../telemetry/access-log.js';
import { GatewayMetrics } from '../telemetry/metrics.js';
import { registerStateMetrics } from './state-metrics.js';
import { tracingEnabled } from '../telemetry/tracing.js';
import { systemClock, type Clock, type Now } from '../core/clock.js';
import { RolloutManager } from '../rollout/manager.js';
import { RolloutSignals } from '../rollout/signals.js';
import { defaultReplicaId, LocalRolloutStore, stateFileOf, type RolloutStore } from '../rollout/store.js';
import { registerRolloutMetrics } from './state-metrics.js';
import { dialAddress } from '../http/address.js';

export interface RunningGateway {
  /** Base URL of the data plane, e.g. http://127.0.0.1:8080 */
  readonly url: string;
  readonly port: number;
  readonly state: GatewayState;
  readonly server: http.Server;
  /** The gRPC data plane (inference.GRPCInferenceService, grpc.health.v1.Health) unless `server.grpc.enabled` is false. */
  readonly grpc: RunningGrpcDataPlane | undefined;
  /** Applies reloads and runtime weight changes; owns the backends. */
  readonly controller: GatewayController;
  /** The admin API, when enabled and a token is configured. */
  readonly admin: RunningAdmin | undefined;
  /** Process-wide rate-limit store (its `stats` are the rate-limit counters) and auth counters. */
  readonly security: { readonly rateLimitStore: RateLimitStore; readonly authStats: AuthStats };
  /** Every version's circuit breaker and concurrency cap (its `snapshot()` is what the admin API shows). */
  readonly guards: GuardRegistry;
  /** This gateway's Prometheus registry (served at /metrics on the admin port); undefined when metrics are off. */
  readonly metrics: GatewayMetrics | undefined;
  /** Envoy ext_authz services (HTTP, gRPC) when `extAuthz` enables them; same policy and buckets as the data plane. */
  readonly extAuthz: RunningExtAuthz;
  /** Progressive rollouts of the models that configure one (and their shared state, with `coordination.redis`). */
  readonly rollouts: RolloutManager;
  /**
   * The drain timeline of src/drain.ts: readiness fails at once, new connections are still accepted for
   * `drainDelayMs` (default 0 here; the CLI passes server.drainDelayMs on SIGTERM), then in-flight requests and their
   * shadow calls finish, all within server.shutdownTimeoutMs of the call.
   */
  stop(drainDelayMs?: number): Promise<void>;
}

export interface GatewayOptions {
  /** A data-plane worker of a supervisor (server.workers > 1): its admin API listens on a port of its own. */
  worker?: boolean;
  /** Overload protection with an injected RSS reading (tests); default: built from `server`'s settings. */
  overload?: Overload;
  /** The file `config` was loaded from: enables hot reload (file watching and POST /admin/reload). */
  configFile?: string;
  /** Re-applied to every reloaded config, so command-line flags keep winning over the file. */
  adjustConfig?: (config: GatewayConfig) => void;
  /** Creates each version's backend; default: by the config's `kind`. */
  backendFactory?: BackendFactory;
  /** Replaces the admin API's static-token check. */
  adminAuthorizer?: AdminAuthorizer;
  /** Randomness and hashing for routing and shadow sampling (deterministic tests). */
  rng?: Rng;
  keyHash?: KeyHash;
  env?: NodeJS.ProcessEnv;
  /** Epoch-ms readings for token expiry, JWKS cooldowns and token buckets (deterministic tests). */
  now?: Now;
  /** Clock and timers of progressive rollouts: evaluations, sample windows, Redis sync (tests move it by hand). */
  rolloutClock?: Clock;
  /** This replica's name in shared rollout state; default: host name, pid and a random suffix. */
  replicaId?: string;
}

export async function startGateway(config: GatewayConfig, log: Logger, options: GatewayOptions = {}): Promise<RunningGateway> {
  // Once per process, not per reload: buckets (and the Redis connection) survive config changes.
  const rateLimitStore = await createRateLimitStore(config.rateLimits, { log, ...(options.now ? { now: options.now } : {}) });
  const authStats = new AuthStats();
  // Breakers and concurrency caps per version, kept across reloads for versions whose backend is reused.
  const guards = new GuardRegistry({ log });
  const rolloutClock = options.rolloutClock ?? systemClock;
  const rolloutSignals = new RolloutSignals(rolloutClock);
  const security = {
    rateLimitStore,
    authStats,
    guards,
    rolloutSignals,
    remoteKeySources: new Map() as RemoteKeySources,
    ...(options.now ? { now: options.now } : {}),
  };
  const metrics = config.telemetry.metrics.enabled ? new GatewayMetrics() : undefined;
  const createVersionBackend = options.backendFactory ?? ((model, version, backend) => createBackend(model, version, backend, log, metrics));
  let controller: GatewayController;
  try {
    controller = await GatewayController.start(config, log, {
      // Every backend is wrapped once, at creation: upstream spans and latency for every kind, in-process or remote.
      backendFactory: (model, version, backend) =>
        servedBackend(createVersionBackend(model, version, backend), { model, version, metrics, traced: tracingEnabled() }),
      ...(options.configFile !== undefined ? { configFile: options.configFile } : {}),
      ...(options.adjustConfig ? { adjustConfig: options.adjustConfig } : {}),
      ...(options.env ? { env: options.env } : {}),
      ...(options.rng ? { shadowRng: options.rng } : {}),
      route: { ...(options.rng ? { rng: options.rng } : {}), ...(options.keyHash ? { keyHash: options.keyHash } : {}) },
      security,
    });
  } catch (err) {
    await rateLimitStore.close();
    guards.close();
    throw err;
  }
  const state: GatewayState = controller.state;
  if (metrics) registerStateMetrics(metrics, { guards, rateLimits: rateLimitStore.stats, auth: authStats, shadows: controller.shadow.stats });
  // Read once at start, like the rate-limit store: rollouts keep their state and leadership across reloads.
  const replicaId = options.replicaId ?? defaultReplicaId();
  const rolloutStore: RolloutStore = config.coordination
    ? // Redis (ioredis) is loaded only by a gateway that uses it.
      await (await import('../rollout/redis-store.js')).connectRolloutStore(config.coordination.redis, { log, replicaId, now: () => rolloutClock.now() })
    : // Without Redis, the state is kept in a file so a restart resumes each rollout (never throws: a bad file is logged).
      await LocalRolloutStore.open(replicaId, { file: stateFileOf(config.rolloutState, options.configFile), log, now: () => rolloutClock.now() });
  const rollouts = await RolloutManager.start({
    gateway: controller,
    signals: rolloutSignals,
    store: rolloutStore,
    clock: rolloutClock,
    log,
    ...(metrics ? { metrics } : {}),
    ...(config.coordination ? { syncIntervalMs: config.coordination.redis.syncIntervalMs } : {}),
  });
  if (metrics) registerRolloutMetrics(metrics, rollouts);
  const telemetry = { metrics, accessLog: createAccessLog(log, config.logging.accessLog) };
  // Read at start, like the listeners they guard.
  const overload = options.overload ?? new Overload(config.server);
  if (metrics) overload.register(metrics);
  const server = createDataPlane(state, config.server, log, telemetry, overload);
  let grpc: RunningGrpcDataPlane | undefined;
  let admin: RunningAdmin | undefined;
  let extAuthz: RunningExtAuthz;
  // The ops console and the audit trail live on the admin port; the console's figures come from the metrics registry.
  const adminConfig = config.admin;
  // A worker's admin API answers only its supervisor's relay, which keeps the one audit trail and the console sessions.
  const relaySecret = options.worker ? (options.env ?? process.env)[RELAY_SECRET_ENV] : undefined;
  const audit =
    adminConfig.enabled && adminConfig.audit.enabled && relaySecret === undefined
      ? await AuditTrail.open({ path: auditPath(adminConfig.audit, options.configFile), maxFileBytes: adminConfig.audit.maxFileBytes, log })
      : undefined;
  const live = adminConfig.enabled && adminConfig.console.enabled && metrics ? new LiveStats(metrics) : undefined;
  live?.start();
  try {
    server.listen(config.server.port, config.server.host);
    await once(server, 'listening');
    // grpc-js and the protos are loaded only by a gateway that serves gRPC.
    if (config.server.grpc.enabled) grpc = await (await import('../server/grpc.js')).startGrpcDataPlane(state, config.server, log, telemetry, overload);
    // With JWT auth configured at start, an admin call may present either the static token or a JWT holding
    // auth.admin's scopes (read: GET/HEAD, write: the rest); the JWT check follows reloads of the auth section.
    const env = options.env ?? process.env;
    const adminAuthorizer =
      options.adminAuthorizer ??
      (config.auth
        ? anyOf(
            bearerTokenAuthorizer(() => adminToken(controller.config.admin, env)),
            jwtAdminAuthorizer(() => controller.config, { log, ...(options.now ? { now: options.now } : {}) }),
          )
        : undefined);
    admin = await startAdminServer({
      controller,
      guards,
      rollouts,
      ...(metrics ? { metrics } : {}),
      config: config.admin,
      log,
      ...(audit ? { audit } : {}),
      ...(live ? { live } : {}),
      ...(relaySecret ? { relaySecret } : {}),
      ...(adminAuthorizer ? { authorize: adminAuthorizer } : {}),
      ...(options.env ? { env: options.env } : {}),
      ...(options.worker ? { exclusive: true } : {}),
    });
    await controller.watch();
    // Last, so a failure here leaves nothing of it to close; checks read the controller's current config.
    extAuthz = await startExtAuthz(config, {
      currentConfig: () => controller.config,
      log,
      rateLimitStore,
      authStats,
      ...(options.now ? { now: options.now } : {}),
    });
  } catch (err) {
    server.close();
    grpc?.forceShutdown();
    await admin?.close();
    live?.stop();
    await audit?.close();
    await rollouts.close();
    await controller.close();
    await rateLimitStore.close();
    guards.close();
    overload.close();
    throw err;
  }
  const { port } = server.address() as AddressInfo;
  let stopping: Promise<void> | undefined;

  const release = async () => {
    await extAuthz.close(); // after the drain: requests Envoy still sends during the drain delay need checks
    await rollouts.close();
    await controller.close();
    await rateLimitStore.close();
    guards.close();
    overload.close();
  };
  const stop = (drainDelayMs = 0): Promise<void> => {
    stopping ??= drainGateway(
      {
        state,
        server,
        ...(grpc ? { alsoServing: [grpc] } : {}),
        log,
        onDraining: () => controller.stopWatching(), // no reload may start backends while we drain
        onStopAccepting: async () => {
          await admin?.close();
          live?.stop();
          await audit?.close();
        },
        backgroundIdle: () => controller.shadow.idle(),
        release,
      },
      { drainDelayMs, shutdownTimeoutMs: config.server.shutdownTimeoutMs, quietMs: drainDelayMs > 0 ? config.server.drainQuietMs : 0 },
    ).then(() => undefined);
    return stopping;
  };

  return {
    url: `http://${dialAddress(config.server.host, port)}`,
    port,
    state,
    server,
    grpc,
    controller,
    admin,
    security: { rateLimitStore, authStats },
    guards,
    metrics,
    extAuthz,
    rollouts,
    stop,
  };
}
