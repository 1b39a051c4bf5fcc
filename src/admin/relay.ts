// The supervisor's admin API (server.workers > 1): one address for operators, relayed to the workers' own admin APIs.
// Changes go to every worker (they must agree); views come from one worker (the first, or `?worker=N`); /metrics is
// the workers' registries aggregated (prom-client's cluster aggregation: counters and histograms summed). The console
// and the audit trail live here (relay-console.ts): each action is recorded once, from the first worker's account.

import { once } from 'node:events';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { request } from 'undici';
import type { AuditTrail } from './audit.js';
import { SECURITY_HEADERS } from './console.js';
import { peerAddress } from '../http/peer.js';
import { ACTOR_HEADER, AUDIT_HEADER, decodeHeader, encodeHeader, RELAY_HEADER, type RelayedAudit, type RelayedSession } from './relayed.js';
import { chosenWorker, RelayConsole, type WorkerAdmins } from './relay-console.js';
import { auditedAction } from './routes.js';
import type { AdminConfig } from '../config/schema.js';
import { GatewayError } from '../errors/gateway-error.js';
import { toResponse } from '../errors/to-response.js';
import { answerEdgesAsJson, refuseMissingHost } from '../http/edges.js';
import { RequestBody } from '../http/request-body.js';
import type { RunningAdmin } from './server.js';
import { dialAddress } from '../http/address.js';

export type { WorkerAdmins } from './relay-console.js';

/** Admin request bodies are tiny (a weight map, a rollout option). */
const MAX_BODY_BYTES = 64 * 1024;
/** One worker's answer may take this long (a reload loads models), ms. */
const WORKER_TIMEOUT_MS = 120_000;

export interface RelayOptions {
  config: AdminConfig;
  log: Logger;
  workers: WorkerAdmins;
  /** The workers' metrics, aggregated; absent when metrics are off. */
  metrics?: () => Promise<{ contentType: string; body: string }>;
  /** Proves to the workers that a call came through here (they answer nothing else). */
  secret: string;
  /** The one audit trail of the gateway; none: nothing is recorded. */
  audit?: AuditTrail;
}

interface Answer {
  worker: number;
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  /** The worker's account of the call for the audit trail, when it was a change or a refusal. */
  audit: string | undefined;
}

/** Response headers worth passing back to the operator. */
const PASSED = ['content-type', 'www-authenticate', 'retry-after', 'allow', 'cache-control'];

async function ask(
  worker: number,
  base: string,
  req: IncomingMessage,
  path: string,
  body: Buffer,
  secret: string,
  session: RelayedSession | undefined,
): Promise<Answer> {
  const headers: Record<string, string> = { [RELAY_HEADER]: secret };
  if (session) headers[ACTOR_HEADER] = encodeHeader(session);
  else if (typeof req.headers.authorization === 'string') headers.authorization = req.headers.authorization;
  if (typeof req.headers['content-type'] === 'string') headers['content-type'] = req.headers['content-type'];
  const res = await request(new URL(path, base), {
    method: (req.method ?? 'GET') as 'GET',
    headers,
    body: body.length > 0 ? body : null,
    headersTimeout: WORKER_TIMEOUT_MS,
    bodyTimeout: WORKER_TIMEOUT_MS,
  });
  const out: Record<string, string> = {};
  for (const name of PASSED) {
    const value = res.headers[name];
    if (typeof value === 'string') out[name] = value;
  }
  const audit = res.headers[AUDIT_HEADER];
  return {
    worker,
    status: res.statusCode,
    headers: out,
    body: Buffer.from(await res.body.arrayBuffer()),
    audit: typeof audit === 'string' ? audit : undefined,
  };
}

