// Data-plane HTTP server: matches OIP paths, builds a Context, runs the pipeline and writes the reply. The only writer of
// data-plane HTTP responses.

import { ROOT_CONTEXT, SpanKind, SpanStatusCode, context, propagation, trace } from '@opentelemetry/api';
import { performance } from 'node:perf_hooks';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { AccessLog } from '../telemetry/access-log.js';
import type { GatewayMetrics } from '../telemetry/metrics.js';
import { errorTypeOfStatus, httpServerAttributes } from '../telemetry/http-semconv.js';
import { tracer, tracingEnabled } from '../telemetry/tracing.js';
import type { ServerConfig } from '../config/schema.js';
import { ERROR_CODES } from '../errors/codes.js';
import { GatewayError } from '../errors/gateway-error.js';
import { toResponse } from '../errors/to-response.js';
import { answerEdgesAsJson, refuseMissingHost } from '../http/edges.js';
import { peerAddress } from '../http/peer.js';
import { RequestBody } from '../http/request-body.js';
import { createContext } from '../pipeline/context.js';
import type { GatewayState, Generation } from '../pipeline/generation.js';
import type { Operation } from '../pipeline/stage.js';
import { RawBody } from '../protocol/binary.js';
import { FALLBACK_HEADER } from '../protocol/headers.js';
import { matchRoute, pathOf } from '../protocol/routes.js';
import { Overload } from './overload.js';
import { GATEWAY_NAME, GATEWAY_VERSION } from '../core/version.js';

/** OIP extensions the data plane implements, listed in server metadata. */
const SERVER_EXTENSIONS: readonly string[] = ['binary_tensor_data'];

/** Bodies up to this size are copied into one buffer: one write beats several for them. */
const SMALL_BODY_BYTES = 16 * 1024;

function send(res: ServerResponse, status: number, body: unknown, headers: http.OutgoingHttpHeaders, close: boolean): void {
  // `headers` is this reply's own object (see headersOf): the framing headers go on it, not on a copy.
  if (close) headers.connection = 'close';
  if (body instanceof RawBody) {
    headers['content-type'] ??= 'application/octet-stream';
    headers['content-length'] = body.byteLength;
    res.writeHead(status, headers);
    const { chunks } = body;
    // Small bodies (a remote's answer with the names spliced in) leave with the headers in one write; large ones are
    // corked so the JSON part and the tensors leave in as few packets as one buffer would, without the copy.
    if (chunks.length === 1) res.end(chunks[0]);
    else if (body.byteLength <= SMALL_BODY_BYTES) res.end(Buffer.concat(chunks, body.byteLength));
    else {
      res.cork();
      for (const chunk of chunks) res.write(chunk);
      res.end();
    }
    return;
  }
  const payload = JSON.stringify(body);
  headers['content-type'] = 'application/json';
  headers['content-length'] = Buffer.byteLength(payload);
  res.writeHead(status, headers);
  res.end(payload);
}

/** One object with the request's headers and the reply's (the reply's win). */
function headersOf(base: Readonly<Record<string, string>>, extra: Readonly<Record<string, string>> | undefined): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = { ...base };
  if (extra !== undefined) Object.assign(out, extra);
  return out;
}

/** What the data plane records per request; each part is optional (metrics off, access log off). */
export interface DataPlaneTelemetry {
  metrics?: GatewayMetrics | undefined;
  accessLog?: AccessLog | undefined;
}

/** The trace id of a W3C `traceparent` header, so access logs join the caller's trace even when nothing is exported. */
function traceIdFrom(header: string | string[] | undefined): string | undefined {
  const m = typeof header === 'string' ? /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/.exec(header) : null;
  return m && m[1] !== '0'.repeat(32) ? m[1] : undefined;
}

