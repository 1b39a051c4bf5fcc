// Route: resolves the model and the version that will serve the request (a version in the path always wins).

import { GatewayError } from '../errors/gateway-error.js';
import type { ModelCatalog } from '../models/catalog.js';
import type { Stage } from '../pipeline/stage.js';

export function routeStage(catalog: ModelCatalog): Stage {
  return {
    name: 'route',
    handle(ctx, next) {
      const model = catalog.get(ctx.modelName);
      if (!model) throw new GatewayError('GW_ERR_MODEL_NOT_FOUND', `unknown model '${ctx.modelName}'`);
      const version = ctx.pathVersion ?? model.defaultVersion;
      const target = model.versions.get(version);
      if (!target) {
        throw new GatewayError(
          'GW_ERR_VERSION_NOT_FOUND',
          `model '${model.name}' has no version '${version}' (versions: ${[...model.versions.keys()].join(', ')})`,
        );
      }
      ctx.target = target;
      ctx.responseHeaders['x-model-version'] = target.version;
      return next();
    },
  };
}
