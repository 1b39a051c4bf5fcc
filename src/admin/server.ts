// Admin HTTP server on its own port (loopback by default): traffic weights, shadow statistics, reload — bearer-token protected.

import type { GatewayMetrics } from '../telemetry/metrics.js';
import { once } from 'node:events';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Logger } from 'pino';
import { bearerTokenAuthorizer, type AdminAction, type AdminAuthorizer } from './auth.js';
import { ADMIN_TOKEN_ENV, adminToken } from './token.js';
import type { AdminConfig } from '../config/schema.js';
import { GatewayError } from '../errors/gateway-error.js';
import { toResponse } from '../errors/to-response.js';
import { RequestBody } from '../http/request-body.js';
import type { GatewayController } from '../reload/controller.js';
import type { GuardRegistry } from '../resilience/registry.js';
import type { RolloutManager } from '../rollout/manager.js';
import type { OperatorAction } from '../rollout/machine.js';

/** Admin request bodies are tiny (a weight map). */
const MAX_ADMIN_BODY_BYTES = 64 * 1024;

export interface AdminServerOptions {
  controller: GatewayController;
  config: AdminConfig;
  log: Logger;
  /** Replaces the default static-token check (e.g. `anyOf(tokenCheck, jwtScopeCheck)`). */
  authorize?: AdminAuthorizer;
  /** Circuit breaker and load-shedding state per version, shown by GET /admin/models as `resilience`. */
  guards?: GuardRegistry;
  /** Served at GET /metrics without the admin token (Prometheus text; no secrets in it). */
  metrics?: GatewayMetrics;
  /** Progressive rollouts: GET /admin/models/{m}/rollout and POST .../rollout/{pause,resume,promote,abort}. */
  rollouts?: RolloutManager;
  env?: NodeJS.ProcessEnv;
  /** Listen on a port of this process only, even in a cluster worker (whose ports Node otherwise shares). */
  exclusive?: boolean;
}

export interface RunningAdmin {
  readonly url: string;
  readonly port: number;
  readonly server: http.Server;
  close(): Promise<void>;
}

interface Handler {
  action: AdminAction;
  run(req: IncomingMessage, params: { model?: string }): Promise<{ status: number; body: unknown }>;
}

type Routes = Partial<Record<string, Handler>>;

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const payload = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload), 'cache-control': 'no-store' });
  res.end(payload);
}

/** Resolves the path to its handlers by method; undefined for paths the admin API does not have. */
const ROLLOUT_ACTIONS: readonly OperatorAction[] = ['pause', 'resume', 'promote', 'abort'];

/** The optional body of a rollout action: `{"full": true}` makes promote go straight to the last step. */
async function rolloutOptions(req: IncomingMessage, action: OperatorAction): Promise<{ full?: boolean }> {
  const body = new RequestBody(req, MAX_ADMIN_BODY_BYTES);
  if ((await body.bytes()).length === 0) return {};
  const parsed = await body.json();
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw new GatewayError('GW_ERR_INVALID_REQUEST', 'the body must be a JSON object');
  const { full, ...rest } = parsed as Record<string, unknown>;
  const unknownKeys = Object.keys(rest);
  if (unknownKeys.length > 0) throw new GatewayError('GW_ERR_INVALID_REQUEST', `unknown field(s) ${unknownKeys.join(', ')}; only promote takes {"full": true}`);
  if (full !== undefined && (typeof full !== 'boolean' || action !== 'promote'))
    throw new GatewayError('GW_ERR_INVALID_REQUEST', '"full" is a boolean and only promote takes it');
  return full === undefined ? {} : { full };
}

function match(
  path: string,
  c: GatewayController,
  guards?: GuardRegistry,
  rollouts?: RolloutManager,
): { routes: Routes; params: { model?: string } } | undefined {
  const s = path.split('/');
  if (s[0] !== '' || s[1] !== 'admin') return undefined;
  const ok = async (body: unknown) => ({ status: 200, body });
  if (s.length === 3 && s[2] === 'status') return { routes: { GET: { action: 'read', run: () => ok(c.status()) } }, params: {} };
  if (s.length === 3 && s[2] === 'reload') {
    return { routes: { POST: { action: 'write', run: async () => ({ status: 200, body: await c.reloadFromFile('admin') }) } }, params: {} };
  }
  if (s[2] !== 'models') return undefined;
  if (s.length === 3) {
    return {
      routes: {
        GET: {
          action: 'read',
          run: () => ok({ generation: c.generation, reload: c.status().reload.lastAttempt, models: c.models(), resilience: guards?.snapshot() ?? {} }),
        },
      },
      params: {},
    };
  }
  const model = s[3];
  if (!model) return undefined;
  const params = { model };
  if (s.length === 4) return { routes: { GET: { action: 'read', run: () => ok(c.model(model)) } }, params };
  if (s[4] === 'rollout' && rollouts) {
    if (s.length === 5) return { routes: { GET: { action: 'read', run: () => ok(rollouts.view(model)) } }, params };
    const action = s[5] as OperatorAction;
    if (s.length !== 6 || !ROLLOUT_ACTIONS.includes(action)) return undefined;
    return {
      routes: {
        POST: {
          action: 'write',
          run: async (req) => {
            rollouts.view(model); // 404 (no such model, or no rollout) before reading the body
            return { status: 200, body: await rollouts.act(model, action, await rolloutOptions(req, action)) };
          },
        },
      },
      params,
    };
  }
  if (s.length !== 5) return undefined;
  if (s[4] === 'shadow') {
    return {
      routes: {
        GET: { action: 'read', run: () => ok(c.shadowStats(model)) },
        DELETE: { action: 'write', run: () => ok(c.resetShadowStats(model)) },
      },
      params,
    };
  }
  if (s[4] === 'weights') {
    return {
      routes: {
        PUT: {
          action: 'write',
          run: async (req) => {
            c.model(model); // 404 for an unknown model before reading the body
            const body = await new RequestBody(req, MAX_ADMIN_BODY_BYTES).json();
            return { status: 200, body: await c.setWeights(model, body) };
          },
        },
        DELETE: { action: 'write', run: async () => ({ status: 200, body: await c.clearWeights(model) }) },
      },
      params,
    };
  }
  return undefined;
}

