// Rate-limit rules compiled for the request path: which requests a rule matches, its bucket key, its cost and its phase.

import { createHash } from 'node:crypto';
import type { RateLimitRule, RateLimitsConfig } from '../config/schema.js';
import type { Context, Operation } from '../pipeline/stage.js';
import type { BucketPolicy } from './token-bucket.js';

/**
 * Where a rule is decided. `admission` runs right after auth, before routing and before the body is read, so a caller
 * over its limit costs almost nothing. A rule that needs the serving version (`versions`) or the batch size
 * (`cost: rows`) is decided in `routed`, after route and validate, when both are known.
 */
export type Phase = 'admission' | 'routed';

export interface CompiledRule {
  readonly name: string;
  readonly phase: Phase;
  readonly policy: BucketPolicy;
  readonly cost: 'request' | 'rows';
  readonly failureMode: 'open' | 'closed';
  readonly enforce: boolean;
  matches(ctx: Context): boolean;
  /** The key value for this request; '' when the request has none (all such requests share one bucket). */
  keyOf(ctx: Context): string;
}

export function compileRules(config: RateLimitsConfig | undefined): CompiledRule[] {
  if (config === undefined) return [];
  return config.rules.map((rule) => compileRule(rule, config.enforce));
}

function compileRule(rule: RateLimitRule, enforceAll: boolean): CompiledRule {
  const models = rule.models ? new Set(rule.models) : undefined;
  const versions = rule.versions ? new Set(rule.versions) : undefined;
  const operations = new Set<Operation>(rule.operations);
  const phase: Phase = versions !== undefined || rule.cost === 'rows' || rule.key.version ? 'routed' : 'admission';
  return {
    name: rule.name,
    phase,
    policy: { ratePerSecond: rule.ratePerSecond, burst: rule.burst },
    cost: rule.cost,
    failureMode: rule.failureMode,
    enforce: rule.enforce ?? enforceAll,
    matches(ctx) {
      if (!operations.has(ctx.operation)) return false;
      if (models !== undefined && !models.has(ctx.modelName)) return false;
      if (versions !== undefined) return ctx.target !== undefined && versions.has(ctx.target.version);
      return true;
    },
    keyOf: keyReader(rule.key),
  };
}

/**
 * The key of a request under a rule: its sources' values in a fixed order. A claim comes with its issuer (a `sub` is
 * unique only within its issuer), so any key with a claim, or with several sources, is a JSON array — unambiguous
 * whatever the values contain. A single header or address keeps its plain value (readable store keys). '' when the
 * request has no value for any source: such requests share one bucket.
 */
function keyReader(key: RateLimitRule['key']): (ctx: Context) => string {
  const parts: ((ctx: Context) => string)[] = [];
  if (key.claim !== undefined) {
    const claim = key.claim;
    parts.push(
      (ctx) => ctx.identity?.issuer ?? '',
      (ctx) => {
        const value = ctx.identity?.claims[claim];
        return typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean' ? String(value) : '';
      },
    );
  }
  if (key.header !== undefined) {
    const header = key.header;
    parts.push((ctx) => (ctx.header(header) ?? '').trim());
  }
  if (key.clientAddress !== undefined) {
    const hops = key.clientAddress.trustedHops;
    parts.push((ctx) => clientAddress(ctx, hops));
  }
  if (key.model) parts.push((ctx) => ctx.modelName);
  if (key.version) parts.push((ctx) => ctx.target?.version ?? '');
  if (parts.length === 1) return parts[0]!;
  return (ctx) => {
    const values = parts.map((part) => part(ctx));
    return values.every((v) => v === '') ? '' : JSON.stringify(values);
  };
}

/**
 * The caller's address. With N trusted hops (proxies that append the address they saw to X-Forwarded-For), the N-th
 * entry from the right; the entries left of it were written by the client and prove nothing. Too few entries: the peer.
 */
export function clientAddress(ctx: Pick<Context, 'headers' | 'clientAddress'>, trustedHops: number): string {
  if (trustedHops === 0) return ctx.clientAddress;
  const raw = ctx.headers['x-forwarded-for'];
  const list = (Array.isArray(raw) ? raw.join(',') : (raw ?? ''))
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  return list[list.length - trustedHops] ?? ctx.clientAddress;
}

/** Tokens this request costs under the rule: 1, or the batch size (first dimension of the first input) for rows. */
export function requestCost(rule: CompiledRule, ctx: Context): number {
  if (rule.cost === 'request' || ctx.operation !== 'infer') return 1;
  const rows = ctx.inference?.inputs[0]?.shape[0];
  return rows === undefined ? 1 : Math.max(1, rows);
}

/** Store key of a bucket: readable when the value is short and plain, else hashed (values come from clients). */
export function bucketKey(rule: CompiledRule, value: string): string {
  const safe = /^[\x21-\x7e]{0,128}$/.test(value) ? value : `sha256:${createHash('sha256').update(value).digest('base64url')}`;
  return `${rule.name}:${safe}`;
}
