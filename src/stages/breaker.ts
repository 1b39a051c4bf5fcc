// Breaker: runs the backend call under the chosen version's guard (circuit breaker, then concurrency cap) and, when
// that version's breaker is open, serves the request from the model's `fallback` version instead (x-model-fallback).
// A rollout's candidate chosen by weight has stable behind it: any failure of its call is answered by stable.

import { performance } from 'node:perf_hooks';
import type { GatewayConfig } from '../config/schema.js';
import { GatewayError } from '../errors/gateway-error.js';
import type { ModelCatalog, ServedVersion } from '../models/catalog.js';
import type { Context, Next, Reply, Stage } from '../pipeline/stage.js';
import type { GuardSet } from '../resilience/registry.js';
import type { RolloutSignals } from '../rollout/signals.js';
import { VERSION_HEADER } from './route.js';
import { decodeFor, needsDecoding } from './validate.js';

/** Response header naming the version whose open breaker made the fallback version answer. */
export const FALLBACK_HEADER = 'x-model-fallback';

/** A 5xx reply (a remote's own 5xx, passed through) is a failure for the breaker even though it is returned. */
const isFailedReply = (reply: Reply): boolean => reply.status >= 500;

/** The caller's doing (bad input, gone away) or our shutdown: says nothing about the version's health. */
function notTheVersionsFault(err: unknown, ctx: Context): boolean {
  if (ctx.signal.aborted && !(err instanceof GatewayError && err.code === 'GW_ERR_DEADLINE_EXCEEDED')) return true;
  return err instanceof GatewayError && (err.status < 500 || err.code === 'GW_ERR_SHUTTING_DOWN');
}

/** A failure worth answering from another version: the backend failed, and the request is still wanted. */
function failedUpstream(err: unknown, ctx: Context): boolean {
  if (ctx.signal.aborted) return false;
  if (!(err instanceof GatewayError)) return true;
  return err.status >= 500 && err.code !== 'GW_ERR_DEADLINE_EXCEEDED' && err.code !== 'GW_ERR_SHUTTING_DOWN';
}

export function breakerStage(config: GatewayConfig, catalog: ModelCatalog, guards: GuardSet, signals?: RolloutSignals): Stage {
  const fallbacks = new Map<string, ServedVersion>();
  for (const [name, model] of Object.entries(config.models)) {
    const fallback = model.fallback === undefined ? undefined : catalog.get(name)?.versions.get(model.fallback);
    if (fallback) fallbacks.set(name, fallback);
  }

  const guarded = (target: ServedVersion, ctx: Context, next: Next): Promise<Reply> => {
    const guard = guards.get(target);
    return guard ? guard.run(ctx.signal, next, isFailedReply) : next();
  };

  return {
    name: 'breaker',
    retries: true, // a failed rollout candidate's request runs the upstream stage again, for stable
    async handle(ctx, next) {
      const primary = ctx.target;
      if (ctx.operation !== 'infer' || !primary) return next();
      let called = false;
      const once: Next = () => {
        called = true;
        return next();
      };
      /** Serves the request from `to` instead of the primary, once, under `to`'s own guard. */
      const divert = async (to: ServedVersion): Promise<Reply> => {
        ctx.target = to;
        ctx.failover = undefined;
        ctx.result = undefined;
        ctx.responseHeaders[VERSION_HEADER] = to.version;
        ctx.responseHeaders[FALLBACK_HEADER] = primary.version;
        // The other version may take different inputs, or need tensors where the primary forwarded the raw body.
        if (needsDecoding(to)) ctx.inference = await decodeFor(ctx, to);
        return guarded(to, ctx, next);
      };
      // A rollout judges each of its versions by what their callers saw: outcome and latency of the guarded call.
      const watched = signals?.watching(primary.model) === true;
      const started = watched ? performance.now() : 0;
      let reply: Reply;
      try {
        reply = await guarded(primary, ctx, once);
      } catch (err) {
        if (watched && !notTheVersionsFault(err, ctx)) signals!.recordCall(primary.model, primary.version, false, called ? performance.now() - started : undefined);
        if (ctx.failover && failedUpstream(err, ctx)) return divert(ctx.failover);
        const fallback = fallbacks.get(primary.model);
        // Only an open breaker diverts, and only before the primary's backend was called (next() runs once).
        if (called || !fallback || fallback === primary || !(err instanceof GatewayError && err.code === 'GW_ERR_CIRCUIT_OPEN')) throw err;
        return divert(fallback);
      }
      if (watched && (reply.status < 400 || reply.status >= 500)) signals!.recordCall(primary.model, primary.version, reply.status < 500, performance.now() - started);
      if (ctx.failover && isFailedReply(reply) && !ctx.signal.aborted) return divert(ctx.failover);
      return reply;
    },
  };
}
