// Breaker: runs the backend call under the chosen version's guard (circuit breaker, then concurrency cap) and, when
// that version's breaker is open, serves the request from the model's `fallback` version instead (x-model-fallback).

import type { GatewayConfig } from '../config/schema.js';
import { GatewayError } from '../errors/gateway-error.js';
import type { ModelCatalog, ServedVersion } from '../models/catalog.js';
import type { Context, Next, Reply, Stage } from '../pipeline/stage.js';
import type { GuardSet } from '../resilience/registry.js';
import { VERSION_HEADER } from './route.js';
import { decodeFor, needsDecoding } from './validate.js';

/** Response header naming the version whose open breaker made the fallback version answer. */
export const FALLBACK_HEADER = 'x-model-fallback';

/** A 5xx reply (a remote's own 5xx, passed through) is a failure for the breaker even though it is returned. */
const isFailedReply = (reply: Reply): boolean => reply.status >= 500;

export function breakerStage(config: GatewayConfig, catalog: ModelCatalog, guards: GuardSet): Stage {
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
    async handle(ctx, next) {
      const primary = ctx.target;
      if (ctx.operation !== 'infer' || !primary) return next();
      let called = false;
      const once: Next = () => {
        called = true;
        return next();
      };
      try {
        return await guarded(primary, ctx, once);
      } catch (err) {
        const fallback = fallbacks.get(primary.model);
        // Only an open breaker diverts, and only before the primary's backend was called (next() runs once).
        if (called || !fallback || fallback === primary || !(err instanceof GatewayError && err.code === 'GW_ERR_CIRCUIT_OPEN')) throw err;
        ctx.target = fallback;
        ctx.responseHeaders[VERSION_HEADER] = fallback.version;
        ctx.responseHeaders[FALLBACK_HEADER] = primary.version;
        // The fallback may take different inputs, or need tensors where the primary forwarded the raw body.
        if (needsDecoding(fallback)) ctx.inference = await decodeFor(ctx, fallback);
        return guarded(fallback, ctx, next);
      }
    },
  };
}
