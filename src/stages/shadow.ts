// Shadow: mirrors a share of a model's inference traffic to other versions, fire-and-forget, and compares the answers.

import { performance } from 'node:perf_hooks';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, context, propagation, trace } from '@opentelemetry/api';
import { GatewayError } from '../errors/gateway-error.js';
import { blameOf } from '../resilience/blame.js';
import type { ModelCatalog, ServedVersion } from '../models/catalog.js';
import type { Context, Next, Reply, Stage } from '../pipeline/stage.js';
import type { InferenceResult } from '../protocol/oip.js';
import { isMirroredRequest, markShadow } from '../protocol/shadow-mark.js';
import type { ShadowPlan, ShadowTarget } from '../shadow/plan.js';
import type { ShadowRuntime } from '../shadow/runtime.js';
import { errorTypeOf } from '../telemetry/http-semconv.js';
import { tracer } from '../telemetry/tracing.js';

/**
 * `excused`: the copy failed, but not through the shadow version's fault (resilience/blame.ts): the request's own
 * (input the model answers with values JSON cannot carry, a remote's 4xx), or the gateway's (its shutdown) — no
 * verdict on the shadow, so neither an error nor a rollout sample is recorded.
 */
type ShadowAnswer = { ok: true; ms: number; result: InferenceResult } | { ok: false; ms: number; timedOut: boolean; excused?: boolean };

/** The plan's targets plus the rollout's candidate while the rollout mirrors to it. */
function targetsOf(plan: ShadowPlan, ctx: Context, catalog: ModelCatalog, runtime: ShadowRuntime): readonly ShadowTarget[] {
  const rollout = runtime.rolloutTarget(ctx.modelName);
  const served = rollout && catalog.get(ctx.modelName)?.versions.get(rollout.version);
  return served ? [...plan.targets, { version: rollout.version, percent: rollout.percent, served }] : plan.targets;
}

export interface ShadowStageOptions {
  /** Model name → its shadow plan (shadow/plan.ts); models without one pass straight through. */
  readonly plans: ReadonlyMap<string, ShadowPlan>;
  readonly catalog: ModelCatalog;
  /** Shadow state shared by every generation: stats, caps, the disagreement log, rollout targets. */
  readonly runtime: ShadowRuntime;
}

