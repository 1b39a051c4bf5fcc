// The rollout state machine, free of I/O: gate evaluation, the controller's decision per evaluation, operator actions,
// and what a state means for traffic. Everything here is a pure function of its arguments (time is passed in).

import type { RolloutConfig } from '../config/schema.js';
import { GatewayError } from '../errors/gateway-error.js';
import { binomialUpperTail, countSlowerThan, P99_CONFIDENCE } from './latency-stats.js';
import { summaryOf, type WindowSamples, type WindowSummary } from './signals.js';

/**
 * running: the controller advances it; paused: an operator froze it (gates are still checked, and a failing one
 * still rolls back); rolled-back: a gate failed, all traffic is on stable until an operator resumes; aborted: an
 * operator sent all traffic back to stable; complete: the last step was reached and held.
 */
export type RolloutStatus = 'running' | 'paused' | 'rolled-back' | 'aborted' | 'complete';
export type RolloutPhase = 'shadow' | 'step';
export type DecisionKind = 'start' | 'hold' | 'advance' | 'complete' | 'rollback' | 'pause' | 'resume' | 'restart' | 'promote' | 'abort';
export type Actor = 'controller' | 'operator';
export type OperatorAction = 'pause' | 'resume' | 'promote' | 'abort';

export interface GateResult {
  gate: 'agreement' | 'errorRate' | 'p99';
  /** waiting: too few samples to judge; skipped: does not apply in this phase. */
  status: 'pass' | 'fail' | 'waiting' | 'skipped';
  value: number | null;
  /** The bound the value is held to (agreement: minimum; the others: maximum). */
  limit: number | null;
  samples: number;
  detail: string;
}

export interface Decision {
  at: number;
  decision: DecisionKind;
  actor: Actor;
  reason: string;
  from: { status: RolloutStatus; phase: RolloutPhase; step: number };
  to: { status: RolloutStatus; phase: RolloutPhase; step: number };
  gates?: GateResult[];
  window?: WindowSummary;
}

export interface RolloutState {
  status: RolloutStatus;
  phase: RolloutPhase;
  /** Index into `steps` in the step phase; -1 in the shadow phase. */
  step: number;
  /** Changes whenever a phase or step (re)starts: samples of older phases are never judged. */
  phaseId: number;
  phaseStartedAt: number;
  startedAt: number;
  /** Bumped by every change; the shared store's compare-and-set token. */
  revision: number;
  /** Stable's last p99 measured on minSamples calls in this rollout (shown; the gate compares same-window calls only). */
  stableP99Ms: number | null;
  lastDecision: Decision;
  /** The controller's latest gate evaluation (operator actions do not replace it). */
  lastEvaluation: { at: number; gates: GateResult[]; window: WindowSummary } | null;
}

/** What a state means for traffic: unversioned weights, the shadow share mirrored to the candidate, failover. */
export interface RolloutEffects {
  weights: Record<string, number>;
  shadowPercent: number;
  /** A candidate call that fails is answered by stable instead (the failure still counts against the candidate). */
  failover: boolean;
}

const position = (s: RolloutState) => ({ status: s.status, phase: s.phase, step: s.step });

export function candidateWeight(config: RolloutConfig, state: Pick<RolloutState, 'status' | 'phase' | 'step'>): number {
  if (state.status === 'rolled-back' || state.status === 'aborted' || state.phase === 'shadow') return 0;
  return config.steps[state.step]!;
}

/** Copies load the candidate beside its real traffic: a weight step mirrors only with `shadow.duringSteps`. */
function mirrorsInSteps(config: RolloutConfig, w: number): boolean {
  return config.shadow.duringSteps && w > 0 && w < 100;
}

export function effectsOf(config: RolloutConfig, state: RolloutState): RolloutEffects {
  const w = candidateWeight(config, state);
  const live = state.status === 'running' || state.status === 'paused';
  return {
    weights: w >= 100 ? { [config.candidate]: 100 } : w === 0 ? { [config.stable]: 100 } : { [config.stable]: 100 - w, [config.candidate]: w },
    shadowPercent: live && (state.phase === 'shadow' || mirrorsInSteps(config, w)) ? config.shadow.percent : 0,
    failover: live && state.phase === 'step',
  };
}

export function initialState(now: number, phaseId = 1): RolloutState {
  const at = { status: 'running', phase: 'shadow', step: -1 } as const;
  return {
    ...at,
    phaseId,
    phaseStartedAt: now,
    startedAt: now,
    revision: 1,
    stableP99Ms: null,
    lastEvaluation: null,
    lastDecision: { at: now, decision: 'start', actor: 'controller', reason: 'rollout configured: shadow phase begins', from: at, to: at },
  };
}

