// Validate: reads the inference body and checks it against the target version's metadata before any backend sees it,
// unless the version forwards bodies undecoded to a remote that validates them itself (and nothing else needs tensors).

import { forwardingBackend } from '../backends/backend.js';
import type { GatewayConfig } from '../config/schema.js';
import { GatewayError } from '../errors/gateway-error.js';
import type { ServedVersion } from '../models/catalog.js';
import type { Context, Stage } from '../pipeline/stage.js';
import type { InferenceRequest } from '../protocol/oip.js';
import { BINARY_HEADER, binaryHeaderLength, binaryInputSlices, binaryOutputsOf, decodeBinaryData, splitBinaryBody } from '../protocol/binary.js';
import { validateInferRequest } from '../protocol/validate.js';

/** False for a remote version with `validate: remote`: its body goes upstream as received, never parsed here. */
export function needsDecoding(target: ServedVersion): boolean {
  return forwardingBackend(target.backend)?.passThrough !== true;
}

/** The request body decoded and validated against `target`'s metadata (400 for any mismatch, 503 if not loaded). */
export async function decodeFor(ctx: Context, target: ServedVersion): Promise<InferenceRequest> {
  // Header checked before the body is read: a malformed value is refused without reading a large body.
  const jsonLength = binaryHeaderLength(ctx.headers[BINARY_HEADER]);
  const split = jsonLength === undefined ? undefined : splitBinaryBody(await ctx.body.bytes(), jsonLength);
  const body = split === undefined ? await ctx.body.json() : split.json;
  if (!target.backend.ready()) {
    throw new GatewayError('GW_ERR_MODEL_NOT_READY', `model '${target.model}' version '${target.version}' is not ready`, { headers: { 'retry-after': '1' } });
  }
  const meta = target.backend.metadata();
  const signature = { name: target.model, inputs: meta.inputs, outputs: meta.outputs };
  const slices = split === undefined ? undefined : binaryInputSlices(body, split.binary);
  const request = validateInferRequest(
    body,
    signature,
    slices === undefined
      ? {}
      : {
          externalData: (index, input) => {
            const bytes = slices.get(index);
            return bytes === undefined ? undefined : decodeBinaryData(input.datatype, input.shape, bytes, input.where);
          },
        },
  );
  // A plain JSON request may ask for binary outputs too.
  const binaryOutputs = binaryOutputsOf(body);
  if (binaryOutputs !== undefined) request.binaryOutputs = binaryOutputs;
  return request;
}

/**
 * Models whose requests other stages need decoded even when the serving version would forward them as received:
 * shadow copies and comparisons work on tensors, and `cost: rows` rate limits charge the batch's first dimension.
 */
export function modelsNeedingTensors(config: GatewayConfig): (model: string) => boolean {
  const names = new Set(
    Object.entries(config.models)
      .filter(([, model]) => model.rollout !== undefined || model.shadow?.targets.some((t) => t.percent > 0))
      .map(([name]) => name),
  );
  let all = false;
  for (const rule of config.rateLimits?.rules ?? []) {
    if (rule.cost !== 'rows') continue;
    if (rule.models === undefined) all = true;
    else for (const model of rule.models) names.add(model);
  }
  return (model) => all || names.has(model);
}

/** `config` tells which models other stages need decoded (see modelsNeedingTensors); without it, only the backend decides. */
export function validateStage(config?: GatewayConfig): Stage {
  const needTensors = config ? modelsNeedingTensors(config) : () => false;
  return {
    name: 'validate',
    async handle(ctx, next) {
      if (ctx.operation !== 'infer') return next();
      const target = ctx.target;
      if (!target) throw new GatewayError('GW_ERR_INTERNAL', undefined, { cause: new Error('validate ran before route') });
      if (needsDecoding(target) || needTensors(target.model)) {
        // A rollout candidate that is not ready fails in the breaker stage, where stable answers: decode for stable.
        ctx.inference = await decodeFor(ctx, ctx.failover && !target.backend.ready() ? ctx.failover : target);
      }
      return next();
    },
  };
}
