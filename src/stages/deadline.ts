// Deadline: each inference gets its model's `timeoutMs`, counted from the moment its body has been received (like
// Envoy's route timeout) while the request already runs, or the caller's own deadline (gRPC) when that comes first
// (Envoy caps grpc-timeout by the route's the same way); on expiry the request is aborted (ctx.abort: the backend call
// in flight is cut through the request's one signal) and the client gets 504 (DEADLINE_EXCEEDED).

import { systemClock, type Clock } from '../core/clock.js';
import { GatewayError } from '../errors/gateway-error.js';
import type { Reply, Stage } from '../pipeline/stage.js';

export interface DeadlineStageOptions {
  /** Model name → deadline of one inference, ms (`models.<m>.timeoutMs`). */
  readonly timeouts: ReadonlyMap<string, number>;
  readonly clock?: Clock;
}

export function deadlineStage({ timeouts, clock = systemClock }: DeadlineStageOptions): Stage {
  return {
    name: 'deadline',
    handle(ctx, next) {
      const modelMs = ctx.target ? timeouts.get(ctx.target.model) : undefined;
      if (ctx.operation !== 'infer' || (modelMs === undefined && ctx.callerDeadline === undefined)) return next();
      return new Promise<Reply>((resolve, reject) => {
        let settled = false;
        let cancel: (() => void) | undefined;
        const settle = () => {
          settled = true;
          cancel?.();
        };
        const start = () => {
          if (settled) return;
          // The caller's deadline counts from when it sent the call: what is left of it now, if that is less.
          const callerMs = ctx.callerDeadline === undefined ? undefined : Math.max(0, ctx.callerDeadline - clock.now());
          const caller = callerMs !== undefined && (modelMs === undefined || callerMs < modelMs);
          const ms = caller ? callerMs : modelMs!;
          ctx.deadline = clock.now() + ms;
          cancel = clock.after(ms, () => {
            if (settled) return;
            settled = true;
            const err = new GatewayError(
              'GW_ERR_DEADLINE_EXCEEDED',
              caller
                ? `the call's deadline passed before model '${ctx.modelName}' answered (${Math.round(callerMs)} ms were left when its inference started)`
                : `model '${ctx.modelName}' did not answer within its deadline of ${ms} ms`,
              // A deadline the caller chose shorter than the model's says nothing about the version's health: a
              // caller sending 1 ms deadlines must not open the breaker for everyone.
              caller ? { blame: 'caller' } : {},
            );
            // The request's one signal: the backend call in flight is cut. Answering as well as aborting: the 504
            // goes out on time even if something downstream ignores the signal (its late result is dropped).
            ctx.abort(err);
            reject(err);
          });
        };
        // The clock starts once the body has arrived; the request goes on meanwhile, so a large body can stream upstream.
        // A body already complete (a gRPC message, one validation has read) starts it now: the backend call that
        // follows synchronously must see ctx.deadline.
        if (ctx.body.complete) start();
        else ctx.body.received().then(start, () => {}); // an unreadable body fails the request through whoever reads it
        next().then(
          (reply) => {
            if (settled) return;
            settle();
            resolve(reply);
          },
          (err: unknown) => {
            if (settled) return;
            settle();
            reject(err);
          },
        );
      });
    },
  };
}
