// The gRPC transport adapter's model calls (ModelReady, ModelMetadata, ModelInfer): a Context from the call, the
// generation's chain — the same one REST runs — and its reply or error as the gRPC answer, with metrics, a span and an
// access-log line labelled `grpc`.

import { performance } from 'node:perf_hooks';
import type { IncomingHttpHeaders } from 'node:http';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, context, propagation, trace, type Span } from '@opentelemetry/api';
import type * as grpc from '@grpc/grpc-js';
import { GRPC_STATUS } from '../errors/codes.js';
import { GatewayError } from '../errors/gateway-error.js';
import { toGrpcStatus } from '../errors/to-grpc-status.js';
import { peerAddress } from '../http/peer.js';
import { createContext } from '../pipeline/context.js';
import type { GatewayState } from '../pipeline/generation.js';
import type { Context, Operation, Reply } from '../pipeline/stage.js';
import { INFERENCE_SERVICE } from '../protocol/grpc-protos.js';
import { FALLBACK_HEADER } from '../protocol/headers.js';
import type { ParsedInferRequest } from '../protocol/validate.js';
import type { Logger } from '../telemetry/log.js';
import { tracer, tracingEnabled } from '../telemetry/tracing.js';
import type { DataPlaneTelemetry } from './data-plane.js';
import { errorStatus, metadataOf } from './grpc-status.js';
import type { Overload } from './overload.js';

/** What a handler makes of the chain's reply: the response message, or an error to answer instead. */
export type Answer<T> = (reply: Reply, ctx: Context) => T;

export interface ModelCall<Req, Res> {
  readonly method: 'ModelReady' | 'ModelMetadata' | 'ModelInfer';
  readonly operation: Operation;
  readonly call: grpc.ServerUnaryCall<Req, Res>;
  readonly callback: grpc.sendUnaryData<Res>;
  readonly model: string;
  /** The version the message names ('' = none: routing decides). */
  readonly version: string;
  readonly parsed?: () => ParsedInferRequest;
  readonly answer: Answer<Res>;
}

/** The peer as the gateway reports it: grpc-js gives `host:port`, `[v6]:port` or a scheme-prefixed form. */
export function peerOf(peer: string): string {
  const bare = peer.replace(/^ipv[46]:/, '');
  const v6 = /^\[([^\]]+)\](?::\d+)?$/.exec(bare);
  if (v6) return peerAddress(v6[1]);
  const colon = bare.lastIndexOf(':');
  return peerAddress(colon > 0 && bare.indexOf(':') === colon ? bare.slice(0, colon) : bare);
}

/**
 * Metadata as the stages read headers: lower-case names, repeated values joined (every value kept in `rawHeaders`, so
 * a second `authorization` is still seen), binary `-bin` entries left out; the call's authority is the `host`, so an
 * Envoy mirror's `-shadow` authority marks a mirrored call as for REST.
 */
export function headersOf(metadata: grpc.Metadata, authority: string): { headers: IncomingHttpHeaders; rawHeaders: string[] } {
  const headers: Record<string, string> = {};
  const rawHeaders: string[] = [];
  for (const [key, values] of Object.entries(metadata.toJSON())) {
    if (key.endsWith('-bin')) continue;
    for (const value of values) {
      if (typeof value !== 'string') continue;
      rawHeaders.push(key, value);
      headers[key] = headers[key] === undefined ? value : `${headers[key]}, ${value}`;
    }
  }
  if (headers.host === undefined && authority !== '') headers.host = authority;
  return { headers, rawHeaders };
}

/** The caller's deadline as epoch ms; none when it sent no grpc-timeout. */
function deadlineOf(call: grpc.ServerUnaryCall<unknown, unknown>): number | undefined {
  const deadline = call.getDeadline();
  const ms = deadline instanceof Date ? deadline.getTime() : deadline;
  return Number.isFinite(ms) ? ms : undefined;
}

