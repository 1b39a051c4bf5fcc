// Composes stages into one onion: each stage can act before and after the rest of the chain.

import { SpanStatusCode } from '@opentelemetry/api';
import { GatewayError, isGatewayError } from '../errors/gateway-error.js';
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
    ...(stage.retries ? { retries: true } : {}),
    handle(ctx, next) {
      return tracer().startActiveSpan(`stage ${stage.name}`, async (span) => {
        try {
          return await stage.handle(ctx, next);
        } catch (err) {
          // Client errors are answers, not span failures; 5xx and unexpected errors mark the span.
          if (!isGatewayError(err) || err.status >= 500) {
            span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
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
  const stages = options.traced ? input.map(tracedStage) : input;
  return (ctx: Context) => {
    let reached = -1;
    const dispatch = (i: number): Promise<Reply> => {
      if (i <= reached && !stages[i - 1]?.retries) return Promise.reject(new GatewayError('GW_ERR_INTERNAL', undefined, { cause: new Error(`stage ${stages[i - 1]?.name} called next() twice`) }));
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
