// What a transport serves: the pipeline and catalog of one config generation, swapped as a whole on reload.

import type { ModelCatalog } from '../models/catalog.js';
import type { Pipeline } from './stage.js';

/** One config generation's request path; a request runs entirely on the generation it started on. */
export interface Generation {
  pipeline: Pipeline;
  catalog: ModelCatalog;
}

export interface GatewayState {
  current: Generation;
  /** Set on SIGTERM: readiness fails and every reply closes its connection. */
  draining: boolean;
  /** While draining: when the last request arrived (performance.now() ms), for a drain that waits for quiet. */
  lastArrivalMs?: number;
}
