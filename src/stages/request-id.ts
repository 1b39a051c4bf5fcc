// Request id: every reply carries the request's id (the caller's sane x-request-id, or one createContext made).

import type { Stage } from '../pipeline/stage.js';

export function requestIdStage(): Stage {
  return {
    name: 'request-id',
    handle(ctx, next) {
      ctx.responseHeaders['x-request-id'] = ctx.requestId;
      return next();
    },
  };
}
