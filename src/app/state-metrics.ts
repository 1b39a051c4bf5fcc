// Metrics read at scrape time from the gateway's own state (breakers, shedding, rate limits, auth, shadows): zero hot-path cost.

import { Counter, Gauge } from 'prom-client';
import type { AuthStats } from '../auth/stats.js';
import type { RateLimitStats } from '../ratelimit/store.js';
import type { GuardRegistry } from '../resilience/registry.js';
import type { GateResult, RolloutStatus } from '../rollout/machine.js';
import type { RolloutView } from '../rollout/view.js';
import type { ShadowStats } from '../shadow/stats.js';
import type { GatewayMetrics } from '../telemetry/metrics.js';

export interface GatewayState {
  guards: GuardRegistry;
  rateLimits: RateLimitStats;
  auth: AuthStats;
  shadows: ShadowStats;
}

/** Values of the breaker-state enum's `state` label; `disabled` (no breaker configured) reads as closed: traffic always flows. */
const BREAKER_STATES = ['closed', 'open', 'half-open'] as const;
const BREAKER_STATE_LABEL = { disabled: 'closed', closed: 'closed', 'half-open': 'half-open', open: 'open' } as const;

/**
 * Monotonic totals kept elsewhere are exported as Prometheus counters by re-setting them at collect time
 * (prom-client counters only increment, so reset + inc to the current total).
 */
function counterFrom<L extends string>(
  metrics: GatewayMetrics,
  name: string,
  help: string,
  labelNames: readonly L[],
  read: () => Iterable<[Partial<Record<L, string>>, number]>,
): void {
  new Counter({
    name,
    help,
    labelNames,
    registers: [metrics.registry],
    collect() {
      this.reset();
      for (const [labels, value] of read()) this.inc(labels, value);
    },
  });
}

function gaugeFrom<L extends string>(
  metrics: GatewayMetrics,
  name: string,
  help: string,
  labelNames: readonly L[],
  read: () => Iterable<[Partial<Record<L, string>>, number]>,
): void {
  new Gauge({
    name,
    help,
    labelNames,
    registers: [metrics.registry],
    collect() {
      this.reset();
      for (const [labels, value] of read()) this.set(labels, value);
    },
  });
}

function* guardEntries(guards: GuardRegistry) {
  for (const [model, versions] of Object.entries(guards.snapshot())) {
    for (const [version, snap] of Object.entries(versions)) yield { model, version, snap };
  }
}

function* shadowPairs(shadows: ShadowStats) {
  for (const model of shadows.models()) yield* shadows.forModel(model);
}

export function registerStateMetrics(metrics: GatewayMetrics, state: GatewayState): void {
  const { guards, rateLimits, auth, shadows } = state;

  gaugeFrom(
    metrics,
    'model_gateway_breaker_state',
    'Circuit breaker state per version: 1 for the current state (closed, open, half-open; no breaker reads as closed), 0 for the others.',
    ['model', 'version', 'state'],
    function* () {
      for (const { model, version, snap } of guardEntries(guards)) {
        const current = BREAKER_STATE_LABEL[snap.breaker.state];
        for (const state of BREAKER_STATES) yield [{ model, version, state }, state === current ? 1 : 0];
      }
    },
  );
  counterFrom(metrics, 'model_gateway_breaker_opened_total', 'Times a version’s circuit breaker opened.', ['model', 'version'], function* () {
    for (const { model, version, snap } of guardEntries(guards)) yield [{ model, version }, snap.breaker.opened];
  });
  gaugeFrom(metrics, 'model_gateway_backend_in_flight', 'Requests admitted to a version’s backend and not yet answered.', ['model', 'version'], function* () {
    for (const { model, version, snap } of guardEntries(guards)) yield [{ model, version }, snap.limits.inFlight];
  });
  counterFrom(metrics, 'model_gateway_shed_total', 'Requests refused with 503 by a version’s concurrency cap or queue.', ['model', 'version'], function* () {
    for (const { model, version, snap } of guardEntries(guards)) yield [{ model, version }, snap.limits.shed];
  });

  counterFrom(
    metrics,
    'model_gateway_ratelimit_decisions_total',
    'Rate-limit decisions per rule: allowed, limited, dry_run_limited, unavailable.',
    ['rule', 'decision'],
    function* () {
      for (const [rule, counts] of rateLimits.byRule) {
        for (const [decision, value] of Object.entries(counts)) yield [{ rule, decision }, value];
      }
    },
  );
  counterFrom(
    metrics,
    'model_gateway_ratelimit_store_errors_total',
    'Rate-limit decisions the shared store could not make (Redis unreachable, timeout).',
    [],
    function* () {
      yield [{}, rateLimits.storeErrors];
    },
  );

  counterFrom(
    metrics,
    'model_gateway_auth_denied_total',
    'Requests refused by authentication or authorisation, by error code.',
    ['code', 'mode'],
    function* () {
      for (const [code, value] of Object.entries(auth.denied)) yield [{ code, mode: 'enforced' }, value];
      for (const [code, value] of Object.entries(auth.dryRunDenied)) yield [{ code, mode: 'dry_run' }, value];
    },
  );

  const pairLabels = ['model', 'primary_version', 'shadow_version'] as const;
  const pairCounter = (name: string, help: string, read: (p: ReturnType<ShadowStats['forModel']>[number]) => number) =>
    counterFrom(metrics, name, help, pairLabels, function* () {
      for (const p of shadowPairs(shadows)) yield [{ model: p.model, primary_version: p.primaryVersion, shadow_version: p.shadowVersion }, read(p)];
    });
  pairCounter(
    'model_gateway_shadow_requests_total',
    'Requests chosen for mirroring to the shadow version (copies dropped at the concurrency cap included).',
    (p) => p.mirrored,
  );
  pairCounter('model_gateway_shadow_dropped_total', 'Shadow copies dropped because the shadow concurrency cap was reached.', (p) => p.dropped);
  pairCounter('model_gateway_shadow_compared_total', 'Shadow answers compared with the primary’s.', (p) => p.compared);
  pairCounter('model_gateway_shadow_agreed_total', 'Compared shadow answers that agreed with the primary’s.', (p) => p.agreed);
  pairCounter('model_gateway_shadow_errors_total', 'Shadow calls that failed or timed out.', (p) => p.errors.shadow);
  gaugeFrom(metrics, 'model_gateway_shadow_agreement_ratio', 'Agreed / compared since start, per primary/shadow pair.', pairLabels, function* () {
    for (const p of shadowPairs(shadows)) {
      if (p.agreementRate !== null) yield [{ model: p.model, primary_version: p.primaryVersion, shadow_version: p.shadowVersion }, p.agreementRate];
    }
  });
}

