// Validate: reads the inference body and checks it against the target version's metadata before any backend sees it,
// unless the version forwards bodies undecoded to a remote that validates them itself (and nothing else needs tensors).

import { GatewayError } from '../errors/gateway-error.js';
import type { Stage } from '../pipeline/stage.js';
import { decodeFor, needsDecoding } from './decode.js';

export interface ValidateStageOptions {
  /**
   * Models whose requests later stages need decoded even when the serving version would forward them as received
   * (shadow comparisons work on tensors; `cost: rows` rate limits charge the batch's first dimension).
   */
  readonly needsTensors: (model: string) => boolean;
}

export function validateStage({ needsTensors }: ValidateStageOptions = { needsTensors: () => false }): Stage {
  return {
    name: 'validate',
    handle(ctx, next) {
      if (ctx.operation !== 'infer') return next();
      const target = ctx.target;
      if (!target) throw new GatewayError('GW_ERR_INTERNAL', undefined, { cause: new Error('validate ran before route') });
      if (!needsDecoding(target, ctx) && !needsTensors(target.model)) return next();
      // A rollout candidate that is not ready fails in the upstream stage, where stable answers: decode for stable.
      return decodeFor(ctx, ctx.failover && !target.backend.ready() ? ctx.failover : target).then((request) => {
        ctx.inference = request;
        return next();
      });
    },
  };
}
