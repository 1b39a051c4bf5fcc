// Composes stages into one onion: each stage can act before and after the rest of the chain.

import { GatewayError } from '../errors/gateway-error.js';
import type { Context, Pipeline, Reply, Stage } from './stage.js';

export function compose(stages: readonly Stage[]): Pipeline {
  return (ctx: Context) => {
    let reached = -1;
    const dispatch = (i: number): Promise<Reply> => {
      if (i <= reached) return Promise.reject(new GatewayError('GW_ERR_INTERNAL', undefined, { cause: new Error(`stage ${stages[i - 1]?.name} called next() twice`) }));
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