const pct = (x: number) => `${(x * 100).toFixed(2)}%`;
const msText = (x: number) => `${x.toFixed(x < 10 ? 2 : 0)} ms`;

const pctText = (x: number) => `${(x * 100).toFixed(1)}%`;

/**
 * The p99 gate, on real requests only, over calls both versions served in the same window (never a time-shifted
 * reference: load and machine noise change over time). Two limits, the lower one applying:
 *
 * - relative, while stable still serves and no copies load the candidate (they do only with `shadow.duringSteps`):
 *   max(maxP99Ratio × stable's p99, stable's p99 + p99AllowanceMs). It fails only
 *   when the candidate holds more of the calls slower than the limit than its share of all calls explains, at
 *   P99_CONFIDENCE. A stall of the machine slows both versions' calls alike, so it is never read as the candidate's.
 * - absolute, `maxP99Ms`: fails when even the lower confidence bound of the candidate's p99 is over it.
 *
 * The gate passes while the candidate's p99 is within the limit and waits in between (it looks slower, but its samples
 * do not show it yet), so such a candidate neither advances nor rolls back. Skipped while the candidate gets no real
 * traffic (the shadow phase), and at 100 % without `maxP99Ms` (nothing runs beside it to compare with).
 */
function latencyGate(config: RolloutConfig, state: RolloutState, w: WindowSamples): GateResult {
  const g = config.gates;
  const min = g.minSamples;
  const c = w.candidate;
  const s = w.stable;
  const weight = candidateWeight(config, state);
  const base = { gate: 'p99' as const, value: c.p99Ms };
  if (weight === 0)
    return { ...base, status: 'skipped', limit: null, samples: c.timed, detail: 'latency is judged on real requests: the candidate gets none in this phase' };
  if (weight >= 100 && g.maxP99Ms === undefined)
    return { ...base, status: 'skipped', limit: null, samples: c.timed, detail: 'stable serves nothing at 100% to compare with, and no maxP99Ms is set' };
  // Copies make the candidate busier than its real share: its real calls are no longer comparable with stable's.
  const loadedByCopies = mirrorsInSteps(config, weight);
  if (loadedByCopies && g.maxP99Ms === undefined)
    return {
      ...base,
      status: 'skipped',
      limit: null,
      samples: c.timed,
      detail: 'copies mirrored in this step load the candidate beyond its real share (shadow.duringSteps), and no maxP99Ms is set',
    };
  if (c.timed < min || c.p99Ms === null || c.p99LowerBoundMs === null)
    return { ...base, status: 'waiting', limit: null, samples: c.timed, detail: `${c.timed}/${min} timed candidate calls` };
  let relative: number | null = null;
  if (weight < 100 && !loadedByCopies) {
    if (s.timed < min || s.p99Ms === null)
      return { ...base, status: 'waiting', limit: null, samples: s.timed, detail: `${s.timed}/${min} timed stable calls to compare with` };
    relative = Math.max(s.p99Ms * g.maxP99Ratio, s.p99Ms + g.p99AllowanceMs);
  }
  const limit = relative === null ? g.maxP99Ms! : g.maxP99Ms === undefined ? relative : Math.min(relative, g.maxP99Ms);
  const against = [relative === null ? undefined : `stable ${msText(s.p99Ms!)}`, g.maxP99Ms === undefined ? undefined : `maximum ${msText(g.maxP99Ms)}`];
  const measured = `candidate p99 ${msText(c.p99Ms)} vs ${against.filter((x) => x !== undefined).join(', ')} (limit ${msText(limit)})`;
  const judged = { ...base, limit, samples: c.timed };
  if (c.p99Ms <= limit) return { ...judged, status: 'pass', detail: measured };

  const evidence: string[] = [];
  const doubts: string[] = [];
  if (relative !== null && c.p99Ms > relative) {
    const slowC = countSlowerThan(c.latency, relative);
    const slowS = countSlowerThan(s.latency, relative);
    const share = c.timed / (c.timed + s.timed);
    const split = `${slowC} of ${c.timed} candidate calls and ${slowS} of ${s.timed} stable calls slower than ${msText(relative)}`;
    if (binomialUpperTail(slowC + slowS, share, slowC) < 1 - P99_CONFIDENCE) evidence.push(`${split}: more than its ${pctText(share)} share of calls explains`);
    else doubts.push(split);
  }
  if (g.maxP99Ms !== undefined && c.p99Ms > g.maxP99Ms) {
    if (c.p99LowerBoundMs > g.maxP99Ms) evidence.push(`its p99 is at least ${msText(c.p99LowerBoundMs)} (${P99_CONFIDENCE * 100}% confidence)`);
    else doubts.push(`its p99 may be as low as ${msText(c.p99LowerBoundMs)}`);
  }
  if (evidence.length > 0) return { ...judged, status: 'fail', detail: `${measured}; ${evidence.join('; ')}` };
  return { ...judged, status: 'waiting', detail: `${measured}, not conclusive yet (${doubts.join('; ')}): holding for more samples` };
}

