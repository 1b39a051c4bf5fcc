// Request id: keeps a sane caller-supplied x-request-id (Envoy sets one) or makes one, and echoes it on every reply.

import { randomUUID } from 'node:crypto';
import type { Stage } from '../pipeline/stage.js';

const ACCEPTABLE = /^[\x21-\x7e]{1,128}$/;

export function requestIdFrom(header: string | string[] | undefined, generate: () => string = randomUUID): string {
  return typeof header === 'string' && ACCEPTABLE.test(header) ? header : generate();
}

export function requestIdStage(generate: () => string = randomUUID): Stage {
  return {
    name: 'request-id',
    handle(ctx, next) {
      ctx.requestId = requestIdFrom(ctx.headers['x-request-id'], generate);
      ctx.responseHeaders['x-request-id'] = ctx.requestId;
      return next();
    },
  };
}