export function createAdminServer(options: AdminServerOptions): http.Server {
  const { controller, log } = options;
  const env = options.env ?? process.env;
  // The token is looked up per request: a reloaded config can rotate it without a restart.
  const authorize = options.authorize ?? bearerTokenAuthorizer(() => adminToken(controller.config.admin, env));

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const method = req.method ?? 'GET';
    if (path === '/metrics' && options.metrics && (method === 'GET' || method === 'HEAD')) {
      const { contentType, body } = await options.metrics.exposition();
      res.writeHead(200, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
      res.end(method === 'HEAD' ? undefined : body);
      return;
    }
    try {
      await authorize({ method, path, headers: req.headers, action: method === 'GET' || method === 'HEAD' ? 'read' : 'write' });
      const found = match(path, controller, options.guards, options.rollouts);
      if (!found) throw new GatewayError('GW_ERR_ROUTE_NOT_FOUND', `no such admin endpoint: ${method} ${path.slice(0, 200)}`);
      const handler = found.routes[method];
      if (!handler) {
        const allow = Object.keys(found.routes).join(', ');
        throw new GatewayError('GW_ERR_METHOD_NOT_ALLOWED', `method ${method} is not allowed here; use ${allow}`, { headers: { allow } });
      }
      const { status, body } = await handler.run(req, found.params);
      if (handler.action === 'write') log.info({ method, path, status }, 'admin change');
      send(res, status, body);
    } catch (err) {
      const mapped = toResponse(err);
      if (mapped.unexpected !== undefined) log.error({ err: mapped.unexpected, method, path }, 'unexpected admin error');
      else if (mapped.status === 401 || mapped.status === 403)
        log.warn({ method, path, status: mapped.status, peer: req.socket.remoteAddress }, 'admin call refused');
      // A refused or half-read body must not be parsed as the next request on this connection.
      const close = !req.complete;
      send(res, mapped.status, mapped.body, close ? { ...mapped.headers, connection: 'close' } : mapped.headers);
    }
  }

  const server = http.createServer({ headersTimeout: 10_000, requestTimeout: 30_000, requireHostHeader: true }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      log.error({ err }, 'unhandled admin error');
      if (!res.headersSent) send(res, 500, { error: 'internal gateway error' });
      else res.destroy();
    });
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (!socket.writable || err.code === 'ECONNRESET') return void socket.destroy();
    const body = JSON.stringify({ error: `malformed HTTP request (${err.code ?? 'parse error'})` });
    socket.end(`HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  });
  return server;
}

/**
 * Starts the admin server, or returns undefined (with a warning) when it is disabled, or when it has neither a way to
 * authorise admin calls (token or JWT) nor metrics to serve: an admin API that anyone on the host could call is
 * never started.
 */
export async function startAdminServer(options: AdminServerOptions): Promise<RunningAdmin | undefined> {
  const { config, log } = options;
  if (!config.enabled) return undefined;
  if (!options.authorize && adminToken(config, options.env ?? process.env) === undefined) {
    if (!options.metrics) {
      log.warn(`admin API disabled: set admin.token in the config or ${ADMIN_TOKEN_ENV} in the environment to enable it`);
      return undefined;
    }
    // Metrics still need the port; every admin endpoint answers 401 until a token is configured.
    log.warn(`admin API endpoints refuse every call: set admin.token in the config or ${ADMIN_TOKEN_ENV} to enable them; /metrics is served`);
  }
  const server = createAdminServer(options);
  // A cluster worker's admin port is its own (the supervisor relays to each); otherwise Node would share it.
  server.listen({ port: config.port, host: config.host, exclusive: options.exclusive === true });
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    port,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
