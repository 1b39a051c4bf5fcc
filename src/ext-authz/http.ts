// The ext_authz HTTP service: Envoy's `http_service` check requests in, 200 (allow) or the client's denial out.

import { once } from 'node:events';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ERROR_CODES } from '../errors/codes.js';
import { GatewayError } from '../errors/gateway-error.js';
import { peerAddress } from '../http/peer.js';
import { answerEdgesAsJson } from '../http/edges.js';
import type { Logger } from '../telemetry/log.js';
import { deny, type CheckResult, type ExtAuthzDecider } from './decide.js';
import { dialAddress } from '../http/address.js';

/** Envoy (1.19+) removes the upstream headers named here when the check allows the request. */
export const HEADERS_TO_REMOVE = 'x-envoy-auth-headers-to-remove';

export interface ExtAuthzHttpOptions {
  host: string;
  port: number;
  /** Envoy's `path_prefix`, removed from each check's path; '' when none is configured. */
  pathPrefix: string;
  /** Idle keep-alive socket lifetime, ms: above the idle timeout of Envoy's ext_authz cluster. */
  keepAliveTimeoutMs: number;
}

export interface RunningExtAuthzHttp {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

/** The client path of a check, or undefined when the check's path is not under the configured prefix. */
export function stripPathPrefix(path: string, prefix: string): string | undefined {
  if (prefix === '') return path;
  if (!path.startsWith(prefix)) return undefined;
  const rest = path.slice(prefix.length);
  return rest.startsWith('/') ? rest : undefined;
}

/** The HTTP answer Envoy turns into allow (200, headers copied per its allow-lists) or into the client's response. */
export function httpAnswer(result: CheckResult): { status: number; headers: Record<string, string>; body: string } {
  if (result.allowed) {
    const headers: Record<string, string> = { ...result.responseHeaders, ...result.upstreamHeaders };
    if (result.removeUpstreamHeaders.length > 0) headers[HEADERS_TO_REMOVE] = result.removeUpstreamHeaders.join(', ');
    return { status: 200, headers, body: '' };
  }
  return { status: result.status, headers: { ...result.headers, 'content-type': 'application/json' }, body: JSON.stringify(result.body) };
}

export async function startExtAuthzHttp(decider: ExtAuthzDecider, options: ExtAuthzHttpOptions, log: Logger): Promise<RunningExtAuthzHttp> {
  const server = http.createServer(
    { keepAliveTimeout: options.keepAliveTimeoutMs, headersTimeout: 10_000, requestTimeout: 10_000, requireHostHeader: false },
    (req, res) => {
      handle(req, res).catch((err: unknown) => {
        log.error({ err }, 'unhandled error in an ext_authz check');
        if (!res.headersSent) write(res, 500, {}, JSON.stringify({ error: ERROR_CODES.GW_ERR_INTERNAL.message }));
        else res.destroy();
      });
    },
  );
  // Envoy's checks are well-formed; anything else gets the gateway's JSON, not a silent close.
  answerEdgesAsJson(server);

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // Checks carry no body unless Envoy's with_request_body is set, and the decision never reads one.
    req.resume();
    const path = stripPathPrefix(req.url ?? '', options.pathPrefix);
    const result =
      path === undefined
        ? deny(
            new GatewayError(
              'GW_ERR_EXT_AUTHZ_BAD_CHECK',
              `the check path is not under the ext_authz path prefix '${options.pathPrefix}' (Envoy http_service.path_prefix)`,
            ),
          )
        : await decider.check({
            method: req.method ?? '',
            path,
            headers: req.headers,
            rawHeaders: req.rawHeaders,
            clientAddress: peerAddress(req.socket.remoteAddress),
          });
    const answer = httpAnswer(result);
    write(res, answer.status, answer.headers, answer.body);
  }

  server.listen(options.port, options.host);
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${dialAddress(options.host, port)}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}

function write(res: ServerResponse, status: number, headers: Record<string, string>, body: string): void {
  res.writeHead(status, { ...headers, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
