// Who is to blame for a failed call, decided once for breakers, rollout gates, failover and shadow statistics: only
// the backend's own failures may count against it, so no caller can open a version's breaker for everyone.

import type { ErrorCode } from '../errors/codes.js';
import { GatewayError } from '../errors/gateway-error.js';

/**
 * `backend`: the version failed (connection refused or reset, its 5xx, its timeout, the model's deadline, its open
 *   breaker).
 * `request`: the request itself (invalid input, values the wire format cannot carry, a remote's 4xx).
 * `caller`: the caller went away, or its own deadline (gRPC) ran out.
 * `gateway`: the gateway refused or stopped the call itself (shutdown, overload, an open breaker, a bug).
 */
export type Blame = 'backend' | 'request' | 'caller' | 'gateway';

/**
 * The gateway's own refusals and failures: they say nothing about the backend's health. (An open breaker is not one
 * of them: it speaks for the backend's recent failures, so a rollout candidate refused by it has failed its caller.)
 */
const GATEWAY_OWN: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'GW_ERR_SHUTTING_DOWN',
  'GW_ERR_OVERLOADED',
  'GW_ERR_BODY_BUDGET_FULL',
  'GW_ERR_MEMORY_PRESSURE',
  'GW_ERR_INTERNAL',
]);

/** Whom `err` is to blame on. A GatewayError created with an explicit `blame` (the caller's own deadline) keeps it. */
export function blameOf(err: unknown): Blame {
  if (!(err instanceof GatewayError)) return 'gateway'; // a bug, never the backend's doing
  if (err.blame !== undefined) return err.blame;
  if (err.code === 'GW_ERR_CLIENT_CLOSED') return 'caller';
  if (GATEWAY_OWN.has(err.code)) return 'gateway';
  return err.status < 500 ? 'request' : 'backend';
}
