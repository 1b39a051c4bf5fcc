// One way to build a request's Context, whatever transport received it (the HTTP data plane, an ext_authz check, gRPC).

import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { RequestBody } from '../http/request-body.js';
import type { Operation } from '../protocol/oip.js';
import type { ParsedInferRequest } from '../protocol/validate.js';
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
    this.requestId = init.requestId ?? requestIdFrom(init.headers['x-request-id']);
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
