// The rollout state machine: what each state means for traffic, the three gates at their bounds, the controller's
// decision per evaluation, and the operator actions with the statuses they are refused in.

import test, { type ExecutionContext } from 'ava';
import { rolloutSchema, type RolloutConfig } from '../../src/config/schema.js';
import { GatewayError } from '../../src/errors/gateway-error.js';
import {
  applyAction,
  candidateWeight,
  effectsOf,
  evaluate,
  evaluateGates,
  initialState,
  type GateResult,
  type OperatorAction,
  type RolloutState,
  type RolloutStatus,
} from '../../src/rollout/machine.js';
import { countOf, latencyIndex, p99LowerBoundOf, p99Of, type LatencyHistogram } from '../../src/rollout/latency-stats.js';
import { summaryOf, type SideSamples, type SideSummary, type WindowSamples } from '../../src/rollout/signals.js';

const T0 = 1_700_000_000_000;

/** Defaults: steps [5, 25, 50, 100], stepHoldMs 300 s, shadow 1000 requests or 600 s, minSamples 100. */
const config = (over: Record<string, unknown> = {}): RolloutConfig => rolloutSchema.parse({ stable: '1', candidate: '2', ...over });

/** A latency histogram from [ms, calls] pairs. */
function hist(...pairs: [ms: number, calls: number][]): LatencyHistogram {
  const h: LatencyHistogram = {};
  for (const [ms, n] of pairs) h[latencyIndex(ms)] = (h[latencyIndex(ms)] ?? 0) + n;
  return h;
}

/**
 * One side of a window. Unless given: every call timed, all of them at the p99 (so the p99 is exact and its lower bound
 * is the p99 itself). With `latency`, timed, p99 and its bound are what the histogram says, as mergeWindow reports.
 */
function sideOf(base: Pick<SideSummary, 'calls' | 'errors' | 'p99Ms'>, over: Partial<SideSamples> = {}): SideSamples {
  if (over.latency) {
    const latency = over.latency;
    return { ...base, timed: countOf(latency), p99Ms: p99Of(latency), p99LowerBoundMs: p99LowerBoundOf(latency), ...over, latency };
  }
  const s = { ...base, ...over };
  const timed = s.timed ?? s.calls;
  return { timed, p99LowerBoundMs: s.p99Ms, ...s, latency: s.p99Ms === null || timed === 0 ? {} : hist([s.p99Ms, timed]) };
}

/** A window in which every gate passes with the defaults. */
function window(
  over: { stable?: Partial<SideSamples>; candidate?: Partial<SideSamples>; compared?: number; agreed?: number; phaseCompared?: number } = {},
): WindowSamples {
  return {
    stable: sideOf({ calls: 500, errors: 0, p99Ms: 10 }, over.stable),
    candidate: sideOf({ calls: 500, errors: 0, p99Ms: 11 }, over.candidate),
    compared: over.compared ?? 500,
    agreed: over.agreed ?? over.compared ?? 500,
    phaseCompared: over.phaseCompared ?? 5000,
  };
}

/** A state at a position (started at T0), for the pure functions that only read the position. */
const at = (status: RolloutStatus, step: number, over: Partial<RolloutState> = {}): RolloutState => ({
  ...initialState(T0),
  status,
  phase: step < 0 ? 'shadow' : 'step',
  step,
  ...over,
});

const gate = (gates: GateResult[], name: GateResult['gate']): GateResult => {
  const found = gates.find((g) => g.gate === name);
  if (!found) throw new Error(`no ${name} gate`);
  return found;
};

const isConflict = (t: ExecutionContext, fn: () => unknown, message?: RegExp) => {
  const err = t.throws(fn, { instanceOf: GatewayError });
  t.is(err?.code, 'GW_ERR_ROLLOUT_CONFLICT');
  t.is(err?.status, 409);
  if (message) t.regex(err!.message, message);
};

// ---------------------------------------------------------------------------------------------------------------
// effectsOf / candidateWeight

test('initialState: running in the shadow phase, revision 1, a start decision', (t) => {
  const s = initialState(T0, 7);
  t.like(s, {
    status: 'running',
    phase: 'shadow',
    step: -1,
    phaseId: 7,
    phaseStartedAt: T0,
    startedAt: T0,
    revision: 1,
    stableP99Ms: null,
    lastEvaluation: null,
  });
  t.like(s.lastDecision, { at: T0, decision: 'start', actor: 'controller' });
  t.is(initialState(T0).phaseId, 1);
});

test('effects of the shadow phase: all weight on stable, shadow at the configured percent, no failover', (t) => {
  const c = config({ shadow: { percent: 40 } });
  for (const status of ['running', 'paused'] as const) {
    t.deepEqual(effectsOf(c, at(status, -1)), { weights: { '1': 100 }, shadowPercent: 40, failover: false }, status);
    t.is(candidateWeight(c, at(status, -1)), 0);
  }
  t.is(effectsOf(config(), at('running', -1)).shadowPercent, 100);
});

test('effects of each step: stable 100−w / candidate w, no mirroring (unless shadow.duringSteps, below 100 %), failover on', (t) => {
  const weights = [{ '1': 95, '2': 5 }, { '1': 75, '2': 25 }, { '1': 50, '2': 50 }, { '2': 100 }];
  for (const [c, shadowPercents] of [
    [config({ shadow: { percent: 40 } }), [0, 0, 0, 0]],
    [config({ shadow: { percent: 40, duringSteps: true } }), [40, 40, 40, 0]],
  ] as const) {
    weights.forEach((w, step) => {
      const effects = { weights: w, shadowPercent: shadowPercents[step], failover: true };
      t.deepEqual(effectsOf(c, at('running', step)), effects, `step ${step}`);
      t.deepEqual(effectsOf(c, at('paused', step)), effects, `paused at step ${step}`);
      t.is(candidateWeight(c, at('running', step)), c.steps[step]!);
    });
  }
});