export function shadowStage({ plans, catalog, runtime }: ShadowStageOptions): Stage {
  /** One shadow call with its own deadline; never rejects. Frees the slot when it settles or times out. */
  async function callShadow(ctx: Context, target: ShadowTarget, plan: ShadowPlan): Promise<ShadowAnswer> {
    const controller = runtime.callController();
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    // Racing our own timer (not only aborting) frees the slot on time even if a backend ignores the signal.
    let timedOut = false;
    const deadline = new Promise<ShadowAnswer>((resolve) => {
      timer = setTimeout(() => {
        timedOut = true;
        controller.abort(new GatewayError('GW_ERR_BACKEND_UNAVAILABLE', `shadow call timed out after ${plan.timeoutMs} ms`));
        resolve({ ok: false, ms: performance.now() - started, timedOut: true });
      }, plan.timeoutMs);
    });
    // The copy is its own trace (it must not stretch the primary's), linked to the primary's span.
    const primarySpan = trace.getActiveSpan()?.spanContext();
    const span = tracer().startSpan(
      `shadow ${ctx.modelName}:${target.version}`,
      {
        kind: SpanKind.INTERNAL,
        links: primarySpan && trace.isSpanContextValid(primarySpan) ? [{ context: primarySpan }] : [],
        attributes: {
          'model_gateway.model': ctx.modelName,
          'model_gateway.version': target.version,
          'model_gateway.shadow': true,
          'model_gateway.request_id': ctx.requestId,
        },
      },
      ROOT_CONTEXT,
    );
    // The trace context a remote shadow receives. Tracing on: the copy's own span (the caller's baggage kept). Tracing
    // off (a no-op span, no valid context): the caller's context unchanged, as the primary receives it.
    const caller = propagation.extract(ROOT_CONTEXT, ctx.headers);
    const callContext = trace.isSpanContextValid(span.spanContext()) ? trace.setSpan(caller, span) : caller;
    let dispatched: Promise<InferenceResult>;
    try {
      dispatched = context.with(callContext, () => target.served.backend.infer(markShadow(ctx.inference!), controller.signal));
    } catch (err) {
      dispatched = Promise.reject(err); // a backend that throws instead of rejecting must not fail the primary
    }
    const call = dispatched.then(
      (result): ShadowAnswer => {
        span.end();
        return { ok: true, ms: performance.now() - started, result };
      },
      (err: unknown): ShadowAnswer => {
        span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
        // Abandoned at the shadow timeout, or failed on its own (the gateway's error code, or the error's type).
        span.setAttribute('error.type', timedOut ? 'timeout' : errorTypeOf(err));
        span.end();
        return { ok: false, ms: performance.now() - started, timedOut: false, excused: blameOf(err) !== 'backend' };
      },
    );
    try {
      return await Promise.race([call, deadline]);
    } finally {
      clearTimeout(timer);
      runtime.callDone(controller);
      runtime.release(ctx.modelName);
    }
  }

  async function compareLater(
    ctx: Context,
    primaryTarget: ServedVersion,
    target: ShadowTarget,
    plan: ShadowPlan,
    primary: Promise<{ ok: boolean; ms: number }>,
    shadow: Promise<ShadowAnswer>,
  ): Promise<void> {
    const [answered, s] = await Promise.all([primary, shadow]);
    // Failed through no fault of the shadow version (the request's, or our shutdown): neither an error of the shadow
    // nor a sample for a rollout (its copy stays counted as mirrored).
    if (!s.ok && s.excused === true) return;
    // Let the primary's reply be written before spending event-loop time on the comparison.
    await new Promise<void>((resolve) => setImmediate(resolve));
    const primaryVersion = primaryTarget.version;
    // A reply from the model's fallback version (the primary's breaker was open) is not the primary's answer.
    const p = { ok: answered.ok && ctx.target === primaryTarget, ms: answered.ms };
    const outputs = ctx.result?.outputs;
    // A rollout's candidate is judged on these copies for errors (a failure or timeout counts against it), never for
    // latency: the copy was dispatched after its primary and competed with it, so only real calls are timed.
    runtime.signals?.recordCopy(ctx.modelName, target.version, s.ok);
    const comparison = p.ok && s.ok && outputs ? plan.comparator.compare(outputs, s.result.outputs) : undefined;
    if (comparison) runtime.signals?.recordComparison(ctx.modelName, primaryVersion, target.version, comparison.agreed);
    runtime.stats.record(ctx.modelName, primaryVersion, target.version, {
      kind: 'settled',
      primary: { ok: p.ok, ms: p.ms },
      shadow: s.ok ? { ok: true, ms: s.ms } : { ok: false, ms: s.ms, timedOut: s.timedOut },
      ...(comparison ? { comparison } : {}),
    });
    if (comparison && !comparison.agreed && s.ok && outputs) {
      runtime.disagreementLog?.record({
        requestId: ctx.requestId,
        model: ctx.modelName,
        primaryVersion,
        shadowVersion: target.version,
        comparison: comparison.outputs,
        primary: outputs,
        shadow: s.result.outputs,
        inputs: ctx.inference!.inputs,
      });
    }
  }

  return {
    name: 'shadow',
    handle(ctx: Context, next: Next): Promise<Reply> {
      const plan = plans.get(ctx.modelName);
      if (!plan || ctx.operation !== 'infer' || !ctx.target || !ctx.inference || isMirroredRequest(ctx.headers, (name) => ctx.header(name))) return next();
      const primaryTarget = ctx.target;
      const primaryVersion = primaryTarget.version;
      const chosen = targetsOf(plan, ctx, catalog, runtime).filter((t) => t.version !== primaryVersion && runtime.rng() * 100 < t.percent);
      if (chosen.length === 0) return next();

      // The primary's chain runs first; its reply never waits for the copies.
      const started = performance.now();
      const reply = next();
      const primary = reply.then(
        () => ({ ok: true, ms: performance.now() - started }),
        () => ({ ok: false, ms: performance.now() - started }),
      );
      for (const target of chosen) {
        if (!runtime.tryAcquire(ctx.modelName, plan.maxConcurrent)) {
          runtime.stats.record(ctx.modelName, primaryVersion, target.version, { kind: 'dropped' });
          continue;
        }
        runtime.stats.record(ctx.modelName, primaryVersion, target.version, { kind: 'started' });
        ctx.shadowCopies = (ctx.shadowCopies ?? 0) + 1;
        // Dispatched on the next turn of the event loop: by then the primary's backend call has been made (its
        // chain has only microtasks before it), so the copy's own work — a tensor copy to a worker, a JSON body for a
        // remote — never runs ahead of the primary's.
        const copy = new Promise<void>((resolve) => setImmediate(resolve)).then(() => callShadow(ctx, target, plan));
        runtime.track(compareLater(ctx, primaryTarget, target, plan, primary, copy));
      }
      return reply;
    },
  };
}