const ROLLOUT_STATUSES: readonly RolloutStatus[] = ['running', 'paused', 'rolled-back', 'aborted', 'complete'];

/** The unit of each gate's value in GateResult (every gate must be listed: a new one has to pick its series). */
const GATE_UNIT: Record<GateResult['gate'], 'ratio' | 'ms'> = { agreement: 'ratio', errorRate: 'ratio', p99: 'ms' };

/** Progressive rollouts, read at scrape time from the rollout manager's views (this replica's). */
export function registerRolloutMetrics(metrics: GatewayMetrics, rollouts: { views(): RolloutView[]; store: { isLeader(): boolean; mode: string } }): void {
  gaugeFrom(metrics, 'model_gateway_rollout_status', 'Progressive rollout status: 1 for the current one.', ['model', 'status'], function* () {
    for (const v of rollouts.views()) for (const status of ROLLOUT_STATUSES) yield [{ model: v.model, status }, v.status === status ? 1 : 0];
  });
  gaugeFrom(metrics, 'model_gateway_rollout_step', 'Progressive rollout step (0: shadow phase, 1..n: weight steps).', ['model'], function* () {
    for (const v of rollouts.views()) yield [{ model: v.model }, v.step ?? 0];
  });
  gaugeFrom(
    metrics,
    'model_gateway_rollout_candidate_weight_ratio',
    'Share of unversioned traffic the rollout gives its candidate, 0-1.',
    ['model', 'candidate'],
    function* () {
      for (const v of rollouts.views()) yield [{ model: v.model, candidate: v.candidate }, v.candidateWeight / 100];
    },
  );
  gaugeFrom(
    metrics,
    'model_gateway_rollout_shadow_ratio',
    'Share of stable traffic the rollout mirrors to its candidate, 0-1.',
    ['model', 'candidate'],
    function* () {
      for (const v of rollouts.views()) yield [{ model: v.model, candidate: v.candidate }, v.shadowPercent / 100];
    },
  );
  // One unit per series: the ratio gates in one gauge, the latency gate (measured in ms) in seconds in another.
  gaugeFrom(
    metrics,
    'model_gateway_rollout_gate_ratio',
    'Value of each ratio gate (agreement, errorRate) at the latest evaluation, 0-1.',
    ['model', 'gate'],
    function* () {
      for (const v of rollouts.views())
        for (const g of v.gates ?? []) if (g.value !== null && GATE_UNIT[g.gate] === 'ratio') yield [{ model: v.model, gate: g.gate }, g.value];
    },
  );
  gaugeFrom(
    metrics,
    'model_gateway_rollout_gate_seconds',
    "Value of each latency gate (p99: the candidate's p99 latency) at the latest evaluation, seconds.",
    ['model', 'gate'],
    function* () {
      for (const v of rollouts.views())
        for (const g of v.gates ?? []) if (g.value !== null && GATE_UNIT[g.gate] === 'ms') yield [{ model: v.model, gate: g.gate }, g.value / 1000];
    },
  );
  gaugeFrom(metrics, 'model_gateway_rollout_leader', '1 when this replica leads the rollouts (always, without a shared store).', [], function* () {
    yield [{}, rollouts.store.isLeader() ? 1 : 0];
  });
}