test("effects of complete: the last step's split, shadow off, no failover", (t) => {
  t.deepEqual(effectsOf(config(), at('complete', 3)), { weights: { '2': 100 }, shadowPercent: 0, failover: false });
  // A rollout whose last step is below 100 % stays at that split.
  const partial = config({ steps: [10, 60] });
  t.deepEqual(effectsOf(partial, at('complete', 1)), { weights: { '1': 40, '2': 60 }, shadowPercent: 0, failover: false });
  t.is(candidateWeight(partial, at('complete', 1)), 60);
});

test('effects of rolled-back and aborted: stable 100, shadow 0, no failover, from any phase', (t) => {
  const c = config();
  for (const status of ['rolled-back', 'aborted'] as const) {
    for (const step of [-1, 0, 2, 3]) {
      t.deepEqual(effectsOf(c, at(status, step)), { weights: { '1': 100 }, shadowPercent: 0, failover: false }, `${status} at ${step}`);
      t.is(candidateWeight(c, at(status, step)), 0);
    }
  }
});

// ---------------------------------------------------------------------------------------------------------------
// evaluateGates

/** Mirroring in the steps too: every gate applies there (the relative p99 limit then needs maxP99Ms in its stead). */
const allGates = (over: Record<string, unknown> = {}) => config({ shadow: { duringSteps: true }, gates: { maxP99Ms: 50 }, ...over });

test('every gate waits below minSamples', (t) => {
  const c = allGates();
  const w = window({ compared: 99, agreed: 99, candidate: { calls: 99, errors: 50, p99Ms: 1000 } });
  const { gates } = evaluateGates(c, at('running', 0), w);
  t.deepEqual(
    gates.map((g) => [g.gate, g.status, g.samples]),
    [
      ['agreement', 'waiting', 99],
      ['errorRate', 'waiting', 99],
      ['p99', 'waiting', 99],
    ],
  );
  t.is(gate(gates, 'agreement').detail, '99/100 comparisons');
  t.is(gate(gates, 'errorRate').detail, '99/100 candidate calls');
  t.is(gate(gates, 'p99').detail, '99/100 timed candidate calls');
  // Even far beyond the bounds: too few samples never fail.
  t.false(gates.some((g) => g.status === 'fail'));
  // The values are still shown while waiting.
  t.is(gate(gates, 'agreement').value, 1);
  t.is(gate(gates, 'errorRate').value, 50 / 99);
});

test('waiting gates without any samples have no value', (t) => {
  const { gates } = evaluateGates(allGates(), at('running', 0), window({ compared: 0, candidate: { calls: 0, p99Ms: null } }));
  t.is(gate(gates, 'agreement').value, null);
  t.is(gate(gates, 'errorRate').value, null);
  t.is(gate(gates, 'p99').value, null);
  t.true(gates.every((g) => g.status === 'waiting'));
});

test('the p99 gate is skipped in the shadow phase: latency is judged on real requests, and copies are not timed', (t) => {
  // Even a slow-looking window: nothing the candidate served there was a real request.
  const { gates } = evaluateGates(config(), at('running', -1), window({ candidate: { calls: 500, timed: 0, p99Ms: null } }));
  t.like(gate(gates, 'p99'), { status: 'skipped', value: null, limit: null, samples: 0 });
  t.is(gate(gates, 'p99').detail, 'latency is judged on real requests: the candidate gets none in this phase');
  t.is(gate(gates, 'errorRate').status, 'pass', 'copies still count for errors');
});

test('the gates are judged from exactly minSamples on', (t) => {
  const { gates } = evaluateGates(allGates(), at('running', 0), window({ compared: 100, candidate: { calls: 100 } }));
  t.deepEqual(
    gates.map((g) => g.status),
    ['pass', 'pass', 'pass'],
  );
  // By default a step mirrors nothing: agreement is judged in the shadow phase only.
  t.is(gate(evaluateGates(config(), at('running', 0), window({ compared: 100 })).gates, 'agreement').status, 'skipped');
});

test('agreement passes exactly at the minimum and fails just below it', (t) => {
  const c = config(); // minAgreement 0.99
  const pass = gate(evaluateGates(c, at('running', -1), window({ compared: 100, agreed: 99 })).gates, 'agreement');
  t.like(pass, { status: 'pass', value: 0.99, limit: 0.99, samples: 100 });
  t.is(pass.detail, 'agreement 99.00% (minimum 99.00%) over 100 comparisons');
  const fail = gate(evaluateGates(c, at('running', -1), window({ compared: 100, agreed: 98 })).gates, 'agreement');
  t.like(fail, { status: 'fail', value: 0.98, limit: 0.99 });
  const custom = config({ gates: { minAgreement: 0.9 } });
  t.is(gate(evaluateGates(custom, at('running', -1), window({ compared: 1000, agreed: 900 })).gates, 'agreement').status, 'pass');
  t.is(gate(evaluateGates(custom, at('running', -1), window({ compared: 1000, agreed: 899 })).gates, 'agreement').status, 'fail');
});

test('error rate passes exactly at the maximum and fails just above it', (t) => {
  const c = config(); // maxErrorRate 0.01
  const pass = gate(evaluateGates(c, at('running', 1), window({ candidate: { calls: 100, errors: 1 } })).gates, 'errorRate');
  t.like(pass, { status: 'pass', value: 0.01, limit: 0.01, samples: 100 });
  t.is(pass.detail, 'candidate error rate 1.00% (maximum 1.00%) over 100 calls');
  const fail = gate(evaluateGates(c, at('running', 1), window({ candidate: { calls: 100, errors: 2 } })).gates, 'errorRate');
  t.like(fail, { status: 'fail', value: 0.02 });
  t.is(
    gate(evaluateGates(config({ gates: { maxErrorRate: 0 } }), at('running', 1), window({ candidate: { calls: 1000, errors: 1 } })).gates, 'errorRate').status,
    'fail',
  );
});

