// The report (pure): per-target medians and min–max over rounds, the issue's goals met or not, the Markdown tables.

import type { RoundFigures, Timings } from './measure.js';
import type { OnnxFigures } from './onnx.js';
import { spread, type Spread } from './stats.js';

export interface MachineFacts {
  date: string;
  cpuModel: string;
  cores: number;
  kernel: string;
  node: string;
  nginx: string;
  wrk: string;
  loadAtStart: string;
  pinning: string;
  placement: string;
  gatewayLogging: string;
  /** Node/V8 flags the gateway targets ran with (`--gateway-node-options`), or `none`. */
  gatewayNodeOptions?: string;
  nginxWorkers: string;
  onnxPlacement: string;
  /** Set when the machine was busy at the start (other processes compete for the cores). */
  warning?: string;
  /** What happened during the run that a reader should know (waits for a quiet machine, repeated rounds). */
  notes: string[];
}

export interface TargetSummary {
  target: string;
  description: string;
  rounds: number;
  maxRps: Spread;
  cpuUsPerReq: Spread;
  p50Ms: Spread;
  p99Ms: Spread;
  /** The open-loop driver's own lateness against its schedule, p99: the noise floor of the latency figures. */
  sendLagP99Ms: Spread;
  peakRssMb: Spread;
  gcP99MaxMs: Spread;
  gcP99RateMs: Spread;
  gcMaxMs: Spread;
  readyMs: Spread;
  first2sRps: Spread;
  steadyRps: Spread;
  firstOverSteady: Spread;
  steadyMs: Spread;
  steadyFromStartMs: Spread;
  driverCoreBusy: Spread;
  targetCoreBusy: Spread;
  targetCpuPct: Spread;
  foreignPct: Spread;
  /** Share of the second path (iris-b) among backend hits, per round. */
  bShare: Spread;
  backendHits: Record<string, number>;
  hitsOverDriverOk: Spread;
  /** Rounds whose backend hits were not between the driver's 2xx count and that plus the uncounted in-flight requests. */
  hitsMismatch: string[];
  failures: string[];
  checks: string[];
}

const pick = (rows: RoundFigures[], f: (r: RoundFigures) => number | undefined): Spread => spread(rows.map((r) => f(r) ?? NaN));

export function summarizeTarget(
  target: string,
  description: string,
  rows: RoundFigures[],
  paths: { a: string; b: string },
  cores: { driver: string; target: string },
): TargetSummary {
  const hits: Record<string, number> = {};
  for (const r of rows) for (const [p, n] of Object.entries(r.backendHits)) hits[p] = (hits[p] ?? 0) + n;
  const total = (r: RoundFigures): number => Object.values(r.backendHits).reduce((a, b) => a + b, 0);
  return {
    target,
    description,
    rounds: rows.length,
    maxRps: pick(rows, (r) => r.maxRps),
    cpuUsPerReq: pick(rows, (r) => r.cpuUsPerReq),
    p50Ms: pick(rows, (r) => r.latency.p50Us / 1000),
    p99Ms: pick(rows, (r) => r.latency.p99Us / 1000),
    sendLagP99Ms: pick(rows, (r) => r.latency.sendLagP99Us / 1000),
    peakRssMb: pick(rows, (r) => r.peakRssMb),
    gcP99MaxMs: pick(rows, (r) => r.gcMax?.gc.p99),
    gcP99RateMs: pick(rows, (r) => r.gcRate?.gc.p99),
    gcMaxMs: pick(rows, (r) => Math.max(r.gcMax?.gc.max ?? NaN, r.gcRate?.gc.max ?? NaN)),
    readyMs: pick(rows, (r) => r.readyMs),
    first2sRps: pick(rows, (r) => r.first2sRps),
    steadyRps: pick(rows, (r) => r.steadyRps),
    firstOverSteady: pick(rows, (r) => r.first2sRps / r.steadyRps),
    steadyMs: pick(rows, (r) => r.steadyMs),
    steadyFromStartMs: pick(rows, (r) => r.steadyFromStartMs),
    driverCoreBusy: pick(rows, (r) => r.coreBusy[cores.driver]),
    targetCoreBusy: pick(rows, (r) => r.coreBusy[cores.target]),
    targetCpuPct: pick(rows, (r) => r.targetCpuPct),
    foreignPct: pick(rows, (r) => r.foreignPct),
    bShare: pick(rows, (r) => (total(r) > 0 ? (r.backendHits[paths.b] ?? 0) / total(r) : NaN)),
    backendHits: hits,
    hitsOverDriverOk: pick(rows, (r) => (r.driverOk > 0 ? total(r) / r.driverOk : NaN)),
    hitsMismatch: rows
      .filter((r) => r.driverOk > 0 && (total(r) < r.driverOk * 0.999 || total(r) > r.driverOk + r.uncountedMax))
      .map((r) => `round ${r.round}: ${total(r)} backend hits for ${r.driverOk} driver 2xx (+ at most ${r.uncountedMax} in flight at wrk's stops)`),
    failures: [...new Set(rows.flatMap((r) => r.failures.map((f) => `round ${r.round}: ${f}`)))],
    checks: [...new Set(rows.flatMap((r) => r.checks))],
  };
}

