// GatewayError: the typed error every stage and backend throws; carries a registry code, a client message and a cause.

import { ERROR_CODES, type ErrorCode } from './codes.js';

export interface GatewayErrorOptions {
  /** The underlying error, logged but never shown to the client. */
  cause?: unknown;
  /** Extra response headers (e.g. `Allow`, `Retry-After`). */
  headers?: Record<string, string>;
  /**
   * Whose fault it is, when the code alone does not say (resilience/blame.ts): a deadline that was the caller's own is
   * the caller's, where the same code for the model's deadline is the backend's.
   */
  blame?: 'backend' | 'request' | 'caller' | 'gateway';
}

export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly blame: GatewayErrorOptions['blame'];

  /** `message` is what the client sees; it defaults to the registry's message for the code. */
  constructor(code: ErrorCode, message?: string, options: GatewayErrorOptions = {}) {
    super(message ?? ERROR_CODES[code].message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GatewayError';
    this.code = code;
    this.status = ERROR_CODES[code].status;
    this.headers = options.headers ?? {};
    this.blame = options.blame;
  }
}

export function isGatewayError(err: unknown): err is GatewayError {
  return err instanceof GatewayError;
}