test('p99 limit is the ratio × stable when that allows more than the allowance', (t) => {
  const c = config(); // ratio 1.5, allowance 5 ms → stable 100 ms: max(150, 105) = 150
  const pass = gate(evaluateGates(c, at('running', 0), window({ stable: { p99Ms: 100 }, candidate: { p99Ms: 150 } })).gates, 'p99');
  t.like(pass, { status: 'pass', value: 150, limit: 150 });
  t.is(pass.detail, 'candidate p99 150 ms vs stable 100 ms (limit 150 ms)');
  // Every candidate call clearly slower than the limit (beyond its histogram bucket), no stable call: it fails.
  const fail = gate(evaluateGates(c, at('running', 0), window({ stable: { p99Ms: 100 }, candidate: { p99Ms: 170 } })).gates, 'p99');
  t.like(fail, { status: 'fail', limit: 150 });
  t.is(
    fail.detail,
    'candidate p99 170 ms vs stable 100 ms (limit 150 ms); 500 of 500 candidate calls and 0 of 500 stable calls slower than 150 ms: more than its 50.0% share of calls explains',
  );
});

test('p99 limit is stable + allowance when that allows more than the ratio (fast models)', (t) => {
  const c = config(); // stable 2 ms: max(3, 7) = 7
  const pass = gate(evaluateGates(c, at('running', 0), window({ stable: { p99Ms: 2 }, candidate: { p99Ms: 7 } })).gates, 'p99');
  t.like(pass, { status: 'pass', value: 7, limit: 7 });
  t.is(pass.detail, 'candidate p99 7.00 ms vs stable 2.00 ms (limit 7.00 ms)');
  t.is(gate(evaluateGates(c, at('running', 0), window({ stable: { p99Ms: 2 }, candidate: { p99Ms: 7.5 } })).gates, 'p99').status, 'fail');
  // Another ratio and allowance.
  const tight = config({ gates: { maxP99Ratio: 1, p99AllowanceMs: 0 } });
  t.is(gate(evaluateGates(tight, at('running', 0), window({ stable: { p99Ms: 2 }, candidate: { p99Ms: 2 } })).gates, 'p99').status, 'pass');
  t.is(gate(evaluateGates(tight, at('running', 0), window({ stable: { p99Ms: 2 }, candidate: { p99Ms: 2.2 } })).gates, 'p99').status, 'fail');
  // Just over the limit, within the same histogram bucket: not clearly slower, so it waits rather than fails.
  t.is(gate(evaluateGates(tight, at('running', 0), window({ stable: { p99Ms: 2 }, candidate: { p99Ms: 2.001 } })).gates, 'p99').status, 'waiting');
});

test('p99 over the relative limit fails only when the candidate holds more of the slow calls than its share explains', (t) => {
  const c = config(); // stable p99 10 ms → limit max(15, 15) = 15 ms
  const stable = { latency: hist([10, 1900], [100, 19]) }; // 1 % slow: its p99 is 10 ms
  const judged = (candidate: LatencyHistogram) => gate(evaluateGates(c, at('running', 0), window({ stable, candidate: { latency: candidate } })).gates, 'p99');
  // 2 slow calls of 100 at a 5 % share: its p99 (the 99th of 100) looks slow, but 2 of the 21 slow calls is no evidence.
  const unsure = judged(hist([10, 98], [100, 2]));
  t.like(unsure, { status: 'waiting', samples: 100 });
  t.regex(
    unsure.detail,
    /^candidate p99 10\d ms vs stable 10 ms \(limit 15 ms\), not conclusive yet \(2 of 100 candidate calls and 19 of 1919 stable calls slower than 15 ms\): holding for more samples$/,
  );
  // 10 slow of 100: far beyond its share of the slow calls.
  const slow = judged(hist([10, 90], [100, 10]));
  t.is(slow.status, 'fail');
  t.regex(slow.detail, /10 of 100 candidate calls and 19 of 1919 stable calls slower than 15 ms: more than its 5\.0% share of calls explains$/);
  // A stall of the whole machine slows 3 % of both versions' calls: stable's p99 rises with it, nothing is blamed.
  const stall = gate(
    evaluateGates(c, at('running', 0), window({ stable: { latency: hist([10, 1940], [100, 60]) }, candidate: { latency: hist([10, 97], [100, 3]) } })).gates,
    'p99',
  );
  t.is(stall.status, 'pass');
  t.true(stall.limit! > 150, String(stall.limit));
  // A waiting p99 holds a step whose time is up; it never advances it.
  const held = evaluate(c, at('running', 0, { phaseStartedAt: T0 }), window({ stable, candidate: { latency: hist([10, 98], [100, 2]) } }), T0 + 300_000);
  t.like(held, { status: 'running', step: 0 });
  t.regex(held.lastDecision.reason, /^step 1\/4 \(5%\) done, waiting for samples: p99 candidate p99 102 ms/);
});

