// OpenTelemetry HTTP semantic conventions (stable since semconv 1.23) for the gateway's spans: the attributes of a
// server span and of a client span to a remote backend, `error.type`, and what a remote call's HTTP exchanges saw.

import { context, createContextKey, type Attributes, type Context } from '@opentelemetry/api';

/** RFC 9110 methods and PATCH: anything else is `_OTHER` (with the original in `http.request.method_original`). */
const KNOWN_METHODS = new Set(['CONNECT', 'DELETE', 'GET', 'HEAD', 'OPTIONS', 'PATCH', 'POST', 'PUT', 'TRACE']);

export function methodAttributes(method: string): Attributes {
  return KNOWN_METHODS.has(method) ? { 'http.request.method': method } : { 'http.request.method': '_OTHER', 'http.request.method_original': method };
}

const DEFAULT_PORTS: Record<string, number> = { 'http:': 80, 'https:': 443 };

/** The required attributes of a client span to `url`, set when it starts (samplers may read them). */
export function httpClientAttributes(method: string, url: URL): Attributes {
  const full = new URL(url.href);
  // url.full never carries credentials: redacted as the conventions ask.
  if (full.username !== '' || full.password !== '') {
    full.username = 'REDACTED';
    full.password = 'REDACTED';
  }
  return {
    ...methodAttributes(method),
    'server.address': url.hostname.replace(/^\[(.*)\]$/, '$1'),
    'server.port': url.port === '' ? (DEFAULT_PORTS[url.protocol] ?? 0) : Number(url.port),
    'url.full': full.href,
    'url.scheme': url.protocol.slice(0, -1),
  };
}

/**
 * A server span's attributes from the request line and headers: `url.scheme` (the original request's, from
 * X-Forwarded-Proto when a proxy in front says so, else `http`: the data plane listens in cleartext behind its
 * sidecar), `server.address`/`server.port` from the Host header, and the protocol version.
 */
export function httpServerAttributes(
  method: string,
  headers: { host?: string | undefined; 'x-forwarded-proto'?: string | string[] | undefined },
  httpVersion: string,
): Attributes {
  const forwarded = headers['x-forwarded-proto'];
  const proto = (Array.isArray(forwarded) ? forwarded[0] : forwarded)?.split(',')[0]?.trim().toLowerCase();
  const scheme = proto === 'https' || proto === 'http' ? proto : 'http';
  const attributes: Attributes = { ...methodAttributes(method), 'url.scheme': scheme, 'network.protocol.version': httpVersion };
  const host = headers.host;
  // A host name or an IP literal, and an optional port; anything else in the header is not recorded.
  const m = host === undefined ? null : /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~%-]+)(?::(\d{1,5}))?$/.exec(host);
  if (m) {
    attributes['server.address'] = m[1]!.replace(/^\[(.*)\]$/, '$1').slice(0, 256);
    attributes['server.port'] = m[2] === undefined ? DEFAULT_PORTS[`${scheme}:`]! : Number(m[2]);
  }
  return attributes;
}

/**
 * `error.type`, low-cardinality: the gateway's error code (`GW_ERR_…`) when there is one, else an error's own code
 * (`ECONNREFUSED`, `UND_ERR_…`), else its class name, else `_OTHER`. An HTTP answer without an exception uses its
 * status code (see errorTypeOfStatus).
 */
export function errorTypeOf(err: unknown): string {
  if (typeof err === 'object' && err !== null) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && code !== '') return code;
    if (err instanceof Error && err.name !== '') return err.name;
  }
  return '_OTHER';
}

export const errorTypeOfStatus = (status: number): string => String(status);

/**
 * What the HTTP layer of a remote backend saw of one traced call (its client span records it): the last response's
 * status, and how many times the request was sent again (a retry of a request that never reached the remote).
 */
export interface HttpExchange {
  status: number | undefined;
  resends: number;
}

const EXCHANGE = createContextKey('model_gateway.http_exchange');

/** `ctx` in which the HTTP exchanges of a call report to `exchange`. */
export function withHttpExchange(ctx: Context, exchange: HttpExchange): Context {
  return ctx.setValue(EXCHANGE, exchange);
}

/** The traced call the current HTTP exchange belongs to, if any (a metadata probe or a ready check has none). */
export function currentHttpExchange(): HttpExchange | undefined {
  return context.active().getValue(EXCHANGE) as HttpExchange | undefined;
}
