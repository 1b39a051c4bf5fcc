// Validate: reads the inference body and checks it against the target version's metadata before any backend sees it.

import { GatewayError } from '../errors/gateway-error.js';
import type { Stage } from '../pipeline/stage.js';
import { validateInferRequest } from '../protocol/validate.js';

export function validateStage(): Stage {
  return {
    name: 'validate',
    async handle(ctx, next) {
      if (ctx.operation !== 'infer') return next();
      const target = ctx.target;
      if (!target) throw new GatewayError('GW_ERR_INTERNAL', undefined, { cause: new Error('validate ran before route') });
      const body = await ctx.body.json();
      if (!target.backend.ready()) {
        throw new GatewayError('GW_ERR_MODEL_NOT_READY', `model '${target.model}' version '${target.version}' is not ready`, { headers: { 'retry-after': '1' } });
      }
      const meta = target.backend.metadata();
      ctx.inference = validateInferRequest(body, { name: target.model, inputs: meta.inputs, outputs: meta.outputs });
      return next();
    },
  };
}