test('maxP99Ms is an absolute ceiling on the candidate p99: the lower of it and the relative limit applies, and it needs no stable traffic', (t) => {
  const c = config({ gates: { maxP99Ms: 120 } }); // relative limit for stable 100 ms: 150 ms
  const judged = (over: Parameters<typeof window>[0], state = at('running', 0)) => gate(evaluateGates(c, state, window(over)).gates, 'p99');
  const capped = judged({ stable: { p99Ms: 100 }, candidate: { p99Ms: 130 } });
  t.like(capped, { status: 'fail', value: 130, limit: 120 });
  t.is(capped.detail, 'candidate p99 130 ms vs stable 100 ms, maximum 120 ms (limit 120 ms); its p99 is at least 130 ms (99.9% confidence)');
  // The relative limit is the lower one.
  t.like(judged({ stable: { p99Ms: 50 }, candidate: { p99Ms: 80 } }), { status: 'fail', limit: 75 });
  t.like(judged({ stable: { p99Ms: 100 }, candidate: { p99Ms: 120 } }), { status: 'pass', limit: 120 });
  // Over the ceiling, but a few slow calls among few: the p99's lower bound is under it, so it waits.
  const unsure = judged({ stable: { p99Ms: 100 }, candidate: { latency: hist([100, 97], [200, 3]) } });
  t.like(unsure, { status: 'waiting', limit: 120 });
  t.regex(unsure.detail, /its p99 may be as low as 9\d ms\): holding for more samples$/);
  // At 100 % stable serves nothing: the ceiling alone judges.
  const alone = judged({ stable: { calls: 0, p99Ms: null }, candidate: { p99Ms: 119 } }, at('running', 3));
  t.like(alone, { status: 'pass', limit: 120, samples: 500 });
  t.is(alone.detail, 'candidate p99 119 ms vs maximum 120 ms (limit 120 ms)');
  t.is(judged({ stable: { calls: 0, p99Ms: null }, candidate: { p99Ms: 130 } }, at('running', 3)).status, 'fail');
  // Still only on real requests: skipped in the shadow phase.
  t.is(judged({ candidate: { timed: 0, p99Ms: null } }, at('running', -1)).status, 'skipped');
});

test('agreement is skipped while the candidate takes 100 % (nothing is mirrored)', (t) => {
  const c = config();
  const { gates } = evaluateGates(c, at('running', 3), window({ compared: 0, agreed: 0 }));
  t.like(gate(gates, 'agreement'), { status: 'skipped', value: null, limit: 0.99, samples: 0 });
  t.is(gate(gates, 'errorRate').status, 'pass');
  t.is(gate(gates, 'p99').status, 'skipped'); // nothing beside it to compare with, and no maxP99Ms
  // Even a terrible agreement is not judged there.
  t.is(gate(evaluateGates(c, at('paused', 3), window({ compared: 500, agreed: 0 })).gates, 'agreement').status, 'skipped');
  // ...but it is in the shadow phase, and below 100 % when the steps mirror too.
  t.is(gate(evaluateGates(c, at('running', -1), window({ compared: 500, agreed: 0 })).gates, 'agreement').status, 'fail');
  t.is(gate(evaluateGates(c, at('running', 2), window({ compared: 500, agreed: 0 })).gates, 'agreement').status, 'skipped');
  t.is(gate(evaluateGates(allGates(), at('running', 2), window({ compared: 500, agreed: 0 })).gates, 'agreement').status, 'fail');
});

test('with shadow.duringSteps the copies load the candidate: the relative p99 limit is not applied, only maxP99Ms', (t) => {
  const slow = window({ stable: { p99Ms: 10 }, candidate: { p99Ms: 40 } }); // 4 × stable: far over the relative limit
  const mirrored = config({ shadow: { duringSteps: true } });
  t.like(gate(evaluateGates(mirrored, at('running', 1), slow).gates, 'p99'), {
    status: 'skipped',
    detail: 'copies mirrored in this step load the candidate beyond its real share (shadow.duringSteps), and no maxP99Ms is set',
  });
  t.like(gate(evaluateGates(config({ shadow: { duringSteps: true }, gates: { maxP99Ms: 50 } }), at('running', 1), slow).gates, 'p99'), {
    status: 'pass',
    limit: 50,
  });
  // Without it the step mirrors nothing and the same window fails on the relative limit.
  t.is(gate(evaluateGates(config(), at('running', 1), slow).gates, 'p99').status, 'fail');
});

test('the relative p99 limit compares calls of the same window only: it waits for stable calls, and is skipped at 100 %', (t) => {
  const c = config();
  // Enough stable calls: the window's p99 is the reference and is recorded in the state.
  const fresh = evaluateGates(c, at('running', 2, { stableP99Ms: 20 }), window({ stable: { calls: 100, p99Ms: 40 }, candidate: { p99Ms: 60 } }));
  t.is(fresh.stableP99Ms, 40);
  t.like(gate(fresh.gates, 'p99'), { status: 'pass', limit: 60 });
  // Too few stable calls in this window: an older p99 (20 ms) is not used as a stand-in; the gate waits.
  const few = evaluateGates(c, at('running', 2, { stableP99Ms: 20 }), window({ stable: { calls: 99, p99Ms: 1000 }, candidate: { p99Ms: 300 } }));
  t.is(few.stableP99Ms, 20);
  t.like(gate(few.gates, 'p99'), { status: 'waiting', limit: null, samples: 99, detail: '99/100 timed stable calls to compare with' });
  // At 100 % stable serves nothing: without maxP99Ms, there is no limit to judge by.
  t.like(gate(evaluateGates(c, at('running', 3, { stableP99Ms: 20 }), window({ stable: { calls: 0, p99Ms: null }, candidate: { p99Ms: 300 } })).gates, 'p99'), {
    status: 'skipped',
    limit: null,
    detail: 'stable serves nothing at 100% to compare with, and no maxP99Ms is set',
  });
  // Enough stable calls but none timed (all refused by a guard): the recorded p99 stays.
  t.is(evaluateGates(c, at('running', 2, { stableP99Ms: 20 }), window({ stable: { calls: 500, timed: 0, p99Ms: null } })).stableP99Ms, 20);
});

