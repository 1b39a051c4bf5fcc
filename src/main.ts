// Starting and stopping a gateway: config → backends (loaded, warmed) → pipeline → data-plane server; drain on stop.

import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import type http from 'node:http';
import { createBackend } from './backends/create.js';
import type { GatewayConfig } from './config/schema.js';
import { ModelCatalog } from './models/catalog.js';
import { buildPipeline } from './pipeline/build.js';
import { createDataPlane, type GatewayState } from './server.js';
import type { Logger } from './telemetry/log.js';

export interface RunningGateway {
  /** Base URL of the data plane, e.g. http://127.0.0.1:8080 */
  readonly url: string;
  readonly port: number;
  readonly state: GatewayState;
  readonly server: http.Server;
  /** Stops accepting, lets in-flight requests finish (up to server.shutdownTimeoutMs), closes backends. */
  stop(): Promise<void>;
}

export async function startGateway(config: GatewayConfig, log: Logger): Promise<RunningGateway> {
  const catalog = ModelCatalog.fromConfig(config, (model, version, backend) => createBackend(model, version, backend, log));
  try {
    await catalog.start();
  } catch (err) {
    await catalog.close();
    throw err;
  }
  const state: GatewayState = { current: { catalog, pipeline: buildPipeline({ config, catalog, log }) }, draining: false };
  const server = createDataPlane(state, config.server, log);
  server.listen(config.server.port, config.server.host);
  try {
    await once(server, 'listening');
  } catch (err) {
    await catalog.close();
    throw err;
  }
  const { port } = server.address() as AddressInfo;
  const host = config.server.host === '0.0.0.0' || config.server.host === '::' ? '127.0.0.1' : config.server.host;
  let stopping: Promise<void> | undefined;

  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      state.draining = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Idle keep-alive sockets close now; busy ones close after their reply (which carries Connection: close).
      server.closeIdleConnections();
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), config.server.shutdownTimeoutMs);
      });
      const outcome = await Promise.race([closed.then(() => 'drained' as const), deadline]);
      clearTimeout(timer);
      if (outcome === 'timeout') {
        log.warn({ shutdownTimeoutMs: config.server.shutdownTimeoutMs }, 'shutdown deadline reached; closing remaining connections');
        server.closeAllConnections();
      }
      await state.current.catalog.close();
    })();
    return stopping;
  };

  return { url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`, port, state, server, stop };
}