function write(res: ServerResponse, status: number, headers: Record<string, string>, body: Buffer | string): void {
  res.writeHead(status, { ...headers, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

export async function startAdminRelay(options: RelayOptions): Promise<RunningAdmin> {
  const { log, secret, audit } = options;
  const consoleSide = await RelayConsole.create({ config: options.config, log, audit, secret, workers: options.workers });

  /** Records a worker's account of a call once, with the client's address (a worker only sees the relay's). */
  async function record(req: IncomingMessage, account: string | undefined, outcome?: { status: number; error?: string }): Promise<void> {
    const entry = decodeHeader<RelayedAudit>(account);
    if (!entry || !audit) return;
    await audit.record({
      ...entry,
      ...(outcome ? { outcome } : {}),
      peer: peerAddress(req.socket.remoteAddress),
      ...(typeof req.headers['x-forwarded-for'] === 'string' ? { forwardedFor: req.headers['x-forwarded-for'].slice(0, 256) } : {}),
    });
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://relay');
    const method = req.method ?? 'GET';
    if (url.pathname === '/metrics' && options.metrics && (method === 'GET' || method === 'HEAD')) {
      const { contentType, body } = await options.metrics();
      return write(res, 200, { 'content-type': contentType }, method === 'HEAD' ? '' : body);
    }
    const read = method === 'GET' || method === 'HEAD';
    let session: RelayedSession | undefined;
    try {
      const own = await consoleSide.serve(req, res, url.pathname, url);
      if (own === 'served') return;
      if (own)
        return write(
          res,
          own.status,
          { ...SECURITY_HEADERS, ...own.headers, 'content-type': 'application/json', 'cache-control': 'no-store' },
          JSON.stringify(own.body),
        );
      session = await consoleSide.sessionFor(req, url.pathname, read ? 'read' : 'write');
    } catch (err) {
      // A refusal of the relay's own (a console session without its CSRF token, say): no worker saw the call.
      if (err instanceof GatewayError && (err.status === 401 || err.status === 403) && url.pathname !== '/admin/session') {
        await consoleSide.recordRefusal(
          req,
          url.pathname,
          err,
          auditedAction(method, url.pathname) ?? { action: `${read ? 'read' : 'write'} (refused)`, target: null },
        );
      }
      throw err;
    }
    const workers = options.workers();
    const path = `${url.pathname}${url.search}`;
    const body = await new RequestBody(req, MAX_BODY_BYTES).bytes();
    if (read) {
      const { number, base } = chosenWorker(workers, url.searchParams.get('worker'));
      const answer = await ask(number, base, req, path, body, secret, session);
      await record(req, answer.audit);
      return write(res, answer.status, { ...answer.headers, 'x-model-gateway-worker': `${number}/${workers.size}` }, answer.body);
    }
    // A change: every worker makes it, or the operator learns which did not.
    if (workers.size === 0) throw new GatewayError('GW_ERR_WORKERS_UNAVAILABLE', 'no data-plane worker is ready yet', { headers: { 'retry-after': '1' } });
    const answers = await Promise.all([...workers].map(([n, base]) => ask(n, base, req, path, body, secret, session).catch((err: unknown) => err as Error)));
    const first = answers[0]!;
    const account = answers.find((a): a is Answer => !(a instanceof Error))?.audit;
    const agreed = answers.every((a) => !(a instanceof Error) && !(first instanceof Error) && a.status === first.status);
    if (agreed && !(first instanceof Error)) {
      log.info({ method, path: url.pathname, status: first.status, workers: answers.length }, 'admin change relayed to every worker');
      await record(req, account);
      return write(res, first.status, { ...first.headers, 'x-model-gateway-worker': `all/${answers.length}` }, first.body);
    }
    await record(req, account, { status: 502, error: new GatewayError('GW_ERR_WORKERS_DISAGREE').message });
    const detail = answers.map((a, i) =>
      a instanceof Error
        ? { worker: [...workers.keys()][i], error: a.message }
        : { worker: a.worker, status: a.status, body: a.body.toString('utf8').slice(0, 2048) },
    );
    log.error({ method, path: url.pathname, workers: detail }, 'admin change answered differently by the workers');
    write(res, 502, { 'content-type': 'application/json' }, JSON.stringify({ error: new GatewayError('GW_ERR_WORKERS_DISAGREE').message, workers: detail }));
  }

  const server = http.createServer({ headersTimeout: 10_000, requestTimeout: WORKER_TIMEOUT_MS + 10_000, requireHostHeader: false }, (req, res) => {
    if (refuseMissingHost(req, res)) return;
    handle(req, res).catch((err: unknown) => {
      const mapped = toResponse(err);
      if (mapped.unexpected !== undefined) log.error({ err: mapped.unexpected }, 'unexpected admin relay error');
      if (res.headersSent) return void res.destroy();
      write(
        res,
        mapped.status,
        { ...mapped.headers, 'content-type': 'application/json', ...(req.complete ? {} : { connection: 'close' }) },
        JSON.stringify(mapped.body),
      );
    });
  });
  answerEdgesAsJson(server);
  server.listen(options.config.port, options.config.host);
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${dialAddress(options.config.host, port)}`,
    port,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        consoleSide.close();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