test('the p99 gate waits while stable has too few timed calls', (t) => {
  const { gates, stableP99Ms } = evaluateGates(config(), at('running', 2), window({ stable: { calls: 42, p99Ms: 9 }, candidate: { p99Ms: 1 } }));
  t.is(stableP99Ms, null);
  t.like(gate(gates, 'p99'), { status: 'waiting', value: 1, limit: null, samples: 42, detail: '42/100 timed stable calls to compare with' });
});

test('the p99 gate waits while the candidate has calls but no timed ones', (t) => {
  const { gates } = evaluateGates(config(), at('running', 0), window({ candidate: { calls: 500, errors: 0, timed: 0, p99Ms: null } }));
  t.like(gate(gates, 'p99'), { status: 'waiting', value: null, samples: 0, detail: '0/100 timed candidate calls' });
  t.is(gate(gates, 'errorRate').status, 'pass');
});

// ---------------------------------------------------------------------------------------------------------------
// evaluate

test('the shadow phase holds while it has neither enough compared requests nor enough time', (t) => {
  const c = config();
  const s = initialState(T0);
  const next = evaluate(c, s, window({ phaseCompared: 999 }), T0 + 599_999);
  t.like(next, { status: 'running', phase: 'shadow', step: -1, phaseId: s.phaseId, phaseStartedAt: T0, revision: s.revision + 1 });
  t.like(next.lastDecision, { at: T0 + 599_999, decision: 'hold', actor: 'controller' });
  t.is(next.lastDecision.reason, 'shadow phase: 999/1000 requests compared, 599 s of 600 s');
  t.deepEqual(next.lastDecision.from, { status: 'running', phase: 'shadow', step: -1 });
  t.deepEqual(next.lastDecision.to, { status: 'running', phase: 'shadow', step: -1 });
  t.is(next.lastDecision.gates?.length, 3);
  // Kept without the histograms.
  t.deepEqual(next.lastDecision.window, summaryOf(window({ phaseCompared: 999 })));
  t.false('latency' in next.lastEvaluation!.window.candidate);
});

test('the shadow phase ends once enough requests were compared, however short it was', (t) => {
  const c = config();
  const s = initialState(T0);
  const next = evaluate(c, s, window({ phaseCompared: 1000 }), T0 + 1000);
  t.like(next, { status: 'running', phase: 'step', step: 0, phaseId: s.phaseId + 1, phaseStartedAt: T0 + 1000, revision: s.revision + 1 });
  t.like(next.lastDecision, { decision: 'advance', actor: 'controller' });
  t.is(next.lastDecision.reason, 'shadow phase passed (agreement, errorRate): advancing to step 1/4 (5%)');
  t.deepEqual(next.lastDecision.to, { status: 'running', phase: 'step', step: 0 });
  t.deepEqual(effectsOf(c, next).weights, { '1': 95, '2': 5 });
});

test('the shadow phase ends once its duration elapsed, however few requests were compared', (t) => {
  const c = config();
  const s = initialState(T0);
  const w = window({ compared: 200, phaseCompared: 200 });
  t.is(evaluate(c, s, w, T0 + 599_999).lastDecision.decision, 'hold');
  const next = evaluate(c, s, w, T0 + 600_000);
  t.like(next, { phase: 'step', step: 0, phaseId: s.phaseId + 1 });
  t.is(next.lastDecision.decision, 'advance');
});

test('a phase that ran its course still holds while a gate waits for samples', (t) => {
  const c = config();
  const s = initialState(T0);
  const next = evaluate(c, s, window({ phaseCompared: 5000, candidate: { calls: 50, p99Ms: 11 } }), T0 + 700_000);
  t.like(next, { phase: 'shadow', step: -1, phaseId: s.phaseId });
  t.is(next.lastDecision.decision, 'hold');
  t.regex(next.lastDecision.reason, /^shadow phase done, waiting for samples: /);
  t.regex(next.lastDecision.reason, /errorRate 50\/100 candidate calls/);
  t.notRegex(next.lastDecision.reason, /agreement|p99/);
  // In a step, too: the hold time is over but the stable reference p99 is missing.
  const step = at('running', 1, { phaseStartedAt: T0 });
  const held = evaluate(c, step, window({ stable: { calls: 3, p99Ms: 5 } }), T0 + 300_000);
  t.like(held, { phase: 'step', step: 1 });
  t.is(held.lastDecision.reason, 'step 2/4 (25%) done, waiting for samples: p99 3/100 timed stable calls to compare with');
});

test('each step is held for stepHoldMs before it may advance', (t) => {
  const c = config();
  const s = at('running', 0, { phaseId: 2, phaseStartedAt: T0, revision: 5 });
  const held = evaluate(c, s, window(), T0 + 299_999);
  t.like(held, { phase: 'step', step: 0, phaseId: 2, phaseStartedAt: T0, revision: 6 });
  t.is(held.lastDecision.decision, 'hold');
  t.is(held.lastDecision.reason, 'holding step 1/4 (5%): 1 s left');
  t.is(evaluate(c, s, window(), T0 + 1000).lastDecision.reason, 'holding step 1/4 (5%): 299 s left');
  const next = evaluate(c, s, window(), T0 + 300_000);
  t.like(next, { phase: 'step', step: 1, phaseId: 3, phaseStartedAt: T0 + 300_000, revision: 6 });
  t.is(next.lastDecision.reason, 'step 1/4 (5%) passed (errorRate, p99): advancing to step 2/4 (25%)');
  // The shadow phase's request count plays no part in a step.
  t.is(evaluate(c, s, window({ phaseCompared: 0 }), T0 + 300_000).step, 1);
});

