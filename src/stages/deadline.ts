// Deadline: each inference gets its model's `timeoutMs`, counted from the moment its body has been received (like
// Envoy's route timeout) while the request already runs; on expiry the backend call is aborted through the request's
// signal and the client gets 504.

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
    async handle(ctx, next) {
      const ms = ctx.target ? timeouts.get(ctx.target.model) : undefined;
      if (ctx.operation !== 'infer' || ms === undefined) return next();
      // The request's signal narrowed to this call: aborted by the client's departure or by the deadline. Linked by
      // hand rather than AbortSignal.any, which costs a WeakRef and a finalizer per request on Node 20.
      const parent = ctx.signal;
      const deadline = new AbortController();
      const onParentAbort = () => deadline.abort(parent.reason);
      if (parent.aborted) deadline.abort(parent.reason);
      else parent.addEventListener('abort', onParentAbort, { once: true });
      let expire!: (err: GatewayError) => void;
      const expired = new Promise<never>((_, reject) => {
        expire = reject;
      });
      expired.catch(() => {}); // only ever observed through the race below
      // The clock starts once the body has arrived; the request goes on meanwhile, so a large body can stream upstream.
      let settled = false;
      let cancel: (() => void) | undefined;
      ctx.body.received().then(
        () => {
          if (settled) return;
          cancel = clock.after(ms, () => {
            const err = new GatewayError('GW_ERR_DEADLINE_EXCEEDED', `model '${ctx.modelName}' did not answer within its deadline of ${ms} ms`);
            deadline.abort(err);
            expire(err);
          });
        },
        () => {}, // an unreadable body fails the request through whoever reads it
      );
      // Every later stage and backend call sees the narrowed signal: the deadline aborts exactly this request's call.
      ctx.signal = deadline.signal;
      const reply: Promise<Reply> = next();
      try {
        // Racing as well as aborting: the 504 goes out on time even if something downstream ignores the signal.
        return await Promise.race([reply, expired]);
      } finally {
        settled = true;
        cancel?.();
        parent.removeEventListener('abort', onParentAbort);
        reply.catch(() => {}); // a call that lost the race settles later; its error was already answered
      }
    },
  };
}