/** The server span of a model request, continuing the caller's W3C trace context. Named by route, never by raw path. */
function startServerSpan(req: IncomingMessage, operation: Operation, versioned: boolean, model: string) {
  const suffix = operation === 'infer' ? '/infer' : operation === 'model-ready' ? '/ready' : '';
  const route = `/v2/models/{model}${versioned ? '/versions/{version}' : ''}${suffix}`;
  const parent = propagation.extract(ROOT_CONTEXT, req.headers);
  const http = httpServerAttributes(req.method ?? 'GET', req.headers, req.httpVersion);
  return tracer().startSpan(
    `${http['http.request.method'] === '_OTHER' ? 'HTTP' : String(http['http.request.method'])} ${route}`,
    {
      kind: SpanKind.SERVER,
      attributes: {
        ...http,
        'http.route': route,
        'url.path': (req.url ?? '').split('?')[0]!.slice(0, 256),
        'model_gateway.model': model.slice(0, 128),
      },
    },
    parent,
  );
}

export function createDataPlane(
  state: GatewayState,
  config: ServerConfig,
  log: Logger,
  telemetry: DataPlaneTelemetry = {},
  overload: Overload = new Overload({ maxConnections: 0, maxBufferedBodyBytes: 0, shedAboveRssBytes: 0 }),
): http.Server {
  const { metrics, accessLog } = telemetry;
  const server = http.createServer(
    {
      keepAliveTimeout: config.keepAliveTimeoutMs,
      headersTimeout: config.headersTimeoutMs,
      requestTimeout: config.requestTimeoutMs,
      maxHeaderSize: config.maxHeaderBytes,
      // Node checks header/request timeouts on this period (default 30 s): without it a slow client outlives headersTimeoutMs.
      connectionsCheckingInterval: Math.max(100, Math.min(1_000, Math.floor(config.headersTimeoutMs / 4))),
      insecureHTTPParser: false,
      // Checked in handle(): Node's own refusal is a bodyless 400, and every answer of the gateway is JSON.
      requireHostHeader: false,
    },
    (req, res) => answer(req, res, false),
  );
  /** Every request, with or without `Expect: 100-continue`: the continue is written only when its body is read. */
  const answer = (req: IncomingMessage, res: ServerResponse, expectsContinue: boolean): void => {
    handle(req, res, expectsContinue).catch((err: unknown) => {
      log.error({ err }, 'unhandled error while answering a request');
      if (!res.headersSent) send(res, 500, { error: ERROR_CODES.GW_ERR_INTERNAL.message }, {}, true);
      else res.destroy();
    });
  };
  // Node would write `100 Continue` at once; the gateway first decides whether it wants the body (route, auth, limits).
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => answer(req, res, true));
  answerEdgesAsJson(server);
  overload.guard(server);

  /** An answer before the pipeline; a request still waiting to send its body (Expect: 100-continue) never will: close. */
  function sendError(res: ServerResponse, err: GatewayError, expectsContinue: boolean): void {
    const mapped = toResponse(err);
    send(res, mapped.status, mapped.body, headersOf(mapped.headers, undefined), state.draining || expectsContinue);
  }

  async function handle(req: IncomingMessage, res: ServerResponse, expectsContinue: boolean): Promise<void> {
    if (state.draining) state.lastArrivalMs = performance.now();
    const url = req.url ?? '/';
    const method = req.method ?? 'GET';
    if (refuseMissingHost(req, res)) return;
    const route = matchRoute(pathOf(url));
    if (!route) {
      return sendError(res, new GatewayError('GW_ERR_ROUTE_NOT_FOUND', `no such endpoint: ${method} ${url.slice(0, 200)}`), expectsContinue);
    }
    if (route.kind === 'bad-name') return sendError(res, new GatewayError('GW_ERR_INVALID_REQUEST', route.message), expectsContinue);
    if (!route.methods.includes(method)) {
      const allow = route.methods.join(', ');
      return sendError(
        res,
        new GatewayError('GW_ERR_METHOD_NOT_ALLOWED', `method ${method} is not allowed here; use ${allow}`, { headers: { allow } }),
        expectsContinue,
      );
    }
    const generation = state.current;
    switch (route.kind) {
      case 'live':
        return send(res, 200, { live: true }, {}, state.draining);
      case 'ready': {
        const ready = !state.draining && generation.catalog.ready();
        return send(res, ready ? 200 : 503, { ready }, {}, state.draining);
      }
      case 'server-metadata':
        return send(res, 200, { name: GATEWAY_NAME, version: GATEWAY_VERSION, extensions: SERVER_EXTENSIONS }, {}, state.draining);
      case 'model':
        return runPipeline(generation, route.operation, route.model, route.version, req, res, expectsContinue);
    }
  }

  async function runPipeline(
    generation: Generation,
    operation: Operation,
    modelName: string,
    pathVersion: string | undefined,
    req: IncomingMessage,
    res: ServerResponse,
    expectsContinue: boolean,
  ): Promise<void> {
    const started = performance.now();
    // Unknown model names come from clients: one label for all of them keeps the series count bounded.
    const modelLabel = generation.catalog.get(modelName) ? modelName : 'unknown';
    const inFlight = metrics?.inFlightOf(modelLabel);
    inFlight?.inc();
    const ctx = createContext({
      operation,
      modelName,
      pathVersion,
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      clientAddress: peerAddress(req.socket.remoteAddress),
      connection: req.socket,
      body: new RequestBody(req, config.maxBodyBytes, {
        budget: overload.budget,
        ...(expectsContinue ? { onRead: () => res.writeContinue() } : {}),
      }),
    });
    res.on('close', () => {
      ctx.body.release();
      if (!res.writableFinished) ctx.abort(new GatewayError('GW_ERR_CLIENT_CLOSED'));
    });
    const span = tracingEnabled() ? startServerSpan(req, operation, pathVersion !== undefined, modelName) : undefined;
    let status = 500;
    let errorCode: string | undefined;
    let fallbackFrom: string | undefined;
    try {
      if (operation === 'infer') overload.admitInference();
      const run = () => generation.pipeline(ctx);
      const reply = await (span ? context.with(trace.setSpan(context.active(), span), run) : run());
      status = reply.status;
      fallbackFrom = reply.headers?.[FALLBACK_HEADER] ?? ctx.responseHeaders[FALLBACK_HEADER];
      if (res.destroyed) return;
      send(
        res,
        reply.status,
        reply.body,
        headersOf(ctx.responseHeaders, reply.headers),
        state.draining || ctx.body.abandoned || (expectsContinue && ctx.body.unread),
      );
    } catch (err) {
      const mapped = toResponse(err);
      status = mapped.status;
      errorCode = mapped.code;
      const fields = { requestId: ctx.requestId, model: modelName, version: ctx.target?.version, code: mapped.code, status: mapped.status };
      if (mapped.unexpected !== undefined) log.error({ ...fields, err: mapped.unexpected }, 'unexpected error');
      else if (mapped.status >= 500) log.warn({ ...fields, err: (err as Error).cause ?? undefined, msg: mapped.body.error }, 'request failed');
      if (res.destroyed) return;
      send(
        res,
        mapped.status,
        mapped.body,
        headersOf(ctx.responseHeaders, mapped.headers),
        state.draining || ctx.body.abandoned || (expectsContinue && ctx.body.unread),
      );
    } finally {
      const seconds = (performance.now() - started) / 1000;
      inFlight?.dec();
      metrics?.answered(modelLabel, ctx.target?.version ?? '', operation, status, seconds);
      if (span) {
        span.setAttribute('http.response.status_code', status);
        if (ctx.target) span.setAttribute('model_gateway.version', ctx.target.version);
        if (errorCode) span.setAttribute('model_gateway.error.code', errorCode);
        if (status >= 500) {
          // The gateway's error code when it failed the request itself; a remote's own 5xx passed through: its status.
          span.setAttribute('error.type', errorCode ?? errorTypeOfStatus(status));
          span.setStatus({ code: SpanStatusCode.ERROR });
        }
        span.end();
      }
      if (accessLog?.wants())
        accessLog({
          requestId: ctx.requestId,
          traceId: span?.spanContext().traceId ?? traceIdFrom(req.headers.traceparent),
          method: req.method ?? '',
          path: (req.url ?? '').slice(0, 256),
          model: modelName.slice(0, 128),
          version: ctx.target?.version,
          status,
          latencyMs: seconds * 1000,
          subject: ctx.identity?.subject,
          shadows: ctx.shadowCopies ?? 0,
          fallbackFrom,
          errorCode,
        });
    }
  }

  return server;
}
