// Admin HTTP server on its own port (loopback by default): traffic weights, shadow statistics, rollouts, reload, the
// ops console and its live stream — bearer token or console session, every change and refusal in the audit trail.

import type { GatewayMetrics } from '../telemetry/metrics.js';
import { once } from 'node:events';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { AuditTrail } from './audit.js';
import { bearerTokenAuthorizer, type AdminAuthorizer } from './auth.js';
import { authorizeCall, refusedActor, relayedCaller, type AdminCaller, type CallerDeps } from './caller.js';
import { ConsoleAssets, SECURITY_HEADERS, sessionEndpoint } from './console.js';
import { consoleSnapshot, ReloadHistory } from './console-view.js';
import { EventHub } from './events.js';
import type { LiveStats } from './live-stats.js';
import { ACTOR_HEADER, AUDIT_HEADER, decodeHeader, encodeHeader, fromRelay, type RelayedAudit, type RelayedSession } from './relayed.js';
import { match, type AuditSpec } from './routes.js';
import { SessionStore } from './sessions.js';
import { ADMIN_TOKEN_ENV, adminToken } from './token.js';
import type { AdminConfig } from '../config/schema.js';
import { GatewayError } from '../errors/gateway-error.js';
import { toResponse } from '../errors/to-response.js';
import { answerEdgesAsJson, refuseMissingHost } from '../http/edges.js';
import { peerAddress } from '../http/peer.js';
import type { GatewayController } from '../reload/controller.js';
import type { GuardRegistry } from '../resilience/registry.js';
import type { RolloutManager } from '../rollout/manager.js';
import { dialAddress } from '../http/address.js';

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
  /** The audit trail every change and refusal is recorded in (GET /admin/audit); none: nothing is recorded. */
  audit?: AuditTrail;
  /** The console's live figures (sampled from `metrics`); absent when metrics are off. */
  live?: LiveStats;
  /**
   * A data-plane worker's admin API behind the supervisor's relay: it answers only calls carrying this secret, acts
   * for the console sessions the relay holds, and hands each audit entry back to the relay instead of recording it.
   */
  relaySecret?: string;
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

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    ...SECURITY_HEADERS,
    ...headers,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(payload),
    'cache-control': 'no-store',
  });
  res.end(payload);
}

/** The state an audited action changes; null when it cannot be read (an unknown model: the call answers 404). */
function stateOf(spec: AuditSpec): unknown {
  try {
    return spec.state() ?? null;
  } catch {
    return null;
  }
}

interface AdminServer extends http.Server {
  /** Ends the console's live streams (with a last event saying why) and stops their timers. */
  closeConsole(): void;
}