export function modelCalls(state: GatewayState, log: Logger, telemetry: DataPlaneTelemetry, overload?: Overload) {
  const { metrics, accessLog } = telemetry;

  function startSpan(method: string, model: string, headers: IncomingHttpHeaders): Span {
    return tracer().startSpan(
      `${INFERENCE_SERVICE}/${method}`,
      {
        kind: SpanKind.SERVER,
        attributes: { 'rpc.system': 'grpc', 'rpc.service': INFERENCE_SERVICE, 'rpc.method': method, 'model_gateway.model': model.slice(0, 128) },
      },
      propagation.extract(ROOT_CONTEXT, headers),
    );
  }

  /** Runs one model call through the generation's chain and answers it. */
  return async function run<Req, Res>(c: ModelCall<Req, Res>): Promise<void> {
    const started = performance.now();
    const generation = state.current;
    // Unknown model names come from clients: one label for all of them keeps the series count bounded.
    const modelLabel = generation.catalog.get(c.model) ? c.model : 'unknown';
    const inFlight = metrics?.inFlightOf(modelLabel);
    inFlight?.inc();
    const { headers, rawHeaders } = headersOf(c.call.metadata, c.call.getHost());
    let ctx: Context | undefined;
    const span = tracingEnabled() ? startSpan(c.method, c.model, headers) : undefined;
    let grpcCode: number = GRPC_STATUS.OK;
    let httpStatus = 200;
    let errorCode: string | undefined;
    try {
      // The process's memory guard applies to gRPC inference as to REST (the message is already in memory: grpc-js
      // reads it whole, bounded by server.maxBodyBytes, so admission by bytes cannot apply before it).
      if (state.draining) state.lastArrivalMs = performance.now();
      if (c.operation === 'infer') overload?.admitInference();
      const callerDeadline = deadlineOf(c.call);
      ctx = createContext({
        operation: c.operation,
        modelName: c.model,
        pathVersion: c.version === '' ? undefined : c.version,
        headers,
        rawHeaders,
        clientAddress: peerOf(c.call.getPeer()),
        ...(c.parsed ? { parsed: c.parsed() } : {}),
        ...(callerDeadline !== undefined ? { callerDeadline } : {}),
      });
      const running = ctx;
      c.call.on('cancelled', () => {
        // grpc-js cancels at the caller's deadline too: that is the deadline's failure, not the caller's going away.
        const expired = callerDeadline !== undefined && Date.now() >= callerDeadline;
        // Either way the caller's doing, not the version's: its breaker must not count it (resilience/blame.ts).
        running.abort(
          expired ? new GatewayError('GW_ERR_DEADLINE_EXCEEDED', "the call's deadline passed", { blame: 'caller' }) : new GatewayError('GW_ERR_CLIENT_CLOSED'),
        );
      });
      const chain = () => generation.pipeline(running);
      const reply = await (span ? context.with(trace.setSpan(context.active(), span), chain) : chain());
      const message = c.answer(reply, running);
      if (c.call.cancelled) return;
      c.call.sendMetadata(metadataOf(running.responseHeaders, reply.headers));
      c.callback(null, message);
    } catch (err) {
      const mapped = toGrpcStatus(err);
      grpcCode = mapped.code;
      httpStatus = mapped.httpStatus;
      errorCode = mapped.errorCode;
      const fields = {
        requestId: ctx?.requestId,
        model: c.model.slice(0, 128),
        version: ctx?.target?.version,
        code: mapped.errorCode,
        grpcStatus: mapped.name,
      };
      if (mapped.unexpected !== undefined) log.error({ ...fields, err: mapped.unexpected }, 'unexpected error');
      else if (mapped.httpStatus >= 500) log.warn({ ...fields, err: (err as Error).cause ?? undefined, msg: mapped.details }, 'request failed');
      if (!c.call.cancelled) c.callback(errorStatus(mapped, ctx?.responseHeaders));
    } finally {
      const seconds = (performance.now() - started) / 1000;
      const version = ctx?.target?.version;
      inFlight?.dec();
      metrics?.answered(modelLabel, version ?? '', c.operation, httpStatus, seconds, 'grpc');
      if (span) {
        span.setAttribute('rpc.grpc.status_code', grpcCode);
        if (version !== undefined) span.setAttribute('model_gateway.version', version);
        if (errorCode) span.setAttribute('model_gateway.error.code', errorCode);
        if (httpStatus >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
        span.end();
      }
      if (accessLog?.wants())
        accessLog({
          requestId: ctx?.requestId ?? '',
          traceId: span?.spanContext().traceId,
          method: 'POST',
          path: `/${INFERENCE_SERVICE}/${c.method}`,
          model: c.model.slice(0, 128),
          version,
          status: httpStatus,
          latencyMs: seconds * 1000,
          subject: ctx?.identity?.subject,
          shadows: ctx?.shadowCopies ?? 0,
          fallbackFrom: ctx?.responseHeaders[FALLBACK_HEADER],
          errorCode,
          protocol: 'grpc',
          grpcStatus: grpcCode,
        });
    }
  };
}