test('the last step, once held and passing, completes the rollout', (t) => {
  const c = config();
  const s = at('running', 3, { phaseId: 5, phaseStartedAt: T0 });
  const w = window({ compared: 0, agreed: 0, stable: { calls: 0, p99Ms: null } });
  const next = evaluate(c, { ...s, stableP99Ms: 10 }, w, T0 + 300_000);
  t.like(next, { status: 'complete', phase: 'step', step: 3 });
  t.like(next.lastDecision, { decision: 'complete', actor: 'controller' });
  t.is(next.lastDecision.reason, 'step 4/4 (100%) passed (errorRate): rollout complete, candidate at 100%');
  t.deepEqual(next.lastDecision.to, { status: 'complete', phase: 'step', step: 3 });
  t.deepEqual(effectsOf(c, next), { weights: { '2': 100 }, shadowPercent: 0, failover: false });
});

test("a failing gate rolls back at once, with the failing gate's detail in the reason", (t) => {
  const c = config();
  const s = at('running', 1, { phaseId: 3, phaseStartedAt: T0, revision: 4 });
  // Inside the step's hold time: a failure does not wait for it.
  const next = evaluate(c, s, window({ candidate: { calls: 200, errors: 10 } }), T0 + 1000);
  t.like(next, { status: 'rolled-back', phase: 'step', step: 1, revision: 5 });
  t.like(next.lastDecision, { decision: 'rollback', actor: 'controller' });
  t.is(next.lastDecision.reason, 'rolled back in step 2/4 (25%): candidate error rate 5.00% (maximum 1.00%) over 200 calls');
  t.deepEqual(next.lastDecision.to, { status: 'rolled-back', phase: 'step', step: 1 });
  t.deepEqual(effectsOf(c, next), { weights: { '1': 100 }, shadowPercent: 0, failover: false });
  // Several failing gates are all named; a waiting one does not prevent the rollback.
  const many = evaluate(
    allGates(),
    s,
    window({ compared: 100, agreed: 50, stable: { calls: 10 }, candidate: { calls: 100, errors: 100, p99Ms: 5, timed: 99 } }),
    T0 + 1000,
  );
  t.is(many.status, 'rolled-back');
  t.is(
    many.lastDecision.reason,
    'rolled back in step 2/4 (25%): agreement 50.00% (minimum 99.00%) over 100 comparisons; candidate error rate 100.00% (maximum 1.00%) over 100 calls',
  );
});

test('a failing gate in the shadow phase rolls back too', (t) => {
  const next = evaluate(config(), initialState(T0), window({ phaseCompared: 10, candidate: { calls: 200, errors: 3 } }), T0 + 1000);
  t.like(next, { status: 'rolled-back', phase: 'shadow', step: -1, phaseId: 1 });
  t.is(next.lastDecision.reason, 'rolled back in shadow phase: candidate error rate 1.50% (maximum 1.00%) over 200 calls');
});

test('a paused rollout is still rolled back by a failing gate', (t) => {
  const c = allGates();
  const next = evaluate(c, at('paused', 2, { phaseStartedAt: T0 }), window({ compared: 1000, agreed: 900 }), T0 + 10);
  t.like(next, { status: 'rolled-back', phase: 'step', step: 2 });
  t.is(next.lastDecision.decision, 'rollback');
  t.regex(next.lastDecision.reason, /^rolled back in step 3\/4 \(50%\): agreement 90\.00% \(minimum 99\.00%\) over 1000 comparisons$/);
  t.deepEqual(next.lastDecision.from, { status: 'paused', phase: 'step', step: 2 });
});

test('a paused rollout whose gates pass holds, however long the phase ran', (t) => {
  const c = config();
  for (const s of [at('paused', -1, { phaseStartedAt: T0 }), at('paused', 1, { phaseStartedAt: T0 })]) {
    const next = evaluate(c, s, window({ phaseCompared: 1_000_000 }), T0 + 10 * 3_600_000);
    t.like(next, { status: 'paused', phase: s.phase, step: s.step, phaseId: s.phaseId, phaseStartedAt: T0, revision: s.revision + 1 });
    t.is(next.lastDecision.decision, 'hold');
    t.regex(next.lastDecision.reason, /^paused by an operator in (shadow phase|step 2\/4 \(25%\))$/);
  }
});

test('lastEvaluation and stableP99Ms are recorded by every evaluation', (t) => {
  const c = config();
  const w = window({ phaseCompared: 3, stable: { calls: 150, p99Ms: 12 } });
  const next = evaluate(c, initialState(T0), w, T0 + 5);
  t.is(next.lastEvaluation?.at, T0 + 5);
  t.deepEqual(next.lastEvaluation?.window, summaryOf(w));
  t.deepEqual(next.lastEvaluation?.gates, next.lastDecision.gates);
  t.deepEqual(
    next.lastEvaluation?.gates.map((g) => g.gate),
    ['agreement', 'errorRate', 'p99'],
  );
  t.is(next.stableP99Ms, 12);
  // Later, without stable traffic, the last measured p99 is kept (for the record: the gate does not judge by it).
  const later = evaluate(c, { ...next, phase: 'step', step: 3 }, window({ stable: { calls: 0, p99Ms: null }, candidate: { p99Ms: 17 } }), T0 + 10);
  t.is(later.stableP99Ms, 12);
  t.like(later.lastEvaluation?.gates[2], { gate: 'p99', status: 'skipped', limit: null });
  // The rollback carries its evaluation too.
  const rolled = evaluate(c, initialState(T0), window({ candidate: { errors: 500 } }), T0 + 20);
  t.is(rolled.lastEvaluation?.at, T0 + 20);
});

test('evaluate does not modify the state it is given', (t) => {
  const s = initialState(T0);
  const copy = structuredClone(s);
  evaluate(config(), s, window({ phaseCompared: 1000 }), T0 + 1);
  evaluate(config(), s, window({ candidate: { errors: 500 } }), T0 + 1);
  t.deepEqual(s, copy);
});