export interface Goal {
  figure: string;
  value: Spread;
  unit: string;
  goal: string;
  met: boolean | undefined;
}

/** Per-round value of `f(a, b)` where both targets ran in that round. */
function paired(rows: RoundFigures[], a: string, b: string, f: (x: RoundFigures, y: RoundFigures) => number): Spread {
  const values: number[] = [];
  for (const x of rows.filter((r) => r.target === a)) {
    const y = rows.find((r) => r.target === b && r.round === x.round);
    if (y) values.push(f(x, y));
  }
  return spread(values);
}

/** The issue's targets, judged on the median. */
export function goals(rows: RoundFigures[]): Goal[] {
  const gw = rows.filter((r) => r.target === 'gateway-all');
  const judge = (s: Spread, ok: (v: number) => boolean): boolean | undefined => (s.n === 0 ? undefined : ok(s.median));
  const list: (Omit<Goal, 'met'> & { ok: (v: number) => boolean })[] = [];
  const add = (figure: string, value: Spread, unit: string, goal: string, ok: (v: number) => boolean): void =>
    void list.push({ figure, value, unit, goal, ok });
  add(
    'gateway-all req/s ÷ fastify req/s',
    paired(rows, 'gateway-all', 'fastify', (x, y) => x.maxRps / y.maxRps),
    '×',
    '≥ 1.5',
    (v) => v >= 1.5,
  );
  add(
    'gateway-all CPU µs/req ÷ http-proxy CPU µs/req',
    paired(rows, 'gateway-all', 'http-proxy', (x, y) => x.cpuUsPerReq / y.cpuUsPerReq),
    '×',
    '≤ 1.5',
    (v) => v <= 1.5,
  );
  add(
    'gateway-all p99 − nginx-proxy p99 at 300 req/s',
    paired(rows, 'gateway-all', 'nginx-proxy', (x, y) => (x.latency.p99Us - y.latency.p99Us) / 1000),
    'ms',
    '≤ 1 ms',
    (v) => v <= 1,
  );
  add(
    'gateway-all peak RSS',
    pick(gw, (r) => r.peakRssMb),
    'MB',
    '≤ 120 MB',
    (v) => v <= 120,
  );
  add(
    'gateway-all GC pause p99 (max load)',
    pick(gw, (r) => r.gcMax?.gc.p99),
    'ms',
    '< 2 ms',
    (v) => v < 2,
  );
  add(
    'gateway-all GC pause p99 (300 req/s)',
    pick(gw, (r) => r.gcRate?.gc.p99),
    'ms',
    '< 2 ms',
    (v) => v < 2,
  );
  add(
    'gateway-all time to steady, from process start',
    pick(gw, (r) => r.steadyFromStartMs / 1000),
    's',
    '≤ 10 s',
    (v) => v <= 10,
  );
  return list.map(({ ok, ...g }) => ({ ...g, met: judge(g.value, ok) }));
}

const num = (n: number, digits: number): string => (Number.isFinite(n) ? n.toFixed(digits) : '—');
/** "median (min–max)", or the median alone for one round. */
export function fmt(s: Spread, digits = 0): string {
  if (s.n === 0) return '—';
  if (s.n === 1 || s.min === s.max) return num(s.median, digits);
  return `${num(s.median, digits)} (${num(s.min, digits)}–${num(s.max, digits)})`;
}

