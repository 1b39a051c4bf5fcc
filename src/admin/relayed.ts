// The private protocol between the workers' relay (the supervisor, server.workers > 1) and each worker's admin API:
// a per-supervisor secret that proves a call came through the relay, the console session a relayed call acts for,
// and the audit entry a worker hands back so the relay records each action once, not once per worker.

import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { AuditActor, AuditEntry } from './audit.js';
import type { ConsoleSession } from './sessions.js';

/** The environment variable the supervisor hands each worker its secret in. */
export const RELAY_SECRET_ENV = 'MODEL_GATEWAY_RELAY_SECRET';
/** Carries the secret on every relayed call; a worker with a secret answers nothing without it. */
export const RELAY_HEADER = 'x-model-gateway-relay';
/** The console session a relayed call acts for (the relay checked the cookie, its CSRF token and its origin). */
export const ACTOR_HEADER = 'x-model-gateway-actor';
/** A worker's audit entry for the call, for the relay to record. */
export const AUDIT_HEADER = 'x-model-gateway-audit';

/** What a worker records about a relayed call (the relay adds the time and the client's address). */
export type RelayedAudit = Omit<AuditEntry, 'time' | 'peer' | 'forwardedFor' | 'suppressed'>;

/** A relayed console session: who, with which role, and the static token's digest it was opened with. */
export interface RelayedSession {
  subject: string;
  role: 'read' | 'write';
  via: 'static-token' | 'jwt';
  tokenDigest?: string;
}

export function encodeHeader(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

export function decodeHeader<T>(value: string | string[] | undefined): T | undefined {
  if (typeof value !== 'string') return undefined;
  try {
    return JSON.parse(Buffer.from(value, 'base64url').toString('utf8')) as T;
  } catch {
    return undefined;
  }
}

/** The call carries this supervisor's secret (compared in constant time). */
export function fromRelay(headers: IncomingHttpHeaders, secret: string): boolean {
  const presented = headers[RELAY_HEADER];
  if (typeof presented !== 'string') return false;
  return timingSafeEqual(createHash('sha256').update(presented).digest(), createHash('sha256').update(secret).digest());
}

export function relayedSession(session: ConsoleSession): RelayedSession {
  return { subject: session.subject, role: session.role, via: session.via, ...(session.tokenDigest !== undefined ? { tokenDigest: session.tokenDigest } : {}) };
}

export function relayedActor(session: RelayedSession): AuditActor {
  return { subject: session.subject, kind: 'session', role: session.role, via: session.via };
}
