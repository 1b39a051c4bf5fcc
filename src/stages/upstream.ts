// Upstream: the terminal stage (Envoy's router). It answers metadata and readiness, and runs each inference on the
// chosen version under that version's guard (circuit breaker, then concurrency cap). Failover lives here, and only
// here: when the chosen version's breaker is open the model's `fallback` answers (x-model-fallback), and a rollout's
// candidate chosen by weight has stable behind it for any failure of its call.

import { performance } from 'node:perf_hooks';
import type { RetryBudget } from '../backends/retry-budget.js';
import { GatewayError } from '../errors/gateway-error.js';
import { blameOf } from '../resilience/blame.js';
import type { ModelCatalog, ServedVersion } from '../models/catalog.js';
import type { Context, Reply, Stage } from '../pipeline/stage.js';
import { FALLBACK_HEADER, VERSION_HEADER } from '../protocol/headers.js';
import type { ModelMetadataBody } from '../protocol/oip.js';
import type { GuardSet } from '../resilience/registry.js';
import type { RolloutSignals } from '../rollout/signals.js';
import { decodeFor, needsDecoding } from './decode.js';
import { inferOn } from './upstream-call.js';

export interface UpstreamStageOptions {
  readonly catalog: ModelCatalog;
  /** Each served version's breaker and concurrency cap; a version without one is called unguarded. */
  readonly guards: GuardSet;
  /**
   * Model → the version that serves requests while the chosen version's breaker is open, or whose backend could not
   * be reached (`models.<m>.fallback`).
   */
  readonly fallbacks: ReadonlyMap<string, ServedVersion>;
  /** Model → how many unreachable calls its fallback may re-serve (`models.<m>.fallbackBudget`); absent: none. */
  readonly fallbackBudgets?: ReadonlyMap<string, RetryBudget>;
  /** Samples of running progressive rollouts: each guarded call of a watched model is one. */
  readonly signals?: RolloutSignals;
}

/** A 5xx reply (a remote's own 5xx, passed through) is a failure for the breaker even though it is returned. */
const isFailedReply = (reply: Reply): boolean => reply.status >= 500;

/** The caller's doing (bad input, gone away, its own deadline) or the gateway's: says nothing about the version's health. */
function notTheVersionsFault(err: unknown, ctx: Context): boolean {
  if (ctx.signal.aborted && blameOf(ctx.signal.reason) !== 'backend') return true;
  return blameOf(err) !== 'backend';
}

/**
 * A failure worth answering from another version: the backend failed (or something unexpected broke on the way: the
 * client is better served by stable than by a 500), and the request is still wanted.
 */
function failedUpstream(err: unknown, ctx: Context): boolean {
  if (ctx.signal.aborted) return false;
  if (!(err instanceof GatewayError)) return true;
  return blameOf(err) === 'backend' && err.code !== 'GW_ERR_DEADLINE_EXCEEDED';
}

function notReady(target: ServedVersion): GatewayError {
  return new GatewayError('GW_ERR_MODEL_NOT_READY', `model '${target.model}' version '${target.version}' is not ready`, { headers: { 'retry-after': '1' } });
}

export function upstreamStage({ catalog, guards, fallbacks, fallbackBudgets, signals }: UpstreamStageOptions): Stage {
  const guarded = (target: ServedVersion, ctx: Context, call: () => Promise<Reply>): Promise<Reply> => {
    const guard = guards.get(target);
    return guard ? guard.run(ctx.signal, call, isFailedReply) : call();
  };

  async function infer(ctx: Context, primary: ServedVersion): Promise<Reply> {
    let called = false;
    const callPrimary = (): Promise<Reply> => {
      called = true;
      return inferOn(ctx, primary);
    };
    /** Serves the request from `to` instead of the primary, once, under `to`'s own guard. */
    const divert = async (to: ServedVersion): Promise<Reply> => {
      ctx.target = to;
      ctx.failover = undefined;
      ctx.result = undefined;
      ctx.responseHeaders[VERSION_HEADER] = to.version;
      ctx.responseHeaders[FALLBACK_HEADER] = primary.version;
      // The other version may take different inputs, or need tensors where the primary forwarded the raw body.
      if (needsDecoding(to, ctx)) ctx.inference = await decodeFor(ctx, to);
      return guarded(to, ctx, () => inferOn(ctx, to));
    };
    // A rollout judges each of its versions by what their callers saw: outcome and latency of the guarded call.
    const watched = signals?.watching(primary.model) === true;
    const started = watched ? performance.now() : 0;
    const fallback = fallbacks.get(primary.model);
    const budget = fallback !== undefined ? fallbackBudgets?.get(primary.model) : undefined;
    budget?.recordRequest();
    let reply: Reply;
    try {
      reply = await guarded(primary, ctx, callPrimary);
    } catch (err) {
      if (watched && !notTheVersionsFault(err, ctx))
        signals!.recordCall(primary.model, primary.version, false, called ? performance.now() - started : undefined);
      if (ctx.failover && failedUpstream(err, ctx)) return divert(ctx.failover);
      if (!fallback || fallback === primary || !(err instanceof GatewayError)) throw err;
      // An open breaker diverts before the primary's backend is called; a call that never got an answer (refused,
      // reset, connect timeout) is re-served at once — inference has no side effects — within the request's deadline
      // (the same signal) and the model's budget, as Envoy's `retry_on: connect-failure` to another host.
      if (err.code === 'GW_ERR_CIRCUIT_OPEN' && !called) return divert(fallback);
      if (err.code === 'GW_ERR_BACKEND_UNREACHABLE' && !ctx.signal.aborted && budget?.tryRetry() === true) return divert(fallback);
      throw err;
    }
    if (watched && (reply.status < 400 || reply.status >= 500))
      signals!.recordCall(primary.model, primary.version, reply.status < 500, performance.now() - started);
    if (ctx.failover && isFailedReply(reply) && !ctx.signal.aborted) return divert(ctx.failover);
    return reply;
  }

  return {
    name: 'upstream',
    async handle(ctx: Context): Promise<Reply> {
      const target = ctx.target;
      if (!target) throw new GatewayError('GW_ERR_INTERNAL', undefined, { cause: new Error('upstream ran before route') });
      const backend = target.backend;
      switch (ctx.operation) {
        case 'model-ready': {
          // A remote is asked now (its own ready endpoint); an in-process backend knows.
          const ready = backend.checkReady ? await backend.checkReady(ctx.signal) : backend.ready();
          return { status: ready ? 200 : 503, body: { name: target.model, version: target.version, ready } };
        }
        case 'model-metadata': {
          if (!backend.ready()) throw notReady(target);
          const meta = backend.metadata();
          const versions = [...(catalog.get(target.model)?.versions.keys() ?? [])];
          const body: ModelMetadataBody = { name: target.model, versions, platform: meta.platform, inputs: meta.inputs, outputs: meta.outputs };
          return { status: 200, body };
        }
        case 'infer':
          return infer(ctx, target);
      }
    },
  };
}