test('a whole rollout by the controller: phaseId changes with every phase and step, revision with every decision', (t) => {
  const c = config({ steps: [10, 50, 100], stepHoldMs: 1000, shadow: { requests: 10 } });
  let s = initialState(T0);
  let now = T0;
  const trail: string[] = [];
  const phaseIds = [s.phaseId];
  for (let i = 0; i < 20 && s.status === 'running'; i++) {
    now += 500;
    const before = s;
    s = evaluate(c, s, window({ phaseCompared: 10 }), now);
    t.is(s.revision, before.revision + 1);
    t.is(s.lastDecision.at, now);
    const moved = s.phase !== before.phase || s.step !== before.step;
    t.is(s.phaseId, moved ? before.phaseId + 1 : before.phaseId);
    t.is(s.phaseStartedAt, moved ? now : before.phaseStartedAt);
    if (moved) phaseIds.push(s.phaseId);
    trail.push(`${s.lastDecision.decision}:${s.phase}:${s.step}:${s.status}`);
  }
  t.deepEqual(trail, [
    'advance:step:0:running',
    'hold:step:0:running',
    'advance:step:1:running',
    'hold:step:1:running',
    'advance:step:2:running',
    'hold:step:2:running',
    'complete:step:2:complete',
  ]);
  t.deepEqual(phaseIds, [1, 2, 3, 4]);
  t.is(s.startedAt, T0);
});

// ---------------------------------------------------------------------------------------------------------------
// applyAction

const NOW = T0 + 123_456;

test('pause: only a running rollout, keeping its position and phase', (t) => {
  const c = config();
  const s = at('running', 1, { phaseId: 4, phaseStartedAt: T0, revision: 9 });
  const next = applyAction(c, s, 'pause', NOW);
  t.like(next, { status: 'paused', phase: 'step', step: 1, phaseId: 4, phaseStartedAt: T0, revision: 10 });
  t.like(next.lastDecision, { at: NOW, decision: 'pause', actor: 'operator', reason: 'paused by an operator in step 2/4 (25%)' });
  t.deepEqual(next.lastDecision.from, { status: 'running', phase: 'step', step: 1 });
  t.deepEqual(next.lastDecision.to, { status: 'paused', phase: 'step', step: 1 });
  // Paused traffic is that of the position.
  t.deepEqual(effectsOf(c, next), effectsOf(c, s));
  for (const status of ['paused', 'rolled-back', 'aborted', 'complete'] as const) {
    isConflict(t, () => applyAction(c, at(status, 1), 'pause', NOW), new RegExp(`^cannot pause: the rollout is ${status}$`));
  }
});

test("resume from paused: running again, and the phase's hold starts over under a new phaseId", (t) => {
  const c = config();
  const s = at('paused', 2, { phaseId: 6, phaseStartedAt: T0, revision: 3, stableP99Ms: 8 });
  const withEval = { ...s, lastEvaluation: { at: T0, gates: [], window: window() } };
  const next = applyAction(c, withEval, 'resume', NOW);
  t.like(next, { status: 'running', phase: 'step', step: 2, phaseId: 7, phaseStartedAt: NOW, revision: 4, stableP99Ms: 8 });
  t.like(next.lastDecision, { at: NOW, decision: 'resume', actor: 'operator' });
  t.is(next.lastDecision.reason, "resumed by an operator in step 3/4 (50%); the phase's hold starts again");
  // Operator actions do not replace the controller's evaluation.
  t.deepEqual(next.lastEvaluation, withEval.lastEvaluation);
  // The hold really starts again: the next evaluation right after holds.
  t.is(evaluate(c, next, window(), NOW + 299_999).lastDecision.decision, 'hold');
  t.is(evaluate(c, next, window(), NOW + 300_000).step, 3);
  // Paused in the shadow phase, too.
  const shadow = applyAction(c, at('paused', -1, { phaseId: 2 }), 'resume', NOW);
  t.like(shadow, { status: 'running', phase: 'shadow', phaseId: 3, phaseStartedAt: NOW });
});

test('resume from rolled-back restarts at the shadow phase with a new phaseId (rolled back in a step)', (t) => {
  const c = config();
  const rolled = evaluate(c, at('running', 2, { phaseId: 5, stableP99Ms: 9 }), window({ candidate: { errors: 500 } }), T0 + 1);
  t.is(rolled.status, 'rolled-back');
  const next = applyAction(c, rolled, 'resume', NOW);
  t.like(next, {
    status: 'running',
    phase: 'shadow',
    step: -1,
    phaseId: 6,
    phaseStartedAt: NOW,
    revision: rolled.revision + 1,
    stableP99Ms: null,
    lastEvaluation: null,
  });
  t.like(next.lastDecision, { at: NOW, decision: 'restart', actor: 'operator', reason: 'restarted by an operator after a rollback: shadow phase begins' });
  t.deepEqual(next.lastDecision.from, { status: 'rolled-back', phase: 'step', step: 2 });
  t.deepEqual(next.lastDecision.to, { status: 'running', phase: 'shadow', step: -1 });
  t.deepEqual(effectsOf(c, next), { weights: { '1': 100 }, shadowPercent: 100, failover: false });
});

test('resume after a rollback in the shadow phase still gets a new phaseId and a fresh phase start', (t) => {
  const c = config();
  const rolled = evaluate(c, initialState(T0, 11), window({ agreed: 0 }), T0 + 1);
  t.like(rolled, { status: 'rolled-back', phase: 'shadow', phaseId: 11 });
  const next = applyAction(c, rolled, 'resume', NOW);
  t.like(next, { status: 'running', phase: 'shadow', step: -1, phaseStartedAt: NOW, stableP99Ms: null, lastEvaluation: null });
  t.not(next.phaseId, rolled.phaseId);
  t.is(next.phaseId, 12);
  // The restarted shadow phase counts from zero: it holds at first.
  t.regex(evaluate(c, next, window({ phaseCompared: 0 }), NOW + 1).lastDecision.reason, /^shadow phase: 0\/1000 requests compared, 0 s of 600 s$/);
});