/** Judges the three gates on a window. Agreement applies while stable traffic is mirrored (candidate below 100 %). */
export function evaluateGates(config: RolloutConfig, state: RolloutState, w: WindowSamples): { gates: GateResult[]; stableP99Ms: number | null } {
  const g = config.gates;
  const min = g.minSamples;
  const gates: GateResult[] = [];

  if (effectsOf(config, state).shadowPercent > 0) {
    const value = w.compared === 0 ? null : w.agreed / w.compared;
    if (w.compared < min)
      gates.push({ gate: 'agreement', status: 'waiting', value, limit: g.minAgreement, samples: w.compared, detail: `${w.compared}/${min} comparisons` });
    else
      gates.push({
        gate: 'agreement',
        status: value! >= g.minAgreement ? 'pass' : 'fail',
        value,
        limit: g.minAgreement,
        samples: w.compared,
        detail: `agreement ${pct(value!)} (minimum ${pct(g.minAgreement)}) over ${w.compared} comparisons`,
      });
  } else {
    gates.push({
      gate: 'agreement',
      status: 'skipped',
      value: null,
      limit: g.minAgreement,
      samples: w.compared,
      detail: 'stable traffic is not mirrored in this phase',
    });
  }

  const c = w.candidate;
  const errorRate = c.calls === 0 ? null : c.errors / c.calls;
  if (c.calls < min)
    gates.push({
      gate: 'errorRate',
      status: 'waiting',
      value: errorRate,
      limit: g.maxErrorRate,
      samples: c.calls,
      detail: `${c.calls}/${min} candidate calls`,
    });
  else
    gates.push({
      gate: 'errorRate',
      status: errorRate! <= g.maxErrorRate ? 'pass' : 'fail',
      value: errorRate,
      limit: g.maxErrorRate,
      samples: c.calls,
      detail: `candidate error rate ${pct(errorRate!)} (maximum ${pct(g.maxErrorRate)}) over ${c.calls} calls`,
    });

  // Stable's last p99 measured on enough calls, for the record: the gate itself only compares calls of the same window.
  const stableP99Ms = w.stable.timed >= min && w.stable.p99Ms !== null ? w.stable.p99Ms : state.stableP99Ms;
  gates.push(latencyGate(config, state, w));
  return { gates, stableP99Ms };
}

function moved(
  state: RolloutState,
  now: number,
  to: Partial<Pick<RolloutState, 'status' | 'phase' | 'step'>>,
  decision: Omit<Decision, 'from' | 'to' | 'at'>,
): RolloutState {
  const next = { ...state, ...to, revision: state.revision + 1 };
  const phaseChanged = next.phase !== state.phase || next.step !== state.step;
  if (phaseChanged) {
    next.phaseId = state.phaseId + 1;
    next.phaseStartedAt = now;
  }
  next.lastDecision = { at: now, ...decision, from: position(state), to: position(next) };
  return next;
}

/** The step after the current position: shadow → first step → ... → complete. */
function advanced(config: RolloutConfig, state: RolloutState): Pick<RolloutState, 'status' | 'phase' | 'step'> {
  if (state.phase === 'shadow') return { status: state.status, phase: 'step', step: 0 };
  if (state.step + 1 < config.steps.length) return { status: state.status, phase: 'step', step: state.step + 1 };
  return { status: 'complete', phase: 'step', step: state.step };
}

function where(config: RolloutConfig, s: Pick<RolloutState, 'status' | 'phase' | 'step'>): string {
  if (s.status === 'complete') return `complete at ${config.steps[s.step]}%`;
  return s.phase === 'shadow' ? 'shadow phase' : `step ${s.step + 1}/${config.steps.length} (${config.steps[s.step]}%)`;
}

/**
 * One evaluation by the controller: roll back on a failing gate (even when paused), otherwise advance once the phase
 * has run its course and every applicable gate passes, otherwise hold. Returns the state unchanged but with a new
 * decision when it holds. Only running and paused rollouts are evaluated.
 */
