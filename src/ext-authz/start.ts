// Starts the enabled ext_authz services (HTTP and/or gRPC) around one decider, and stops them together.

import type { AuthStats } from '../auth/stats.js';
import type { GatewayConfig } from '../config/schema.js';
import type { RateLimitStore } from '../ratelimit/store.js';
import type { Logger } from '../telemetry/log.js';
import { ExtAuthzDecider } from './decide.js';
import type { RunningExtAuthzGrpc } from './grpc.js';
import type { RunningExtAuthzHttp } from './http.js';

export interface RunningExtAuthz {
  readonly http: RunningExtAuthzHttp | undefined;
  readonly grpc: RunningExtAuthzGrpc | undefined;
  close(): Promise<void>;
}

export interface ExtAuthzStartDeps {
  /** Read per check, so a reload's auth and rate-limit changes apply to checks as they do to the data plane. */
  currentConfig: () => GatewayConfig;
  log: Logger;
  rateLimitStore: RateLimitStore;
  authStats?: AuthStats;
  now?: () => number;
}

/**
 * Listen addresses and enabled flags are read once, from `config` (like `server.*`); a reload that changes them
 * needs a restart.
 */
export async function startExtAuthz(config: GatewayConfig, deps: ExtAuthzStartDeps): Promise<RunningExtAuthz> {
  const { http: httpConfig, grpc: grpcConfig } = config.extAuthz;
  const log = deps.log.child({ component: 'ext-authz' });
  const decider = new ExtAuthzDecider(deps.currentConfig, {
    log,
    rateLimitStore: deps.rateLimitStore,
    ...(deps.authStats ? { authStats: deps.authStats } : {}),
    ...(deps.now ? { now: deps.now } : {}),
  });
  let http: RunningExtAuthzHttp | undefined;
  let grpc: RunningExtAuthzGrpc | undefined;
  try {
    if (httpConfig.enabled) {
      // Each service (gRPC: grpc-js and the Envoy protos) is loaded only when it is enabled.
      const { startExtAuthzHttp } = await import('./http.js');
      http = await startExtAuthzHttp(
        decider,
        { host: httpConfig.host, port: httpConfig.port, pathPrefix: httpConfig.pathPrefix, keepAliveTimeoutMs: config.server.keepAliveTimeoutMs },
        log,
      );
      log.info({ url: http.url, pathPrefix: httpConfig.pathPrefix }, 'ext_authz HTTP service listening');
    }
    if (grpcConfig.enabled) {
      const { startExtAuthzGrpc } = await import('./grpc.js');
      grpc = await startExtAuthzGrpc(decider, { host: grpcConfig.host, port: grpcConfig.port }, log);
      log.info({ address: grpc.address }, 'ext_authz gRPC service listening');
    }
  } catch (err) {
    await http?.close();
    throw err;
  }
  return {
    http,
    grpc,
    close: async () => {
      await Promise.all([http?.close(), grpc?.close()]);
    },
  };
}
