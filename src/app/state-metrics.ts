// Metrics of the gateway's own state (breakers, shedding, rate limits, auth, shadows, rollouts): gauges and monotonic
// totals read at scrape time (zero hot-path cost), and the shadow counters, counted as each outcome is recorded.

import { Counter, Gauge, type Aggregator } from 'prom-client';
import type { AuthStats } from '../auth/stats.js';
import type { RateLimitStats } from '../ratelimit/store.js';
import type { GuardRegistry } from '../resilience/registry.js';
import type { GateResult, RolloutStatus } from '../rollout/machine.js';
import type { RolloutView } from '../rollout/view.js';
import type { MirrorOutcome, ShadowStats } from '../shadow/stats.js';
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
 * Totals kept elsewhere, exported as Prometheus counters by re-setting them at collect time (prom-client counters only
 * increment, so reset + inc to the current total). `read` must be monotonic for the life of the process — never a
 * statistic that a reload or a reset can lower (test/telemetry/counters.test.ts checks every `_total` series).
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

/**
 * A gauge read at collect time. `aggregator`: how the supervisor of `server.workers` > 1 combines the workers' values
 * (prom-client's default, `sum`, is right for counts in flight, wrong for ratios and for state every worker shares).
 */
function gaugeFrom<L extends string>(
  metrics: GatewayMetrics,
  name: string,
  help: string,
  labelNames: readonly L[],
  read: () => Iterable<[Partial<Record<L, string>>, number]>,
  aggregator: Aggregator = 'sum',
): void {
  new Gauge({
    name,
    help,
    labelNames,
    aggregator,
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

/**
 * The shadow counters, incremented as each mirrored request's outcome is recorded — not read from the pair statistics,
 * which a reload (a removed version) or an operator's reset clears: a Prometheus counter must never go down.
 */
function registerShadowCounters(metrics: GatewayMetrics, shadows: ShadowStats): void {
  const labelNames = ['model', 'primary_version', 'shadow_version'] as const;
  const counter = (name: string, help: string) => new Counter({ name, help, labelNames, registers: [metrics.registry] });
  const requests = counter(
    'model_gateway_shadow_requests_total',
    'Requests chosen for mirroring to the shadow version (copies dropped at the concurrency cap included).',
  );
  const dropped = counter('model_gateway_shadow_dropped_total', 'Shadow copies dropped because the shadow concurrency cap was reached.');
  const compared = counter('model_gateway_shadow_compared_total', 'Shadow answers compared with the primary’s (both sides answered).');
  const agreed = counter('model_gateway_shadow_agreed_total', 'Compared shadow answers whose every compared output agreed with the primary’s.');
  const errors = counter(
    'model_gateway_shadow_errors_total',
    'Shadow calls that failed or timed out (timeouts are also in model_gateway_shadow_timeouts_total).',
  );
  const timeouts = counter('model_gateway_shadow_timeouts_total', 'Shadow calls abandoned at the shadow timeout (shadow.timeoutMs).');
  type Children = { [K in 'requests' | 'dropped' | 'compared' | 'agreed' | 'errors' | 'timeouts']: ReturnType<typeof requests.labels> };
  // Children bound once per pair, at its first outcome; a pair's series then stays for the life of the process.
  const pairs = new Map<string, Children>();
  const childrenOf = (model: string, primary: string, shadow: string): Children => {
    const key = `${model}\0${primary}\0${shadow}`;
    let children = pairs.get(key);
    if (children === undefined) {
      const labels = { model, primary_version: primary, shadow_version: shadow };
      children = {
        requests: requests.labels(labels),
        dropped: dropped.labels(labels),
        compared: compared.labels(labels),
        agreed: agreed.labels(labels),
        errors: errors.labels(labels),
        timeouts: timeouts.labels(labels),
      };
      // Every series of the pair exists from its first copy on (at 0), so rate() has a start for each.
      for (const child of Object.values(children)) child.inc(0);
      pairs.set(key, children);
    }
    return children;
  };
  shadows.onRecord((model: string, primary: string, shadow: string, outcome: MirrorOutcome) => {
    const c = childrenOf(model, primary, shadow);
    if (outcome.kind !== 'settled') {
      c.requests.inc();
      if (outcome.kind === 'dropped') c.dropped.inc();
      return;
    }
    if (!outcome.shadow.ok) {
      c.errors.inc();
      if (outcome.shadow.timedOut) c.timeouts.inc();
    }
    if (outcome.comparison) {
      c.compared.inc();
      if (outcome.comparison.agreed) c.agreed.inc();
    }
  });
}

export function registerStateMetrics(metrics: GatewayMetrics, state: GatewayState): void {
  const { guards, rateLimits, auth, shadows } = state;

  gaugeFrom(
    metrics,
    'model_gateway_breaker_state',
    'Circuit breaker state per version: 1 for the current state (closed, open, half-open; no breaker reads as closed), 0 for the others; with workers, how many are in that state.',
    ['model', 'version', 'state'],
    function* () {
      for (const { model, version, snap } of guardEntries(guards)) {
        const current = BREAKER_STATE_LABEL[snap.breaker.state];
        for (const state of BREAKER_STATES) yield [{ model, version, state }, state === current ? 1 : 0];
      }
    },
  );
  // Totals over every guard a version ever had: a reload that replaces a guard (or removes the version) keeps them.
  counterFrom(metrics, 'model_gateway_breaker_opened_total', 'Times a version’s circuit breaker opened.', ['model', 'version'], function* () {
    for (const { model, version, opened } of guards.totals()) yield [{ model, version }, opened];
  });
  gaugeFrom(metrics, 'model_gateway_backend_in_flight', 'Requests admitted to a version’s backend and not yet answered.', ['model', 'version'], function* () {
    for (const { model, version, snap } of guardEntries(guards)) yield [{ model, version }, snap.limits.inFlight];
  });
  counterFrom(metrics, 'model_gateway_shed_total', 'Requests refused with 503 by a version’s concurrency cap or queue.', ['model', 'version'], function* () {
    for (const { model, version, shed } of guards.totals()) yield [{ model, version }, shed];
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
    'Requests denied by authentication or authorisation, by error code; mode="dry_run": denials auth.enforce: false let through.',
    ['code', 'mode'],
    function* () {
      for (const [code, value] of Object.entries(auth.denied)) yield [{ code, mode: 'enforced' }, value];
      for (const [code, value] of Object.entries(auth.dryRunDenied)) yield [{ code, mode: 'dry_run' }, value];
    },
  );

  registerShadowCounters(metrics, shadows);
  const pairLabels = ['model', 'primary_version', 'shadow_version'] as const;
  gaugeFrom(
    metrics,
    'model_gateway_shadow_agreement_ratio',
    'Agreed / compared per primary/shadow pair since its statistics started (gateway start, its first copy, or the last reset); with workers, their mean.',
    pairLabels,
    function* () {
      for (const p of shadowPairs(shadows)) {
        if (p.agreementRate !== null) yield [{ model: p.model, primary_version: p.primaryVersion, shadow_version: p.shadowVersion }, p.agreementRate];
      }
    },
    'average',
  );
}

const ROLLOUT_STATUSES: readonly RolloutStatus[] = ['running', 'paused', 'rolled-back', 'aborted', 'complete'];

/** The unit of each gate's value in GateResult (every gate must be listed: a new one has to pick its series). */
const GATE_UNIT: Record<GateResult['gate'], 'ratio' | 'ms'> = { agreement: 'ratio', errorRate: 'ratio', p99: 'ms' };

/**
 * Progressive rollouts, read at scrape time from the rollout manager's views (this replica's). With workers every one
 * follows the same shared state, so the supervisor shows the first worker's values (as its admin API shows the first
 * worker's views) rather than their sum; the leader gauge is summed: how many of them lead (0 or 1).
 */
export function registerRolloutMetrics(metrics: GatewayMetrics, rollouts: { views(): RolloutView[]; store: { isLeader(): boolean; mode: string } }): void {
  const shared = (
    name: string,
    help: string,
    labels: readonly ('model' | 'status' | 'candidate' | 'gate')[],
    read: () => Iterable<[Record<string, string>, number]>,
  ) => gaugeFrom(metrics, name, help, labels, read, 'first');
  shared('model_gateway_rollout_status', 'Progressive rollout status: 1 for the current one.', ['model', 'status'], function* () {
    for (const v of rollouts.views()) for (const status of ROLLOUT_STATUSES) yield [{ model: v.model, status }, v.status === status ? 1 : 0];
  });
  shared('model_gateway_rollout_step', 'Progressive rollout step (0: shadow phase, 1..n: weight steps).', ['model'], function* () {
    for (const v of rollouts.views()) yield [{ model: v.model }, v.step ?? 0];
  });
  shared(
    'model_gateway_rollout_candidate_weight_ratio',
    'Share of unversioned traffic the rollout gives its candidate, 0-1.',
    ['model', 'candidate'],
    function* () {
      for (const v of rollouts.views()) yield [{ model: v.model, candidate: v.candidate }, v.candidateWeight / 100];
    },
  );
  shared('model_gateway_rollout_shadow_ratio', 'Share of stable traffic the rollout mirrors to its candidate, 0-1.', ['model', 'candidate'], function* () {
    for (const v of rollouts.views()) yield [{ model: v.model, candidate: v.candidate }, v.shadowPercent / 100];
  });
  // One unit per series: the ratio gates in one gauge, the latency gate (measured in ms) in seconds in another.
  shared('model_gateway_rollout_gate_ratio', 'Value of each ratio gate (agreement, errorRate) at the latest evaluation, 0-1.', ['model', 'gate'], function* () {
    for (const v of rollouts.views())
      for (const g of v.gates ?? []) if (g.value !== null && GATE_UNIT[g.gate] === 'ratio') yield [{ model: v.model, gate: g.gate }, g.value];
  });
  shared(
    'model_gateway_rollout_gate_seconds',
    "Value of each latency gate (p99: the candidate's p99 latency on real requests) at the latest evaluation, seconds.",
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