test('resume from aborted restarts at the shadow phase with a new phaseId, from either phase', (t) => {
  const c = config();
  for (const step of [-1, 3]) {
    const aborted = applyAction(c, at('running', step, { phaseId: 3 }), 'abort', T0 + 1);
    const next = applyAction(c, aborted, 'resume', NOW);
    t.like(next, { status: 'running', phase: 'shadow', step: -1, phaseId: 4, phaseStartedAt: NOW });
    t.is(next.lastDecision.decision, 'restart');
    t.is(next.lastDecision.reason, 'restarted by an operator after an abort: shadow phase begins');
  }
});

test('resume is refused while running or complete', (t) => {
  const c = config();
  isConflict(t, () => applyAction(c, at('running', 0), 'resume', NOW), /^cannot resume: the rollout is running$/);
  isConflict(t, () => applyAction(c, at('complete', 3), 'resume', NOW), /^cannot resume: the rollout is complete$/);
});

test('promote advances one step at a time, the last one completes', (t) => {
  const c = config();
  let s = initialState(T0);
  const positions: string[] = [];
  for (let i = 0; i < 5; i++) {
    const before = s;
    s = applyAction(c, s, 'promote', NOW + i);
    t.like(s.lastDecision, { at: NOW + i, decision: 'promote', actor: 'operator' });
    t.is(s.revision, before.revision + 1);
    positions.push(`${s.status}:${s.phase}:${s.step}:${s.phaseId}`);
  }
  t.deepEqual(positions, ['running:step:0:2', 'running:step:1:3', 'running:step:2:4', 'running:step:3:5', 'complete:step:3:5']);
  t.is(s.lastDecision.reason, 'promoted by an operator from step 4/4 (100%) to complete at 100%');
  isConflict(t, () => applyAction(c, s, 'promote', NOW), /^cannot promote: the rollout is complete$/);
});

test('promote skips the hold: the new step starts now', (t) => {
  const c = config();
  const next = applyAction(c, at('running', 0, { phaseStartedAt: T0 }), 'promote', NOW);
  t.like(next, { step: 1, phaseStartedAt: NOW });
  t.is(next.lastDecision.reason, 'promoted by an operator from step 1/4 (5%) to step 2/4 (25%)');
});

test('promote of a paused rollout moves it and keeps it paused', (t) => {
  const next = applyAction(config(), at('paused', -1), 'promote', NOW);
  t.like(next, { status: 'paused', phase: 'step', step: 0 });
});

test('promote {full: true} completes at once, from any live position', (t) => {
  const c = config();
  for (const s of [initialState(T0), at('running', 1), at('paused', 2), at('running', 3)]) {
    const next = applyAction(c, s, 'promote', NOW, { full: true });
    t.like(next, { status: 'complete', phase: 'step', step: 3 });
    t.like(next.lastDecision, { decision: 'promote', actor: 'operator', at: NOW });
    t.regex(next.lastDecision.reason, / to complete at 100%$/);
    t.deepEqual(effectsOf(c, next), { weights: { '2': 100 }, shadowPercent: 0, failover: false });
  }
  t.is(applyAction(c, initialState(T0), 'promote', NOW, { full: true }).lastDecision.reason, 'promoted by an operator from shadow phase to complete at 100%');
});

test('promote is refused when rolled back, aborted or complete', (t) => {
  const c = config();
  isConflict(t, () => applyAction(c, at('rolled-back', 1), 'promote', NOW), /^cannot promote: the rollout is rolled-back \(resume it first\)$/);
  isConflict(t, () => applyAction(c, at('aborted', -1), 'promote', NOW, { full: true }), /^cannot promote: the rollout is aborted \(resume it first\)$/);
  isConflict(t, () => applyAction(c, at('complete', 3), 'promote', NOW, { full: true }), /^cannot promote: the rollout is complete$/);
});

test('abort from every status but aborted: all traffic back to stable', (t) => {
  const c = config();
  for (const [status, step] of [
    ['running', -1],
    ['running', 2],
    ['paused', 1],
    ['rolled-back', 0],
    ['complete', 3],
  ] as const) {
    const s = at(status, step, { revision: 4 });
    const next = applyAction(c, s, 'abort', NOW);
    t.like(next, { status: 'aborted', phase: s.phase, step, revision: 5 });
    t.like(next.lastDecision, { at: NOW, decision: 'abort', actor: 'operator' });
    t.regex(next.lastDecision.reason, /^aborted by an operator in .+: all traffic back to 1$/);
    t.deepEqual(effectsOf(c, next), { weights: { '1': 100 }, shadowPercent: 0, failover: false });
  }
  isConflict(t, () => applyAction(c, at('aborted', 1), 'abort', NOW), /^the rollout is already aborted$/);
});

test('every operator action records an operator decision and leaves its input alone', (t) => {
  const c = config();
  const cases: [RolloutState, OperatorAction][] = [
    [at('running', 0), 'pause'],
    [at('paused', 0), 'resume'],
    [at('rolled-back', 0), 'resume'],
    [at('running', 0), 'promote'],
    [at('running', 0), 'abort'],
  ];
  for (const [s, action] of cases) {
    const copy = structuredClone(s);
    const next = applyAction(c, s, action, NOW);
    t.is(next.lastDecision.actor, 'operator', action);
    t.is(next.lastDecision.at, NOW);
    t.is(next.revision, s.revision + 1);
    t.is(next.startedAt, s.startedAt);
    t.is(next.lastDecision.gates, undefined);
    t.deepEqual(s, copy);
  }
});