export function markdown(meta: MachineFacts, timings: Timings, summaries: TargetSummary[], goalList: Goal[], onnx: OnnxFigures | undefined): string {
  const L: string[] = [];
  L.push(`# model-gateway bench, ${meta.date}`, '');
  L.push('## Machine', '');
  L.push(`- CPU: ${meta.cpuModel}, ${meta.cores} cores; kernel ${meta.kernel}; ${meta.node}; ${meta.nginx}; ${meta.wrk}`);
  L.push(`- load average at start: ${meta.loadAtStart}`);
  L.push(
    `- pinning: ${meta.pinning}`,
    `- placement: ${meta.placement}`,
    `- nginx: ${meta.nginxWorkers}`,
    `- gateway logging: ${meta.gatewayLogging}`,
    `- gateway Node/V8 flags: ${meta.gatewayNodeOptions ?? 'none'}`,
  );
  L.push(
    `- method: ${timings.rounds} round(s), targets interleaved (rotated order each round, every target restarted each round); warm-up ${timings.warmWindowS} s wrk windows until two in a row are within ${timings.steadyTolerance * 100} % (at most ${timings.warmMaxS} s); max throughput: wrk ${timings.threads} thread, ${timings.connections} connections, ${timings.maxS} s; latency: open-loop Node driver at ${timings.rate} req/s for ${timings.latencyS} s (after ${timings.latencyWarmupS} s not counted), from each request's intended send time`,
    '',
  );
  if (meta.warning) L.push(`> **${meta.warning}**`, '');
  for (const note of meta.notes) L.push(`> ${note}`, '');
  if (summaries.length > 0) proxyTables(L, timings, summaries, goalList);
  onnxTables(L, onnx);
  if (summaries.length > 0) {
    L.push('## Targets', '');
    for (const s of summaries) L.push(`- **${s.target}**: ${s.description}`);
  }
  return `${L.join('\n')}\n`;
}

