// Access log: one JSON line per request (pino), sampled for successes, always written for errors; never a token or a body.

import type { Logger } from 'pino';

export interface AccessEntry {
  requestId: string;
  traceId: string | undefined;
  method: string;
  path: string;
  model: string;
  version: string | undefined;
  status: number;
  latencyMs: number;
  /** The verified subject (`sub`), never the token. */
  subject: string | undefined;
  /** Shadow copies started for this request. */
  shadows: number;
  /** The version the request failed over from (x-model-fallback), if any. */
  fallbackFrom: string | undefined;
  /** Registry code of the error, for non-2xx replies. */
  errorCode: string | undefined;
}

export interface AccessLogOptions {
  enabled: boolean;
  /** Fraction of 2xx/3xx/4xx lines written (0..1); 5xx lines are always written. */
  sampleRate: number;
  rng?: () => number;
}

export type AccessLog = (entry: AccessEntry) => void;

export function createAccessLog(log: Logger, options: AccessLogOptions): AccessLog {
  if (!options.enabled) return () => {};
  const rng = options.rng ?? Math.random;
  const access = log.child({ log: 'access' });
  return (entry) => {
    if (entry.status < 500 && options.sampleRate < 1 && rng() >= options.sampleRate) return;
    access.info(
      {
        requestId: entry.requestId,
        traceId: entry.traceId,
        method: entry.method,
        path: entry.path,
        model: entry.model,
        version: entry.version,
        status: entry.status,
        latencyMs: Math.round(entry.latencyMs * 1000) / 1000,
        subject: entry.subject,
        shadows: entry.shadows,
        fallbackFrom: entry.fallbackFrom,
        errorCode: entry.errorCode,
      },
      'request',
    );
  };
}