export function evaluate(config: RolloutConfig, state: RolloutState, samples: WindowSamples, now: number): RolloutState {
  const { gates, stableP99Ms } = evaluateGates(config, state, samples);
  const window = summaryOf(samples);
  const base = { ...state, stableP99Ms, lastEvaluation: { at: now, gates, window } };
  const failed = gates.filter((g) => g.status === 'fail');
  if (failed.length > 0) {
    return moved(
      base,
      now,
      { status: 'rolled-back' },
      { decision: 'rollback', actor: 'controller', reason: `rolled back in ${where(config, state)}: ${failed.map((g) => g.detail).join('; ')}`, gates, window },
    );
  }
  const hold = (reason: string): RolloutState => moved(base, now, {}, { decision: 'hold', actor: 'controller', reason, gates, window });
  if (state.status === 'paused') return hold(`paused by an operator in ${where(config, state)}`);
  const elapsed = now - state.phaseStartedAt;
  if (state.phase === 'shadow') {
    const { requests, durationMs } = config.shadow;
    if (window.phaseCompared < requests && elapsed < durationMs) {
      return hold(`shadow phase: ${window.phaseCompared}/${requests} requests compared, ${Math.floor(elapsed / 1000)} s of ${Math.floor(durationMs / 1000)} s`);
    }
  } else if (elapsed < config.stepHoldMs) {
    return hold(`holding ${where(config, state)}: ${Math.ceil((config.stepHoldMs - elapsed) / 1000)} s left`);
  }
  const waiting = gates.filter((g) => g.status === 'waiting');
  if (waiting.length > 0) return hold(`${where(config, state)} done, waiting for samples: ${waiting.map((g) => `${g.gate} ${g.detail}`).join('; ')}`);
  const to = advanced(config, state);
  const passed = gates
    .filter((g) => g.status === 'pass')
    .map((g) => g.gate)
    .join(', ');
  return moved(base, now, to, {
    decision: to.status === 'complete' ? 'complete' : 'advance',
    actor: 'controller',
    reason: `${where(config, state)} passed (${passed}): ${to.status === 'complete' ? `rollout complete, candidate at ${config.steps[to.step]}%` : `advancing to ${where(config, to)}`}`,
    gates,
    window,
  });
}

const conflict = (message: string) => new GatewayError('GW_ERR_ROLLOUT_CONFLICT', message);

/** An operator's action; throws GW_ERR_ROLLOUT_CONFLICT (409) when the status does not allow it. */
export function applyAction(config: RolloutConfig, state: RolloutState, action: OperatorAction, now: number, options: { full?: boolean } = {}): RolloutState {
  const actor: Actor = 'operator';
  switch (action) {
    case 'pause':
      if (state.status !== 'running') throw conflict(`cannot pause: the rollout is ${state.status}`);
      return moved(state, now, { status: 'paused' }, { decision: 'pause', actor, reason: `paused by an operator in ${where(config, state)}` });
    case 'resume':
      if (state.status === 'paused') {
        // The hold starts again: samples taken while paused may be from a situation the operator was looking into.
        const next = moved(
          state,
          now,
          { status: 'running' },
          { decision: 'resume', actor, reason: `resumed by an operator in ${where(config, state)}; the phase's hold starts again` },
        );
        return { ...next, phaseId: state.phaseId + 1, phaseStartedAt: now };
      }
      if (state.status === 'rolled-back' || state.status === 'aborted') {
        const next = moved(
          { ...state, stableP99Ms: null, lastEvaluation: null },
          now,
          { status: 'running', phase: 'shadow', step: -1 },
          {
            decision: 'restart',
            actor,
            reason: `restarted by an operator after ${state.status === 'aborted' ? 'an abort' : 'a rollback'}: shadow phase begins`,
          },
        );
        return next.phaseId === state.phaseId ? { ...next, phaseId: state.phaseId + 1, phaseStartedAt: now } : next;
      }
      throw conflict(`cannot resume: the rollout is ${state.status}`);
    case 'promote': {
      if (state.status !== 'running' && state.status !== 'paused')
        throw conflict(`cannot promote: the rollout is ${state.status}${state.status === 'complete' ? '' : ' (resume it first)'}`);
      const to = options.full ? { status: 'complete' as const, phase: 'step' as const, step: config.steps.length - 1 } : advanced(config, state);
      return moved(state, now, to, { decision: 'promote', actor, reason: `promoted by an operator from ${where(config, state)} to ${where(config, to)}` });
    }
    case 'abort':
      if (state.status === 'aborted') throw conflict('the rollout is already aborted');
      return moved(
        state,
        now,
        { status: 'aborted' },
        { decision: 'abort', actor, reason: `aborted by an operator in ${where(config, state)}: all traffic back to ${config.stable}` },
      );
  }
}

export { where as describePosition };
