// Composes stages into one onion: each stage can act before and after the rest of the chain.

import { SpanStatusCode } from '@opentelemetry/api';
import { GatewayError, isGatewayError } from '../errors/gateway-error.js';
import { errorTypeOf } from '../telemetry/http-semconv.js';
import { tracer } from '../telemetry/tracing.js';
import type { Context, Pipeline, Reply, Stage } from './stage.js';

export interface ComposeOptions {
  /** Wrap every stage in a child span (`stage <name>`). Decided at build time: untraced chains pay nothing. */
  traced?: boolean;
}

/** A stage whose time (including everything after it, as in any onion) is recorded as its own span. */
function tracedStage(stage: Stage): Stage {
  return {
    name: stage.name,
    handle(ctx, next) {
      return tracer().startActiveSpan(`stage ${stage.name}`, async (span) => {
        try {
          return await stage.handle(ctx, next);
        } catch (err) {
          // Client errors are answers, not span failures; 5xx and unexpected errors mark the span.
          if (!isGatewayError(err) || err.status >= 500) {
            span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
            span.setAttribute('error.type', errorTypeOf(err));
          }
          if (isGatewayError(err)) span.setAttribute('model_gateway.error.code', err.code);
          throw err;
        } finally {
          span.end();
        }
      });
    },
  };
}

export function compose(input: readonly Stage[], options: ComposeOptions = {}): Pipeline {
  // Checked when the chain is built, never on a request: a chain needs a terminal stage, and every stage a handler.
  if (input.length === 0) throw new TypeError('compose: a chain needs at least one stage');
  for (const stage of input) {
    if (typeof stage?.name !== 'string' || typeof stage.handle !== 'function') throw new TypeError(`compose: invalid stage ${String(stage?.name)}`);
  }
  const stages = options.traced ? input.map(tracedStage) : input;
  return (ctx: Context) => {
    let reached = -1;
    const dispatch = (i: number): Promise<Reply> => {
      // next() runs the rest of the chain once; retries and failover belong to the terminal stage (Envoy's router).
      if (i <= reached)
        return Promise.reject(new GatewayError('GW_ERR_INTERNAL', undefined, { cause: new Error(`stage ${stages[i - 1]?.name} called next() twice`) }));
      reached = i;
      const stage = stages[i];
      if (stage === undefined) {
        return Promise.reject(new GatewayError('GW_ERR_INTERNAL', undefined, { cause: new Error('pipeline ended without a reply') }));
      }
      try {
        return stage.handle(ctx, () => dispatch(i + 1));
      } catch (err) {
        return Promise.reject(err);
      }
    };
    return dispatch(0);
  };
}