export async function createAdminServer(options: AdminServerOptions): Promise<AdminServer> {
  const { controller, log, audit, relaySecret } = options;
  const env = options.env ?? process.env;
  const staticToken = () => adminToken(controller.config.admin, env);
  // The token is looked up per request: a reloaded config can rotate it without a restart.
  const authorize = options.authorize ?? bearerTokenAuthorizer(staticToken);
  const consoleConfig = options.config.console;
  // Behind the relay, the page, its sessions and the audit trail are the supervisor's; a worker serves the data.
  const ownConsole = consoleConfig.enabled && relaySecret === undefined;
  const sessions = ownConsole ? new SessionStore({ ttlMs: consoleConfig.sessionTtlMs, maxSessions: consoleConfig.maxSessions }) : undefined;
  const callers: CallerDeps = { authorize, sessions, staticToken };
  const assets = ownConsole ? await ConsoleAssets.load() : undefined;
  if (ownConsole && !assets) log.warn('the ops console was not built (npm run build): /console answers 404');
  const reloads = consoleConfig.enabled ? new ReloadHistory(controller) : undefined;
  const sources = { controller, guards: options.guards, rollouts: options.rollouts, live: options.live, audit, reloads: reloads! };
  const hub = reloads
    ? new EventHub({
        snapshot: () => consoleSnapshot(sources),
        history: () => ({ metrics: options.live !== undefined, ...(options.live?.history() ?? { t: [], series: {} }) }),
        maxStreams: consoleConfig.maxStreams,
        sessionLive: (id) => sessions?.get(id) !== undefined,
        log,
        headers: SECURITY_HEADERS,
      })
    : undefined;
  if (hub) {
    reloads!.onReload(() => hub.changed());
    audit?.onEntry(() => hub.changed());
  }
  const deps = { controller, guards: options.guards, rollouts: options.rollouts, audit, ...(hub ? { events: hub.open.bind(hub) } : {}) };

  function recordAudit(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    entry: { actor: AdminCaller['actor']; action: string; target: Record<string, string> | null },
    outcome: { status: number; error?: string },
    before: unknown,
    after: unknown,
  ) {
    if (relaySecret !== undefined) {
      // The relay records it once, with the client's address, whatever the number of workers.
      const relayed: RelayedAudit = { ...entry, request: { method: req.method ?? 'GET', path: path.slice(0, 512) }, outcome, before, after };
      const encoded = encodeHeader(relayed);
      if (!res.headersSent)
        res.setHeader(
          AUDIT_HEADER,
          encoded.length <= 12_000 ? encoded : encodeHeader({ ...relayed, before: { omitted: 'too large' }, after: { omitted: 'too large' } }),
        );
      return;
    }
    return audit?.record({
      ...entry,
      peer: peerAddress(req.socket.remoteAddress),
      ...(typeof req.headers['x-forwarded-for'] === 'string' ? { forwardedFor: req.headers['x-forwarded-for'].slice(0, 256) } : {}),
      request: { method: req.method ?? 'GET', path: path.slice(0, 512) },
      outcome,
      before,
      after,
    });
  }

  /** The relay asks whether a credential may log in to the console (read or write): the principal, or the refusal. */
  async function verifyForRelay(req: IncomingMessage, res: ServerResponse, raw: string): Promise<void> {
    const action = new URL(raw, 'http://admin').searchParams.get('action') === 'write' ? 'write' : 'read';
    try {
      const principal = await authorize({ method: 'POST', path: '/admin/session', headers: req.headers, rawHeaders: req.rawHeaders, action });
      send(res, 200, { principal: principal ?? null });
    } catch (err) {
      const mapped = toResponse(err);
      send(res, mapped.status, { ...mapped.body, actor: refusedActor(err) }, mapped.headers);
    }
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const raw = req.url ?? '/';
    const q = raw.indexOf('?');
    const path = q < 0 ? raw : raw.slice(0, q);
    const method = req.method ?? 'GET';
    if (path === '/metrics' && options.metrics && (method === 'GET' || method === 'HEAD')) {
      const { contentType, body } = await options.metrics.exposition();
      res.writeHead(200, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
      res.end(method === 'HEAD' ? undefined : body);
      return;
    }
    const action = method === 'GET' || method === 'HEAD' ? 'read' : 'write';
    const found = match(path, deps);
    const handler = found?.routes[method];
    let caller: AdminCaller | undefined;
    let before: unknown;
    try {
      if (ownConsole && (path === '/console' || path.startsWith('/console/'))) {
        if (!assets) throw new GatewayError('GW_ERR_ROUTE_NOT_FOUND', 'the ops console was not built with this gateway (npm run build)');
        if (assets.serve(req, res, path)) return;
        throw new GatewayError('GW_ERR_ROUTE_NOT_FOUND', `no such console file: ${path.slice(0, 200)}`);
      }
      if (sessions && path === '/admin/session') {
        const answer = await sessionEndpoint(req, path, { sessions, authorize, staticToken, audit, secureCookie: consoleConfig.secureCookie });
        if (method !== 'GET' && method !== 'HEAD') hub?.changed();
        return send(res, answer.status, answer.body, answer.headers);
      }
      if (relaySecret !== undefined) {
        if (!fromRelay(req.headers, relaySecret))
          throw new GatewayError(
            'GW_ERR_ADMIN_FORBIDDEN',
            "this is a data-plane worker's private admin API: call the supervisor's admin address, which relays to every worker",
          );
        if (path === '/admin/session/verify') return await verifyForRelay(req, res, raw);
      }
      const relayedAs = relaySecret !== undefined ? decodeHeader<RelayedSession>(req.headers[ACTOR_HEADER]) : undefined;
      caller = relayedAs ? relayedCaller(relayedAs, action, staticToken) : await authorizeCall(req, path, action, callers);
      if (!found) throw new GatewayError('GW_ERR_ROUTE_NOT_FOUND', `no such admin endpoint: ${method} ${path.slice(0, 200)}`);
      if (!handler) {
        const allow = Object.keys(found.routes).join(', ');
        throw new GatewayError('GW_ERR_METHOD_NOT_ALLOWED', `method ${method} is not allowed here; use ${allow}`, { headers: { allow } });
      }
      const context = { url: new URL(raw, 'http://admin'), caller };
      if (handler.stream) return handler.stream(req, res, context);
      if (handler.audit) before = stateOf(handler.audit);
      const { status, body } = await handler.run!(req, context);
      if (handler.action === 'write') log.info({ method, path, status, actor: caller.actor }, 'admin change');
      if (handler.audit) await recordAudit(req, res, path, { actor: caller.actor, ...handler.audit }, { status }, before, stateOf(handler.audit));
      hub?.changed();
      send(res, status, body);
    } catch (err) {
      const mapped = toResponse(err);
      if (mapped.unexpected !== undefined) log.error({ err: mapped.unexpected, method, path }, 'unexpected admin error');
      else if (mapped.status === 401 || mapped.status === 403)
        log.warn({ method, path, status: mapped.status, peer: req.socket.remoteAddress }, 'admin call refused');
      if (caller && handler?.audit) {
        // An authorised change that failed (invalid weights, a rollout conflict): recorded with the state it left.
        await recordAudit(
          req,
          res,
          path,
          { actor: caller.actor, ...handler.audit },
          { status: mapped.status, error: mapped.body.error },
          before,
          stateOf(handler.audit),
        );
      } else if (!caller && (mapped.status === 401 || mapped.status === 403) && path !== '/admin/session') {
        const target = handler?.audit?.target ?? null;
        await recordAudit(
          req,
          res,
          path,
          { actor: refusedActor(err), action: handler?.audit?.action ?? `${action} (refused)`, target },
          { status: mapped.status, error: mapped.body.error },
          null,
          null,
        );
      }
      if (res.headersSent) return void res.destroy();
      // A refused or half-read body must not be parsed as the next request on this connection.
      const close = !req.complete;
      send(res, mapped.status, mapped.body, close ? { ...mapped.headers, connection: 'close' } : mapped.headers);
    }
  }

  const server = http.createServer({ headersTimeout: 10_000, requestTimeout: 30_000, requireHostHeader: false }, (req, res) => {
    if (refuseMissingHost(req, res)) return;
    handle(req, res).catch((err: unknown) => {
      log.error({ err }, 'unhandled admin error');
      if (!res.headersSent) send(res, 500, { error: 'internal gateway error' });
      else res.destroy();
    });
  });
  answerEdgesAsJson(server);
  return Object.assign(server, {
    closeConsole: () => {
      hub?.close('shutdown');
      reloads?.stop();
    },
  });
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
  const server = await createAdminServer(options);
  // A cluster worker's admin port is its own (the supervisor relays to each); otherwise Node would share it.
  server.listen({ port: config.port, host: config.host, exclusive: options.exclusive === true });
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${dialAddress(config.host, port)}`,
    port,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeConsole();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
