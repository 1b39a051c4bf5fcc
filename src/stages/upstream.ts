// Upstream: the terminal stage; performs the operation on the chosen version's backend and shapes the OIP reply.

import { GatewayError } from '../errors/gateway-error.js';
import type { ModelCatalog } from '../models/catalog.js';
import type { Context, Reply, Stage } from '../pipeline/stage.js';
import type { ModelMetadataBody } from '../protocol/oip.js';
import { encodeInferResponse } from '../protocol/validate.js';

export function upstreamStage(catalog: ModelCatalog): Stage {
  return {
    name: 'upstream',
    async handle(ctx: Context): Promise<Reply> {
      const target = ctx.target;
      if (!target) throw new GatewayError('GW_ERR_INTERNAL', undefined, { cause: new Error('upstream ran before route') });
      switch (ctx.operation) {
        case 'model-ready': {
          const ready = target.backend.ready();
          return { status: ready ? 200 : 503, body: { name: target.model, version: target.version, ready } };
        }
        case 'model-metadata': {
          if (!target.backend.ready()) {
            throw new GatewayError('GW_ERR_MODEL_NOT_READY', `model '${target.model}' version '${target.version}' is not ready`, { headers: { 'retry-after': '1' } });
          }
          const meta = target.backend.metadata();
          const versions = [...(catalog.get(target.model)?.versions.keys() ?? [])];
          const body: ModelMetadataBody = { name: target.model, versions, platform: meta.platform, inputs: meta.inputs, outputs: meta.outputs };
          return { status: 200, body };
        }
        case 'infer': {
          const request = ctx.inference;
          if (!request) throw new GatewayError('GW_ERR_INTERNAL', undefined, { cause: new Error('upstream ran before validate') });
          const result = await target.backend.infer(request, ctx.signal);
          ctx.result = result;
          return {
            status: 200,
            body: encodeInferResponse({ modelName: target.model, modelVersion: target.version, id: request.id, outputs: result.outputs }),
          };
        }
      }
    },
  };
}
