// One way to build a request's Context, whatever transport received it (the HTTP data plane, an ext_authz check, gRPC).

import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { RequestBody } from '../http/request-body.js';
import type { Operation } from '../protocol/oip.js';
import type { ParsedInferRequest } from '../protocol/validate.js';
import type { Context } from './stage.js';

const ACCEPTABLE_REQUEST_ID = /^[\x21-\x7e]{1,128}$/;

/**
 * The first value of header `name` (lower-case) as the client sent it. Node joins repeated lines of most headers into
 * one string (`"a, b"`), which must never become a routing or limit key: a merged value without a comma came from one
 * line; otherwise the raw lines say what the first one was (a single value may itself contain a comma).
 */
export function firstHeaderValue(headers: IncomingHttpHeaders, rawHeaders: readonly string[], name: string): string | undefined {
  const merged = headers[name];
  if (merged === undefined) return undefined;
  if (typeof merged === 'string' && !merged.includes(',')) return merged;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) if (rawHeaders[i]!.toLowerCase() === name) return rawHeaders[i + 1];
  return Array.isArray(merged) ? merged[0] : merged;
}

/** How many lines of header `name` the client sent (0 when none; from the raw lines when the transport has them). */
export function headerLineCount(headers: IncomingHttpHeaders, rawHeaders: readonly string[], name: string): number {
  const merged = headers[name];
  if (merged === undefined) return 0;
  if (Array.isArray(merged)) return merged.length;
  if (!merged.includes(',') || rawHeaders.length === 0) return 1;
  let n = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) if (rawHeaders[i]!.toLowerCase() === name) n++;
  return Math.max(n, 1);
}

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
  /** The connection the request came on (its socket), for per-connection memos. */
  readonly connection?: object;
  /** Default: an empty body (checks and metadata calls carry none). */
  readonly body?: RequestBody;
  /** Default: from `x-request-id`, else a new UUID. */
  readonly requestId?: string;
  /** An inference request the transport parsed itself (gRPC); see Context.parsed. */
  readonly parsed?: ParsedInferRequest;
  /** The caller's deadline, epoch ms (gRPC); see Context.callerDeadline. */
  readonly callerDeadline?: number;
}

/** A Context whose abort signal is made only when something asks for it (most checks and quick answers never do). */
class RequestContext implements Context {
  requestId: string;
  readonly operation: Operation;
  readonly modelName: string;
  readonly pathVersion: string | undefined;
  readonly headers: IncomingHttpHeaders;
  readonly rawHeaders: readonly string[];
  readonly clientAddress: string;
  readonly connection: object | undefined;
  readonly body: RequestBody;
  readonly parsed: ParsedInferRequest | undefined;
  readonly callerDeadline: number | undefined;
  deadline?: number;
  target?: Context['target'];
  failover?: Context['failover'];
  identity?: Context['identity'];
  inference?: Context['inference'];
  shadowCopies?: number;
  result?: Context['result'];
  readonly responseHeaders: Record<string, string> = {};
  readonly upstreamHeaders: Record<string, string> = {};
  #controller: AbortController | undefined;
  #aborted = false;
  #reason: unknown;

  constructor(init: ContextInit) {
    this.requestId = init.requestId ?? requestIdFrom(firstHeaderValue(init.headers, init.rawHeaders ?? [], 'x-request-id'));
    this.operation = init.operation;
    this.modelName = init.modelName;
    this.pathVersion = init.pathVersion;
    this.headers = init.headers;
    this.rawHeaders = init.rawHeaders ?? [];
    this.clientAddress = init.clientAddress;
    this.connection = init.connection;
    this.body = init.body ?? RequestBody.empty();
    this.parsed = init.parsed;
    this.callerDeadline = init.callerDeadline;
  }

  header(name: string): string | undefined {
    return firstHeaderValue(this.headers, this.rawHeaders, name);
  }

  headerLines(name: string): number {
    return headerLineCount(this.headers, this.rawHeaders, name);
  }

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#controller?.abort(reason);
  }
}

export function createContext(init: ContextInit): Context {
  return new RequestContext(init);
}