function proxyTables(L: string[], timings: Timings, summaries: TargetSummary[], goalList: Goal[]): void {
  L.push('Cells: median (min–max) over the rounds.', '');
  L.push('## Proxy cost', '');
  L.push(
    '| target | max req/s | CPU µs/req | p50 @300/s ms | p99 @300/s ms | driver send lag p99 ms | peak RSS MB | GC p99 ms (max load) | GC p99 ms (300/s) | GC max ms |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  );
  for (const s of summaries)
    L.push(
      `| ${s.target} | ${fmt(s.maxRps)} | ${fmt(s.cpuUsPerReq, 1)} | ${fmt(s.p50Ms, 2)} | ${fmt(s.p99Ms, 2)} | ${fmt(s.sendLagP99Ms, 2)} | ${fmt(s.peakRssMb)} | ${fmt(s.gcP99MaxMs, 2)} | ${fmt(s.gcP99RateMs, 2)} | ${fmt(s.gcMaxMs, 2)} |`,
    );
  L.push(
    '',
    'CPU µs/req: utime+stime of every process of the target (nginx: master and workers) over the max window ÷ 2xx answers. Peak RSS: VmHWM (summed for nginx). GC: `perf_hooks` gc entries inside the target (— for nginx). Driver send lag: how late the open-loop driver itself sent against its schedule (it is included in the latency, which counts from the intended send time) — the noise floor of the latency columns on this machine.',
    '',
  );
  L.push('## Warm-up', '');
  L.push(
    `| target | spawn → ready ms | first ${timings.warmWindowS} s req/s | steady req/s | first ÷ steady | steady after (from ready) s | steady after (from spawn) s |`,
    '|---|---:|---:|---:|---:|---:|---:|',
  );
  for (const s of summaries)
    L.push(
      `| ${s.target} | ${fmt(s.readyMs)} | ${fmt(s.first2sRps)} | ${fmt(s.steadyRps)} | ${fmt(s.firstOverSteady, 2)} | ${fmt(ms2s(s.steadyMs), 1)} | ${fmt(ms2s(s.steadyFromStartMs), 1)} |`,
    );
  L.push(
    '',
    `"steady after": the end of the first warm-up window whose throughput is within ${timings.steadyTolerance * 100} % of the next one's; — when no two windows agreed within ${timings.warmMaxS} s.`,
    '',
  );
  L.push('## What reached the backend', '');
  L.push(
    '| target | backend POST 2xx per path (all rounds) | iris-b share | backend hits ÷ driver 2xx | max window: driver core / target core busy %, target CPU % | CPU of other processes, % of a core (worse window) | checks | problems |',
    '|---|---|---:|---:|---:|---:|---|---|',
  );
  for (const s of summaries) {
    const hits =
      Object.entries(s.backendHits)
        .map(([p, n]) => `${p.replace('/v2/models/', '').replace('/infer', '')}: ${n}`)
        .join(', ') || '— (is the backend)';
    L.push(
      `| ${s.target} | ${hits} | ${s.bShare.n ? `${fmt(pct(s.bShare), 1)} %` : '—'} | ${Object.keys(s.backendHits).length ? fmt(s.hitsOverDriverOk, 3) : '—'} | ${fmt(s.driverCoreBusy)} / ${fmt(s.targetCoreBusy)}, ${fmt(s.targetCpuPct)} | ${fmt(s.foreignPct, 1)} | ${s.checks.join('; ') || '—'} | ${s.failures.join('; ') || 'none'} |`,
    );
  }
  L.push(
    '',
    "Per-path counts come from the shared backend nginx's access log (POST, 2xx). Split targets must send 10 % (± 3 points) to iris-b, the others everything to iris-a; backend hits must match the drivers' 2xx count (wrk leaves up to one uncounted request per connection in flight when it stops, hence ratios slightly above 1).",
    '',
  );
  L.push("## The issue's goals", '', '| figure | value | goal | met? |', '|---|---:|---|---|');
  for (const g of goalList)
    L.push(`| ${g.figure} | ${fmt(g.value, 2)} ${g.unit} | ${g.goal} | ${g.met === undefined ? 'not measured' : g.met ? 'met' : 'not met'} |`);
  L.push('', 'Ratios and differences are computed per round (same round, both targets) and then summarised.', '');
}

function onnxTables(L: string[], onnx: OnnxFigures | undefined): void {
  if (onnx) {
    L.push('## ONNX in the loop (one run, not repeated)', '', onnx.placement, '');
    if (onnx.batching.length === 2) {
      const [off, on] = onnx.batching as [OnnxFigures['batching'][number], OnnxFigures['batching'][number]];
      L.push(
        '| mlp-large via serve-model, 1 row/call, wrk 32 connections, 1 worker | req/s | p99 ms | event-loop p99 ms | event-loop max ms | errors |',
        '|---|---:|---:|---:|---:|---:|',
      );
      for (const b of onnx.batching)
        L.push(`| batching ${b.batching} | ${num(b.rps, 0)} | ${num(b.p99Us / 1000, 2)} | ${num(b.loopP99Ms, 2)} | ${num(b.loopMaxMs, 2)} | ${b.errors} |`);
      L.push(
        `| on ÷ off | ${num(on.rps / off.rps, 2)}× (goal ≥ 2.5×: ${on.rps / off.rps >= 2.5 ? 'met' : 'not met'}) | | (goal < 5 ms: ${on.loopP99Ms < 5 ? 'met' : 'not met'}) | | |`,
        '',
      );
    }
    if (onnx.encodings.length === 2) {
      const [json, bin] = onnx.encodings as [OnnxFigures['encodings'][number], OnnxFigures['encodings'][number]];
      const bytes = (json.requestBytes + json.responseBytes) / (bin.requestBytes + bin.responseBytes);
      const cpu = json.gatewayCpuMsPerRequest / bin.gatewayCpuMsPerRequest;
      L.push(
        '| 1×3×224×224 FP32 through the gateway (in-process identity) | request bytes | response bytes | gateway CPU ms / request |',
        '|---|---:|---:|---:|',
      );
      for (const e of onnx.encodings) L.push(`| ${e.encoding} | ${e.requestBytes} | ${e.responseBytes} | ${num(e.gatewayCpuMsPerRequest, 2)} |`);
      L.push(
        `| JSON ÷ binary | ${num(bytes, 1)}× bytes (goal ≥ 4×: ${bytes >= 4 ? 'met' : 'not met'}) | | ${num(cpu, 1)}× CPU (goal ≥ 20×: ${cpu >= 20 ? 'met' : 'not met'}) |`,
        '',
      );
    }
  }
}

const ms2s = (s: Spread): Spread => ({ ...s, median: s.median / 1000, min: s.min / 1000, max: s.max / 1000 });
const pct = (s: Spread): Spread => ({ ...s, median: s.median * 100, min: s.min * 100, max: s.max * 100 });

/** Split check: the second path's share within ±3 points of the expected one, every round. */
export function splitProblems(s: TargetSummary, expectedB: number): string[] {
  if (s.bShare.n === 0) return [];
  const out: string[] = [];
  if (s.bShare.min < expectedB - 0.03 || s.bShare.max > expectedB + 0.03)
    out.push(`iris-b share ${(s.bShare.min * 100).toFixed(1)}–${(s.bShare.max * 100).toFixed(1)} %, expected ${(expectedB * 100).toFixed(0)} %`);
  out.push(...s.hitsMismatch);
  return out;
}
