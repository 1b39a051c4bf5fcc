// The one registry of gateway error codes: each code's HTTP status and default client message.
// Every code is documented in the README's error table (a test checks it).

export const ERROR_CODES = {
  GW_ERR_ROUTE_NOT_FOUND: { status: 404, message: 'no such endpoint' },
  GW_ERR_METHOD_NOT_ALLOWED: { status: 405, message: 'method not allowed on this endpoint' },
  GW_ERR_BAD_JSON: { status: 400, message: 'request body is not valid JSON' },
  GW_ERR_INVALID_REQUEST: { status: 400, message: 'invalid inference request' },
  GW_ERR_BODY_TOO_LARGE: { status: 413, message: 'request body exceeds the configured limit' },
  GW_ERR_MODEL_NOT_FOUND: { status: 404, message: 'unknown model' },
  GW_ERR_VERSION_NOT_FOUND: { status: 404, message: 'unknown model version' },
  GW_ERR_MODEL_NOT_READY: { status: 503, message: 'model version is not ready' },
  GW_ERR_BACKEND_FAILED: { status: 500, message: 'inference failed in the backend' },
  GW_ERR_BACKEND_UNAVAILABLE: { status: 503, message: 'backend is unavailable' },
  GW_ERR_CLIENT_CLOSED: { status: 499, message: 'client closed the request' },
  GW_ERR_SHUTTING_DOWN: { status: 503, message: 'gateway is shutting down' },
  GW_ERR_INTERNAL: { status: 500, message: 'internal gateway error' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;
