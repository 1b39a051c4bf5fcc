// The one mapper's gRPC face: any thrown error → the registry's gRPC status, the client message and trailing metadata.

import { ERROR_CODES, GRPC_STATUS, type ErrorCode, type GrpcStatusName } from './codes.js';
import { toResponse } from './to-response.js';

export interface GrpcErrorStatus {
  /** The gRPC status code (GRPC_STATUS). */
  code: number;
  name: GrpcStatusName;
  /** The registry code, for logs, metrics and the access log. */
  errorCode: ErrorCode;
  /** The same error's HTTP status, so metrics count both protocols in one status class. */
  httpStatus: number;
  /** The status message the client sees: the same text the REST client gets as `{"error": ...}`. */
  details: string;
  /**
   * The error's headers that mean something to a gRPC client, as trailing metadata (lower-case names): `retry-after`,
   * the RateLimit fields, `www-authenticate`. HTTP framing (`allow`, `content-type`) is left out.
   */
  metadata: Record<string, string>;
  /** From `retry-after`: how long the client should wait before trying again, ms (gRPC retry pushback, RetryInfo). */
  retryAfterMs?: number;
  /** Set for errors the gateway did not expect: log it with its stack. */
  unexpected?: unknown;
}

/** Headers that only frame an HTTP reply. */
const HTTP_ONLY = new Set(['allow', 'content-type', 'content-length', 'connection']);

/** Retry-After as delay-seconds (the gateway never sends an HTTP date). */
function retryAfterMs(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d{1,9}$/.test(value)) return undefined;
  return Number(value) * 1000;
}

export function toGrpcStatus(err: unknown): GrpcErrorStatus {
  const response = toResponse(err);
  const name = ERROR_CODES[response.code].grpc;
  const metadata: Record<string, string> = {};
  for (const [header, value] of Object.entries(response.headers)) {
    const key = header.toLowerCase();
    if (!HTTP_ONLY.has(key)) metadata[key] = value;
  }
  const mapped: GrpcErrorStatus = {
    code: GRPC_STATUS[name],
    name,
    errorCode: response.code,
    httpStatus: response.status,
    details: response.body.error,
    metadata,
  };
  const wait = retryAfterMs(metadata['retry-after']);
  if (wait !== undefined) mapped.retryAfterMs = wait;
  if (response.unexpected !== undefined) mapped.unexpected = response.unexpected;
  return mapped;
}
