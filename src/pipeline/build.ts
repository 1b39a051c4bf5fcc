// THE request chain, in order. Every model-aware request runs through exactly these stages.

import type { GatewayConfig } from '../config/schema.js';
import type { ModelCatalog } from '../models/catalog.js';
import type { Logger } from '../telemetry/log.js';
import { requestIdStage } from '../stages/request-id.js';
import { routeStage } from '../stages/route.js';
import { upstreamStage } from '../stages/upstream.js';
import { validateStage } from '../stages/validate.js';
import { compose } from './compose.js';
import type { Pipeline } from './stage.js';

export interface PipelineDeps {
  config: GatewayConfig;
  catalog: ModelCatalog;
  log: Logger;
}

/** Builds the chain for one config generation; everything a stage precomputes happens here, not per request. */
export function buildPipeline({ catalog }: PipelineDeps): Pipeline {
  return compose([
    requestIdStage(), //  x-request-id in, x-request-id out
    routeStage(catalog), // model + version → ctx.target (404s)
    validateStage(), //     body → ctx.inference, checked against the model's metadata (400/413)
    upstreamStage(catalog), // backend call → OIP reply
  ]);
}
