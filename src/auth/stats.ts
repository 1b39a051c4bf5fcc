// Process-wide auth counters (verified, cached, denied, dry-run denied), exported as metrics by app/state-metrics.ts.

export class AuthStats {
  /** Tokens verified cryptographically (cache misses). */
  verified = 0;
  /** Requests answered from the verified-token cache (the per-connection memo included). */
  cacheHits = 0;
  /** Of those, the ones the connection's own memo answered (no hashing). */
  connectionHits = 0;
  /** Enforced denials by error code. */
  readonly denied: Record<string, number> = {};
  /** Denials that dry-run mode let through, by error code. */
  readonly dryRunDenied: Record<string, number> = {};

  count(into: Record<string, number>, code: string): void {
    into[code] = (into[code] ?? 0) + 1;
  }
}
