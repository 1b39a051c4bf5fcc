// Rate limit: charges every matching rule's token bucket; 429 with Retry-After when one is empty, RateLimit headers always.

import { GatewayError } from '../errors/gateway-error.js';
import type { Context, Next, Reply, Stage } from '../pipeline/stage.js';
import { appendListHeader, limitItem, policyItem } from '../ratelimit/headers.js';
import { LogThrottle } from '../telemetry/log-throttle.js';
import { bucketKey, requestCost, type CompiledRule, type Phase } from '../ratelimit/rules.js';
import { StoreUnavailableError, type BucketOutcome, type RateLimitStore } from '../ratelimit/store.js';
import type { Now } from '../core/clock.js';
import { secondsUntilAvailable } from '../ratelimit/token-bucket.js';
import type { Logger } from '../telemetry/log.js';

export interface RateLimitStageOptions {
  rules: readonly CompiledRule[];
  store: RateLimitStore;
  log: Logger;
  now?: Now;
}

type Decision =
  | { rule: CompiledRule; cost: number; kind: 'decided'; outcome: BucketOutcome }
  | { rule: CompiledRule; cost: number; kind: 'too-costly' }
  | { rule: CompiledRule; cost: number; kind: 'unavailable'; error: StoreUnavailableError };

/** One stage per phase (see rules.ts): chain.ts places `admission` after auth and `routed` after validate. */
export function rateLimitStage(phase: Phase, options: RateLimitStageOptions): Stage {
  const rules = options.rules.filter((r) => r.phase === phase);
  const name = `rate-limit:${phase}`;
  if (rules.length === 0) return { name, handle: (_ctx, next) => next() };
  const { store } = options;
  const stats = store.stats;
  const dryRunLog = new LogThrottle(options.log, options.now ?? Date.now);

  // Built once per rule: the RateLimit-Policy item never changes.
  const policyItems = new Map(rules.map((r) => [r, policyItem(r.name, r.policy)]));
  const request = (rule: CompiledRule, ctx: Context, cost: number) => ({
    key: bucketKey(rule, rule.keyOf(ctx)),
    policy: rule.policy,
    cost,
    failureMode: rule.failureMode,
  });
  /** A local store decides at once: no promise per rule or per request. */
  const decideNow = store.decideNow?.bind(store);
  const now = (rule: CompiledRule, ctx: Context): Decision => {
    const cost = requestCost(rule, ctx);
    if (cost > rule.policy.burst) return { rule, cost, kind: 'too-costly' };
    return { rule, cost, kind: 'decided', outcome: decideNow!(request(rule, ctx, cost)) };
  };
  const later = async (rule: CompiledRule, ctx: Context): Promise<Decision> => {
    const cost = requestCost(rule, ctx);
    if (cost > rule.policy.burst) return { rule, cost, kind: 'too-costly' };
    try {
      return { rule, cost, kind: 'decided', outcome: await store.take(request(rule, ctx, cost)) };
    } catch (err) {
      if (err instanceof StoreUnavailableError) return { rule, cost, kind: 'unavailable', error: err };
      throw err;
    }
  };

  /** Headers, counters and the refusal, if any, from every matched rule's decision; else the rest of the chain. */
  function conclude(ctx: Context, decisions: readonly Decision[], next: Next): Promise<Reply> {
    const policies: string[] = [];
    const limits: string[] = [];
    const refused: Extract<Decision, { kind: 'decided' }>[] = [];
    let tooCostly: Extract<Decision, { kind: 'too-costly' }> | undefined;
    let unavailable: Extract<Decision, { kind: 'unavailable' }> | undefined;
    for (const d of decisions) {
      const denied = d.kind !== 'decided' || !d.outcome.allowed;
      stats.countRule(d.rule.name, !denied ? 'allowed' : !d.rule.enforce ? 'dry_run_limited' : d.kind === 'unavailable' ? 'unavailable' : 'limited');
      if (!d.rule.enforce) {
        // Dry run: invisible to the client (no headers), counted and logged.
        if (denied) {
          stats.dryRunDenied++;
          dryRunLog.warn(
            d.rule.name,
            { dryRun: true, rule: d.rule.name, requestId: ctx.requestId, model: ctx.modelName, reason: d.kind, cost: d.cost },
            'rate-limit dry run: this request would have been refused',
          );
        }
        continue;
      }
      policies.push(policyItems.get(d.rule)!);
      if (d.kind === 'decided') {
        limits.push(limitItem(d.rule.name, d.rule.policy, d.outcome, d.cost));
        if (!d.outcome.allowed) refused.push(d);
      } else if (d.kind === 'too-costly') tooCostly = d;
      else unavailable = d;
    }
    appendListHeader(ctx.responseHeaders, 'ratelimit-policy', policies);
    appendListHeader(ctx.responseHeaders, 'ratelimit', limits);

    if (tooCostly !== undefined) {
      stats.denied++;
      throw new GatewayError(
        'GW_ERR_RATE_LIMIT_COST_TOO_HIGH',
        `this batch of ${tooCostly.cost} rows exceeds rate limit '${tooCostly.rule.name}' (at most ${tooCostly.rule.policy.burst} rows at once); split the batch`,
      );
    }
    if (refused.length > 0) {
      stats.denied++;
      const retryAfter = Math.max(...refused.map((d) => secondsUntilAvailable(d.outcome.tokens, d.cost, d.rule.policy)));
      const names = refused.map((d) => `'${d.rule.name}'`).join(', ');
      throw new GatewayError('GW_ERR_RATE_LIMITED', `rate limit ${names} exceeded; retry in ${retryAfter} s`, {
        headers: { 'retry-after': String(retryAfter) },
      });
    }
    if (unavailable !== undefined) {
      throw new GatewayError(
        'GW_ERR_RATE_LIMIT_UNAVAILABLE',
        `rate limit '${unavailable.rule.name}' cannot be checked right now (its store is unreachable); retry shortly`,
        {
          cause: unavailable.error,
          headers: { 'retry-after': '1' },
        },
      );
    }
    stats.allowed++;
    return next();
  }

  return {
    name,
    handle(ctx, next) {
      const matched = rules.filter((r) => r.matches(ctx));
      if (matched.length === 0) return next();
      if (decideNow)
        return conclude(
          ctx,
          matched.map((rule) => now(rule, ctx)),
          next,
        );
      return Promise.all(matched.map((rule) => later(rule, ctx))).then((decisions) => conclude(ctx, decisions, next));
    },
  };
}
