// The JSON the admin API returns for a rollout (GET /admin/models/{m}/rollout and every action), and how it is built.

import type { RolloutConfig } from '../config/schema.js';
import { describePosition, effectsOf, type Decision, type GateResult, type RolloutPhase, type RolloutState, type RolloutStatus } from './machine.js';
import type { WindowSummary } from './signals.js';
import type { StoreDurability } from './store.js';

export interface DecisionView extends Omit<Decision, 'at'> {
  at: string;
}

export interface RolloutView {
  model: string;
  stable: string;
  candidate: string;
  status: RolloutStatus;
  phase: RolloutPhase;
  /** 1-based step number in the step phase; null in the shadow phase. */
  step: number | null;
  steps: number[];
  /** Human-readable position, e.g. "step 2/4 (25%)", or "all on stable (rolled back in step 2/4 (25%))". */
  position: string;
  /** The candidate's share of unversioned traffic now, percent. */
  candidateWeight: number;
  weights: Record<string, number>;
  /** Share of stable's traffic mirrored to the candidate now, percent. */
  shadowPercent: number;
  /** A failed candidate call is answered by stable. */
  failover: boolean;
  startedAt: string;
  phaseStartedAt: string;
  /** When the controller evaluates next (null when it is not evaluating: rolled back, aborted, complete). */
  nextEvaluationAt: string | null;
  revision: number;
  lastDecision: DecisionView;
  /** The latest gate evaluation and the window it judged. */
  gates: GateResult[] | null;
  window: WindowSummary | null;
  evaluatedAt: string | null;
  coordination: {
    mode: 'local' | 'redis';
    replica: string;
    leader: boolean;
    /** False while this replica could not read the shared state (it then serves the safe split: all on stable). */
    inSync: boolean;
  } & StoreDurability;
  config: Pick<RolloutConfig, 'shadow' | 'stepHoldMs' | 'evaluationIntervalMs' | 'windowMs' | 'gates'>;
}

const iso = (ms: number) => new Date(ms).toISOString();

export function rolloutView(
  model: string,
  config: RolloutConfig,
  state: RolloutState,
  coordination: RolloutView['coordination'],
  nextEvaluationAt: number | null,
): RolloutView {
  const effects = effectsOf(config, state);
  return {
    model,
    stable: config.stable,
    candidate: config.candidate,
    status: state.status,
    phase: state.phase,
    step: state.phase === 'step' ? state.step + 1 : null,
    steps: config.steps,
    position:
      state.status === 'rolled-back' || state.status === 'aborted'
        ? `all on stable (${state.status === 'aborted' ? 'aborted' : 'rolled back'} in ${describePosition(config, state)})`
        : describePosition(config, state),
    candidateWeight: effects.weights[config.candidate] ?? 0,
    weights: { [config.stable]: effects.weights[config.stable] ?? 0, [config.candidate]: effects.weights[config.candidate] ?? 0 },
    shadowPercent: effects.shadowPercent,
    failover: effects.failover,
    startedAt: iso(state.startedAt),
    phaseStartedAt: iso(state.phaseStartedAt),
    nextEvaluationAt: nextEvaluationAt === null ? null : iso(nextEvaluationAt),
    revision: state.revision,
    lastDecision: { ...state.lastDecision, at: iso(state.lastDecision.at) },
    gates: state.lastEvaluation?.gates ?? null,
    window: state.lastEvaluation?.window ?? null,
    evaluatedAt: state.lastEvaluation ? iso(state.lastEvaluation.at) : null,
    coordination,
    config: {
      shadow: config.shadow,
      stepHoldMs: config.stepHoldMs,
      evaluationIntervalMs: config.evaluationIntervalMs,
      windowMs: config.windowMs,
      gates: config.gates,
    },
  };
}
