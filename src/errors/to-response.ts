// The one mapper from any thrown error to an HTTP status, headers and a JSON `{"error": ...}` body.

import { ERROR_CODES, type ErrorCode } from './codes.js';
import { isGatewayError } from './gateway-error.js';

export interface ErrorResponse {
  status: number;
  code: ErrorCode;
  headers: Record<string, string>;
  body: { error: string };
  /** Set for errors the gateway did not expect: log it with its stack. */
  unexpected?: unknown;
}

export function toResponse(err: unknown): ErrorResponse {
  if (isGatewayError(err)) {
    const response: ErrorResponse = { status: err.status, code: err.code, headers: err.headers, body: { error: err.message } };
    // An internal error raised on purpose still means a gateway bug: log what caused it.
    if (err.code === 'GW_ERR_INTERNAL') response.unexpected = err.cause ?? err;
    return response;
  }
  const code: ErrorCode = 'GW_ERR_INTERNAL';
  return { status: ERROR_CODES[code].status, code, headers: {}, body: { error: ERROR_CODES[code].message }, unexpected: err };
}
