// Test stages for compose(): a bare context and a stage that logs its way in and out.

import type { Context, Stage } from '../../src/pipeline/stage.js';

/** The least a Context needs for compose() tests. */
export const bareContext = (): Context => ({ responseHeaders: {} }) as unknown as Context;

/** Logs `name:in`, calls next() once, logs `name:out`. */
export function recorder(name: string, log: string[]): Stage {
  return {
    name,
    async handle(_ctx, next) {
      log.push(`${name}:in`);
      const reply = await next();
      log.push(`${name}:out`);
      return reply;
    },
  };
}
