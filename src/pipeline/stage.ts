// The stage contract: every step of the request path is a Stage composed as an onion around `next()`.

import type { IncomingHttpHeaders } from 'node:http';
import type { InferenceRequest, InferenceResult } from '../protocol/oip.js';
import type { ServedVersion } from '../models/catalog.js';
import type { RequestBody } from '../http/request-body.js';

/** The model-aware operations that run through the pipeline (health and server metadata do not). */
export type Operation = 'infer' | 'model-metadata' | 'model-ready';

/** Per-request state shared by the stages. Stages add to it; only server.ts turns it into HTTP. */
export interface Context {
  requestId: string;
  readonly operation: Operation;
  readonly modelName: string;
  /** The version named in the URL path, if any; it always wins over routing. */
  readonly pathVersion: string | undefined;
  readonly headers: IncomingHttpHeaders;
  /**
   * The request's raw header lines (name, value, name, value, ...), for checks Node's merged `headers` hide, such as
   * a repeated Authorization header. Never forward from it: stages strip from `headers`.
   */
  readonly rawHeaders: readonly string[];
  /** The peer address of the connection (the Envoy sidecar in a mesh; see rate-limit keys for X-Forwarded-For). */
  readonly clientAddress: string;
  /**
   * Aborted when the client goes away or the request must stop; pass it to every upstream call. The deadline stage
   * replaces it with one that also aborts when the model's deadline expires, so read it when calling, not earlier.
   */
  signal: AbortSignal;
  /** The request body, read lazily so earlier stages can reject a request before it is read. */
  readonly body: RequestBody;
  /** Set by the route stage: the model version that serves this request. */
  target?: ServedVersion;
  /** Set by the route stage when a rollout's candidate was chosen by weight: the version that answers if it fails. */
  failover?: ServedVersion;
  /** Set by the auth stage: the verified caller (absent when auth is off or the caller is anonymous). */
  identity?: Identity;
  /** Set by the validate stage: the decoded, validated inference request. */
  inference?: InferenceRequest;
  /** Set by the shadow stage: how many shadow copies this request started (for the access log). */
  shadowCopies?: number;
  /** Set by the upstream stage: the decoded outputs of the primary call (before JSON encoding). */
  result?: InferenceResult;
  /** Headers every reply for this request carries, successful or not (e.g. x-request-id, x-model-version). */
  readonly responseHeaders: Record<string, string>;
  /**
   * Gateway-owned headers a remote backend must send upstream (e.g. the verified identity). Only stages write it,
   * never from client input; client copies of these names are removed from `headers` by the auth stage.
   */
  readonly upstreamHeaders: Record<string, string>;
}

/** A verified caller: who it is and what its token says. */
export interface Identity {
  /** The token's issuer (`iss`). */
  issuer: string;
  /** The token's subject (`sub`). */
  subject: string;
  /** Scopes from the `scope` (space-separated) or `scp` claim. */
  scopes: ReadonlySet<string>;
  /** Every verified claim. */
  claims: Readonly<Record<string, unknown>>;
}

/** What a stage returns instead of writing HTTP: a status, a JSON-able body (or a RawBody) and extra headers. */
export interface Reply {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

/**
 * A reply body that is already bytes (binary tensor responses): server.ts writes the chunks in order, uncopied, with
 * the reply's own `content-type` (default application/octet-stream) instead of JSON-encoding the body.
 */
export class RawBody {
  readonly byteLength: number;
  constructor(readonly chunks: readonly Uint8Array[]) {
    let n = 0;
    for (const c of chunks) n += c.byteLength;
    this.byteLength = n;
  }
}

export type Next = () => Promise<Reply>;

export interface Stage {
  readonly name: string;
  /**
   * This stage may call next() again once the previous call has settled, running the rest of the chain anew (the
   * breaker stage re-serves a failed rollout candidate's request from stable). Any other stage calling it twice is a bug.
   */
  readonly retries?: boolean;
  handle(ctx: Context, next: Next): Promise<Reply>;
}

export type Pipeline = (ctx: Context) => Promise<Reply>;
