// The wire format the console reads: the part of src/admin/console-view.ts's ConsoleSnapshot (and the admin API's
// answers) that the page uses, written out here because the page is compiled apart from the server.

export type Role = 'read' | 'write';

export interface Session {
  subject: string;
  role: Role;
  via: 'static-token' | 'jwt';
  expiresAt: string;
  csrfToken: string;
}

export interface Live {
  rps: number;
  errorRate: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
  requests: number;
  windowS: number;
}

export interface Guard {
  breaker: {
    state: 'closed' | 'open' | 'half-open' | 'disabled';
    retryInMs?: number;
    window: { requests: number; failures: number; errorPercent: number };
    opened: number;
    rejected: number;
  };
  limits: { maxConcurrent: number; maxQueue: number; inFlight: number; queued: number; admitted: number; shed: number };
}

export interface Version {
  version: string;
  weight: number;
  share: number;
  ready: boolean;
  backend: string;
  shadowPercent: number | null;
  guard: Guard | null;
  live: Live | null;
}

export interface Pair {
  primaryVersion: string;
  shadowVersion: string;
  since: string;
  mirrored: number;
  dropped: number;
  compared: number;
  agreed: number;
  agreementRate: number | null;
  errors: { primary: number; shadow: number; shadowTimeouts: number };
  outputs: Record<string, { mode: string; rows: number; rowsAgreed: number; agreementRate: number | null }>;
}

export interface Gate {
  gate: 'agreement' | 'errorRate' | 'p99';
  status: 'pass' | 'fail' | 'waiting' | 'skipped';
  value: number | null;
  limit: number | null;
  samples: number;
  detail: string;
}

export interface Rollout {
  stable: string;
  candidate: string;
  status: 'running' | 'paused' | 'rolled-back' | 'aborted' | 'complete';
  phase: 'shadow' | 'step';
  step: number | null;
  steps: number[];
  position: string;
  weights: Record<string, number>;
  shadowPercent: number;
  nextEvaluationAt: string | null;
  lastDecision: { at: string; decision: string; actor: string; reason: string };
  gates: Gate[] | null;
  evaluatedAt: string | null;
}

export interface Model {
  name: string;
  ready: boolean;
  defaultVersion: string;
  weightsSource: 'rollout' | 'override' | 'config' | 'default';
  weights: Record<string, number>;
  configWeights: Record<string, number> | null;
  override: { weights: Record<string, number>; setAt: string } | null;
  versions: Version[];
  shadowPairs: Pair[];
  rollout: Rollout | null;
  rolloutError?: string;
}

export interface Reload {
  trigger: string;
  at: string;
  outcome: 'applied' | 'unchanged' | 'rejected' | 'failed';
  generation: number;
  error?: string;
  problems?: string[];
  restartRequired?: string[];
}

export interface AuditEntry {
  time: string;
  actor: { subject: string | null; kind: string; role: Role | null; via?: string };
  peer: string;
  action: string;
  target: Record<string, string> | null;
  request: { method: string; path: string };
  outcome: { status: number; error?: string };
  before: unknown;
  after: unknown;
}

export interface ChartPoint {
  rps: number;
  errors: number;
  p99Ms: number | null;
}

export interface Snapshot {
  at: string;
  gateway: {
    generation: number;
    configHash: string;
    configFile: string | null;
    metrics: boolean;
    disagreementLog: { path: string; includeInputs: boolean } | null;
    audit: { path: string | null; lastError: string | null } | null;
  };
  models: Model[];
  reloads: Reload[];
  audit: AuditEntry[];
  chart: { t: number; points: Record<string, ChartPoint> } | null;
}

export interface History {
  metrics: boolean;
  t: number[];
  series: Record<string, { rps: (number | null)[]; errors: (number | null)[]; p99Ms: (number | null)[] }>;
}

export interface LoggedTensor {
  name: string;
  datatype: string;
  shape: number[];
  data: unknown[];
  truncated?: true;
}

export interface Disagreement {
  time: string;
  requestId: string;
  primaryVersion: string;
  shadowVersion: string;
  comparison: { name: string; mode: string; rows: number; rowsAgreed: number }[];
  inputs?: LoggedTensor[];
  primary: LoggedTensor[];
  shadow: LoggedTensor[];
}
