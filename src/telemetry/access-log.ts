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
  /** The protocol the request came in on; absent: `http` (the writer fills it in). */
  protocol?: 'http' | 'grpc';
  /** gRPC calls: the status code answered (`status` is the same answer's HTTP status). */
  grpcStatus?: number;
}

export interface AccessLogOptions {
  enabled: boolean;
  /** Fraction of 2xx/3xx/4xx lines written (0..1); 5xx lines are always written. */
  sampleRate: number;
  rng?: () => number;
}

/** Writes one entry (sampled); `wants` says whether any entry can be written now, before one is built. */
export type AccessLog = ((entry: AccessEntry) => void) & { wants(): boolean };

export function createAccessLog(log: Logger, options: AccessLogOptions): AccessLog {
  if (!options.enabled) return Object.assign(() => {}, { wants: () => false });
  const rng = options.rng ?? Math.random;
  const access = log.child({ log: 'access' });
  const write = (entry: AccessEntry) => {
    if (entry.status < 500 && options.sampleRate < 1 && rng() >= options.sampleRate) return;
    // The entry is the line: written as built (fields in AccessEntry's order), latency to the microsecond.
    entry.latencyMs = Math.round(entry.latencyMs * 1000) / 1000;
    entry.protocol ??= 'http';
    access.info(entry, 'request');
  };
  // Lines are info: at a quieter level nothing is written, so the data plane need not build an entry at all.
  return Object.assign(write, { wants: () => access.isLevelEnabled('info') });
}
