// One way to build a request's Context, whatever transport received it (the HTTP data plane, an ext_authz check, gRPC).

import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { RequestBody } from '../http/request-body.js';
import type { Operation } from '../protocol/oip.js';
import type { Context } from './stage.js';

const ACCEPTABLE_REQUEST_ID = /^[\x21-\x7e]{1,128}$/;

/** A sane caller-supplied request id (Envoy sets one), else a new one. */
export function requestIdFrom(header: string | string[] | undefined, generate: () => string = randomUUID): string {
  return typeof header === 'string' && ACCEPTABLE_REQUEST_ID.test(header) ? header : generate();
}

/** What a transport knows about a request before any stage runs. */
export interface ContextInit {
  readonly operation: Operation;
  readonly modelName: string;
  /** The version the request names itself (URL path, gRPC `model_version`); it always wins over routing. */
  readonly pathVersion: string | undefined;
  /** Lower-case names (HTTP headers, or gRPC metadata). Stages strip gateway-owned names from this object. */
  readonly headers: IncomingHttpHeaders;
  /** Name/value pairs as received, so a repeated Authorization is still seen; default: none. */
  readonly rawHeaders?: readonly string[];
  readonly clientAddress: string;
  /** Aborted when the caller goes away; default: never. */
  readonly signal?: AbortSignal;
  /** Default: an empty body (checks and metadata calls carry none). */
  readonly body?: RequestBody;
  /** Default: from `x-request-id`, else a new UUID. */
  readonly requestId?: string;
}

const NEVER = new AbortController().signal;

export function createContext(init: ContextInit): Context {
  return {
    requestId: init.requestId ?? requestIdFrom(init.headers['x-request-id']),
    operation: init.operation,
    modelName: init.modelName,
    pathVersion: init.pathVersion,
    headers: init.headers,
    rawHeaders: init.rawHeaders ?? [],
    clientAddress: init.clientAddress,
    signal: init.signal ?? NEVER,
    body: init.body ?? RequestBody.empty(),
    responseHeaders: {},
    upstreamHeaders: {},
  };
}
