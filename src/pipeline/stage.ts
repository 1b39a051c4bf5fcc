// The stage contract: every step of the request path is a Stage composed as an onion around `next()`.

import type { IncomingHttpHeaders } from 'node:http';
import type { InferenceRequest, InferenceResult, Operation } from '../protocol/oip.js';
import type { ParsedInferRequest } from '../protocol/validate.js';
import type { ServedVersion } from '../models/catalog.js';
import type { RequestBody } from '../http/request-body.js';

export type { Operation } from '../protocol/oip.js';

/**
 * Per-request state shared by the stages, built by createContext (pipeline/context.ts) for every transport. Stages
 * add to it; only a transport (server/data-plane.ts, ext-authz/) turns it into a wire answer.
 */
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
  /**
   * The one rule for repeated headers the gateway reads (sticky and rate-limit keys, x-request-id, x-shadow): the first
   * value the client sent, never Node's comma-joined merge. A header stages strip (identity, authorization) is gone.
   */
  header(name: string): string | undefined;
  /** How many times the client sent header `name`: headers that must be unambiguous (x-model-version) refuse > 1. */
  headerLines(name: string): number;
  /**
   * The connection the request came on (HTTP: its socket), as an identity only: per-connection memos (the verified
   * token) key on it. Absent when the transport has none to offer.
   */
  readonly connection?: object;
  /** The peer address of the connection (the Envoy sidecar in a mesh; see rate-limit keys for X-Forwarded-For). */
  readonly clientAddress: string;
  /**
   * Aborted when the request must stop: the client went away, or its deadline expired (the deadline stage calls
   * abort()). One per request, made on first use; pass it to every upstream call.
   */
  readonly signal: AbortSignal;
  /** Stops the request: aborts `signal` with `reason` (the first reason wins). */
  abort(reason: unknown): void;
  /** The request body, read lazily so earlier stages can reject a request before it is read. */
  readonly body: RequestBody;
  /**
   * Set by a transport that parsed the inference request itself (gRPC): validation reads it instead of `body`, and the
   * answer is the structured `result` (the reply's body), never a remote's bytes passed through.
   */
  readonly parsed?: ParsedInferRequest;
  /** The caller's own deadline (gRPC `grpc-timeout`), epoch ms: the deadline stage applies it when it is the earlier one. */
  readonly callerDeadline?: number;
  /** Set by the deadline stage: when this inference is cut, epoch ms; remote backends that carry a deadline send it on. */
  deadline?: number;
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

/**
 * What a stage returns instead of writing to the wire: a status, a JSON-able body (or a RawBody of bytes, see
 * protocol/binary.ts) and extra headers.
 */
export interface Reply {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

export type Next = () => Promise<Reply>;

/**
 * One step of the request path. `handle` runs code before and after `next()`, which it calls at most once (compose
 * refuses a second call); the terminal stage answers without calling it. Factories take only their own options.
 */
export interface Stage {
  readonly name: string;
  handle(ctx: Context, next: Next): Promise<Reply>;
}

export type Pipeline = (ctx: Context) => Promise<Reply>;
