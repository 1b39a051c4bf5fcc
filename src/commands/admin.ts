// model-gateway status | shift | reload | rollout: the admin API for operators, with human-readable output.

import { parseArgs } from 'node:util';
import { ADMIN_TOKEN_ENV } from '../admin/token.js';
import type { ReloadReport } from '../reload/controller.js';
import type { ModelView, ShadowView } from '../reload/views.js';
import type { GateResult } from '../rollout/machine.js';
import type { RolloutView } from '../rollout/view.js';
import type { PairSummary } from '../shadow/stats.js';

export const ADMIN_URL_ENV = 'MODEL_GATEWAY_ADMIN_URL';
export const DEFAULT_ADMIN_URL = 'http://127.0.0.1:8081';
const REQUEST_TIMEOUT_MS = 10_000;

export const ADMIN_USAGE = `  model-gateway status [--admin-url URL] [--token TOKEN] [--json]
      Models, versions, weights (and whether they are runtime overrides), shadow comparison, last reload.
  model-gateway shift MODEL VERSION=WEIGHT... [--admin-url URL] [--token TOKEN]
      Set a model's traffic weights at runtime, e.g. \`shift iris 1=75 2=25\`; versions not named get 0.
  model-gateway shift MODEL --reset
      Drop the runtime override: the config's weights apply again.
  model-gateway reload [--admin-url URL] [--token TOKEN]
      Re-read the config file now (the gateway also watches it).
  model-gateway rollout status [MODEL] [--admin-url URL] [--token TOKEN] [--json]
      A model's progressive rollout (default: every model under one): position, weights, last decision, gates.
  model-gateway rollout pause|resume|abort MODEL [--json]
      Freeze a rollout, resume it (or restart one rolled back or aborted), or send all traffic back to stable.
  model-gateway rollout promote MODEL [--full] [--json]
      Move a rollout to its next step now, skipping the gates; --full goes straight to the last step (complete).
  Admin URL and token default to $${ADMIN_URL_ENV} (else ${DEFAULT_ADMIN_URL}) and $${ADMIN_TOKEN_ENV}.
`;

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: NodeJS.ProcessEnv;
}

/** A failure to show the operator as one clear line (exit 1). */
class AdminCallError extends Error {}

class AdminClient {
  constructor(
    readonly baseUrl: string,
    private readonly token: string | undefined,
  ) {}

  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    if (!this.token) throw new AdminCallError(`no admin token: pass --token or set ${ADMIN_TOKEN_ENV}`);
    let res: Response;
    try {
      res = await fetch(new URL(path, this.baseUrl), {
        method,
        headers: { authorization: `Bearer ${this.token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    } catch (err) {
      const inner = (err as { cause?: { code?: string; message?: string } }).cause;
      const cause = inner?.code ?? inner?.message ?? (err as Error).message;
      throw new AdminCallError(`cannot reach the admin API at ${this.baseUrl} (${cause}); is the gateway running with its admin API enabled?`);
    }
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new AdminCallError(`the admin API at ${this.baseUrl} answered ${res.status} with a non-JSON body`);
    }
    if (res.status === 401) throw new AdminCallError(`the admin API refused the token (${errorOf(parsed)})`);
    if (!res.ok) throw new AdminCallError(`${method} ${path} failed with ${res.status}: ${errorOf(parsed)}`);
    return parsed as T;
  }
}

function errorOf(body: unknown): string {
  return typeof body === 'object' && body !== null && typeof (body as { error?: unknown }).error === 'string'
    ? (body as { error: string }).error
    : JSON.stringify(body);
}

const pct = (x: number | null, digits = 1) => (x === null ? 'n/a' : `${(x * 100).toFixed(digits)}%`);
const ms = (x: number | null) => (x === null ? 'n/a' : `${x.toFixed(x < 10 ? 2 : 0)} ms`);

/** Left-aligned columns separated by two spaces. */
function table(rows: string[][], indent = '  '): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map(
    (r) =>
      indent +
      r
        .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd(),
  );
}

function describeReload(r: ReloadReport): string {
  const head = `${r.outcome.toUpperCase()} (${r.trigger}, ${r.at})`;
  if (r.outcome === 'rejected' || r.outcome === 'failed') {
    const detail = r.problems && r.problems.length > 0 ? r.problems.map((p) => `\n    - ${p}`).join('') : `\n    ${r.error ?? ''}`;
    return `${head}: the running config (generation ${r.generation}) is unchanged${detail}`;
  }
  return r.restartRequired ? `${head}; needs a restart to take effect: ${r.restartRequired.join(', ')}` : head;
}

function weightsText(weights: Record<string, number>): string {
  return Object.entries(weights)
    .map(([v, w]) => `${v}=${w}`)
    .join(' ');
}

function describePair(p: PairSummary): string {
  const outputs = Object.entries(p.outputs)
    .map(([name, o]) => `${name} ${pct(o.agreementRate)}`)
    .join(', ');
  return [
    `shadow ${p.primaryVersion} → ${p.shadowVersion}: ${p.compared} compared, agreement ${pct(p.agreementRate)}${outputs ? ` (${outputs})` : ''}`,
    `      mirrored ${p.mirrored}, dropped ${p.dropped}, errors primary ${p.errors.primary} / shadow ${p.errors.shadow}, shadow timeouts ${p.errors.shadowTimeouts}`,
    `      p99 latency primary ${ms(p.latencyMs.primary.p99Ms)}, shadow ${ms(p.latencyMs.shadow.p99Ms)}`,
  ].join('\n');
}

function describeModel(m: ModelView, shadow: ShadowView): string[] {
  const source =
    m.weightsSource === 'rollout'
      ? `weights set by its progressive rollout (model-gateway rollout status ${m.name})`
      : m.weightsSource === 'override'
        ? `RUNTIME OVERRIDE since ${m.override!.setAt} (config: ${m.configWeights ? weightsText(m.configWeights) : 'none'})`
        : m.weightsSource === 'config'
          ? 'weights from config'
          : `no weights: version ${m.defaultVersion} takes all`;
  const sticky = m.sticky ? `, sticky by ${'header' in m.sticky ? `header ${m.sticky.header}` : `claim ${m.sticky.claim}`}` : '';
  const lines = [`${m.name}  ${m.ready ? 'ready' : 'NOT READY'}  ${source}${sticky}`];
  const rows = [['VERSION', 'WEIGHT', 'SHARE', 'READY', 'SHADOW']];
  for (const v of m.versions)
    rows.push([
      v.version,
      String(v.weight),
      pct(v.share),
      v.ready ? 'yes' : 'NO',
      v.shadowPercent === null ? '-' : `${v.shadowPercent}% of other versions' traffic`,
    ]);
  lines.push(...table(rows));
  for (const p of shadow.pairs) lines.push(`  ${describePair(p)}`);
  return lines;
}

interface Common {
  client: AdminClient;
  json: boolean;
  positionals: string[];
  reset: boolean;
  full: boolean;
}

function parseCommon(argv: string[], env: NodeJS.ProcessEnv): Common {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      'admin-url': { type: 'string' },
      token: { type: 'string' },
      json: { type: 'boolean', default: false },
      reset: { type: 'boolean', default: false },
      full: { type: 'boolean', default: false },
    },
    allowPositionals: true,
    strict: true,
  });
  const url = values['admin-url'] ?? env[ADMIN_URL_ENV] ?? DEFAULT_ADMIN_URL;
  try {
    new URL(url);
  } catch {
    throw new UsageError(`--admin-url: '${url}' is not a URL`);
  }
  return {
    client: new AdminClient(url, values.token ?? (env[ADMIN_TOKEN_ENV] || undefined)),
    json: values.json!,
    positionals,
    reset: values.reset!,
    full: values.full!,
  };
}

class UsageError extends Error {}

/** Parses `1=75 2=25` into a weight map; the gateway validates versions and values. */
export function parseWeightArgs(args: readonly string[]): Record<string, number> {
  if (args.length === 0) throw new UsageError('name at least one VERSION=WEIGHT, e.g. 1=75 2=25');
  const weights: Record<string, number> = {};
  for (const arg of args) {
    const m = /^([^=\s]+)=(\d+)$/.exec(arg);
    if (!m) throw new UsageError(`'${arg}' is not VERSION=WEIGHT with a non-negative integer weight`);
    if (Object.hasOwn(weights, m[1]!)) throw new UsageError(`version '${m[1]}' is given twice`);
    weights[m[1]!] = Number(m[2]);
  }
  return weights;
}

async function status(c: Common, io: CliIo): Promise<number> {
  const gateway = await c.client.call<{ generation: number; configFile: string | null; watching: boolean; reload: { lastAttempt: ReloadReport } }>(
    'GET',
    '/admin/status',
  );
  const { models } = await c.client.call<{ models: ModelView[] }>('GET', '/admin/models');
  const shadows = await Promise.all(models.map((m) => c.client.call<ShadowView>('GET', `/admin/models/${encodeURIComponent(m.name)}/shadow`)));
  if (c.json) {
    io.stdout(`${JSON.stringify({ gateway, models, shadows }, null, 2)}\n`);
    return 0;
  }
  const lines = [
    `gateway at ${c.client.baseUrl}: generation ${gateway.generation}, config ${gateway.configFile ?? '(not from a file)'}${gateway.watching ? ' (watched)' : ''}`,
    `last reload: ${describeReload(gateway.reload.lastAttempt)}`,
  ];
  models.forEach((m, i) => lines.push('', ...describeModel(m, shadows[i]!)));
  io.stdout(`${lines.join('\n')}\n`);
  return 0;
}

async function shift(c: Common, io: CliIo): Promise<number> {
  const [model, ...pairs] = c.positionals;
  if (!model) throw new UsageError('usage: model-gateway shift MODEL VERSION=WEIGHT... | shift MODEL --reset');
  const path = `/admin/models/${encodeURIComponent(model)}/weights`;
  const before = await c.client.call<ModelView>('GET', `/admin/models/${encodeURIComponent(model)}`);
  let after: ModelView;
  if (c.reset) {
    if (pairs.length > 0) throw new UsageError('--reset takes no VERSION=WEIGHT arguments');
    after = await c.client.call<ModelView>('DELETE', path);
  } else {
    after = await c.client.call<ModelView>('PUT', path, parseWeightArgs(pairs));
  }
  const shares = after.versions.map((v) => `${v.version} ${pct(v.share)}`).join(', ');
  io.stdout(`${model}: weights ${weightsText(before.weights)} → ${weightsText(after.weights)} (${shares})\n`);
  io.stdout(after.override ? `  ${after.override.note}\n` : "  the config's weights apply (no runtime override)\n");
  return 0;
}

async function reload(c: Common, io: CliIo): Promise<number> {
  const report = await c.client.call<ReloadReport>('POST', '/admin/reload');
  io.stdout(`reload: ${describeReload(report)}; generation ${report.generation}\n`);
  if (report.backends) {
    const b = report.backends;
    io.stdout(
      `  backends: ${b.added.length} started (${b.added.join(', ') || '-'}), ${b.reused.length} reused, ${b.retired.length} retired (${b.retired.join(', ') || '-'})\n`,
    );
  }
  for (const d of report.droppedOverrides ?? []) io.stdout(`  runtime override of ${d.model} dropped: ${d.reason}\n`);
  return 0;
}

const ROLLOUT_SUBCOMMANDS = ['status', 'pause', 'resume', 'promote', 'abort'] as const;
type RolloutSubcommand = (typeof ROLLOUT_SUBCOMMANDS)[number];
const ROLLOUT_SUBCOMMAND_LIST = 'status, pause, resume, promote or abort';

const rolloutPath = (model: string) => `/admin/models/${encodeURIComponent(model)}/rollout`;

/** A gate's value or limit in its unit: agreement and error rate as percentages, p99 in ms. */
function gateAmount(gate: GateResult['gate'], x: number | null): string {
  return gate === 'p99' ? ms(x) : pct(x, 2);
}

/** `running  step 1/2 (25%)  weights 1=75 2=25  shadow 100%  failover on` */
function rolloutPosition(v: RolloutView): string {
  const status = v.status === 'rolled-back' || v.status === 'aborted' ? v.status.toUpperCase() : v.status;
  return `${status}  ${v.position}  weights ${weightsText(v.weights)}  shadow ${v.shadowPercent}%  failover ${v.failover ? 'on' : 'off'}`;
}

/** Where the rollout's state is kept, and whether a restart would lose it. */
function stateKept(c: RolloutView['coordination']): string {
  if (c.kept === 'redis') return 'in Redis (shared; kept across restarts)';
  if (c.kept === 'file' && c.stateFileError === null) return `in ${c.stateFile} (kept across restarts)`;
  if (c.stateFile !== null) return `in memory only: the state file ${c.stateFile} ${c.stateFileError} (a restart starts the rollout again)`;
  return 'in memory only (rolloutState.persist is off, or no config file: a restart starts the rollout again)';
}

function describeRollout(v: RolloutView): string[] {
  const d = v.lastDecision;
  const lines = [`${v.model}  ${v.stable} → ${v.candidate}  ${rolloutPosition(v)}`, `  last decision: ${d.decision} by ${d.actor} at ${d.at}: ${d.reason}`];
  if (v.gates && v.gates.length > 0) {
    lines.push(`  gates (evaluated at ${v.evaluatedAt ?? 'n/a'}):`);
    const rows = [['GATE', 'STATUS', 'VALUE', 'LIMIT', 'SAMPLES']];
    for (const g of v.gates)
      rows.push([g.gate, g.status === 'fail' ? 'FAIL' : g.status, gateAmount(g.gate, g.value), gateAmount(g.gate, g.limit), String(g.samples)]);
    lines.push(...table(rows, '    '));
  } else {
    lines.push('  gates: not evaluated yet');
  }
  lines.push(`  next evaluation: ${v.nextEvaluationAt ?? `not evaluating (${v.status})`}`);
  const c = v.coordination;
  lines.push(
    `  coordination: ${c.mode}, replica ${c.replica}, leader ${c.leader ? 'yes' : 'no'}, in sync ${c.inSync ? 'yes' : 'NO (shared state unreachable: following the last state read)'}`,
  );
  lines.push(`  state: ${stateKept(c)}`);
  return lines;
}

async function rolloutStatus(c: Common, model: string | undefined, io: CliIo): Promise<number> {
  if (model !== undefined) {
    const view = await c.client.call<RolloutView>('GET', rolloutPath(model));
    io.stdout(c.json ? `${JSON.stringify(view, null, 2)}\n` : `${describeRollout(view).join('\n')}\n`);
    return 0;
  }
  const { models } = await c.client.call<{ models: ModelView[] }>('GET', '/admin/models');
  const names = models.filter((m) => m.weightsSource === 'rollout').map((m) => m.name);
  // One model's failure (e.g. a shared store not read yet) does not hide the others; it makes the exit code 1.
  const results = await Promise.all(
    names.map((name) =>
      c.client.call<RolloutView>('GET', rolloutPath(name)).then(
        (view) => ({ view }),
        (err: unknown) => {
          if (err instanceof AdminCallError) return { error: err.message };
          throw err;
        },
      ),
    ),
  );
  const views = results.flatMap((r) => ('view' in r ? [r.view] : []));
  const errors = results.flatMap((r) => ('error' in r ? [r.error] : []));
  if (c.json) io.stdout(`${JSON.stringify(views, null, 2)}\n`);
  else if (names.length === 0) io.stdout('no model has a progressive rollout\n');
  else io.stdout(`${views.map((v) => describeRollout(v).join('\n')).join('\n\n')}\n`);
  for (const e of errors) io.stderr(`model-gateway rollout: ${e}\n`);
  return errors.length > 0 ? 1 : 0;
}

async function rollout(c: Common, io: CliIo): Promise<number> {
  const [sub, ...rest] = c.positionals;
  if (sub === undefined) throw new UsageError(`name a subcommand: ${ROLLOUT_SUBCOMMAND_LIST}`);
  if (!(ROLLOUT_SUBCOMMANDS as readonly string[]).includes(sub)) throw new UsageError(`unknown subcommand '${sub}': use ${ROLLOUT_SUBCOMMAND_LIST}`);
  const action = sub as RolloutSubcommand;
  if (c.reset) throw new UsageError('--reset goes with shift, not rollout');
  if (c.full && action !== 'promote') throw new UsageError(`--full goes with rollout promote, not rollout ${action}`);
  if (action === 'status') {
    if (rest.length > 1) throw new UsageError('usage: model-gateway rollout status [MODEL] [--json]');
    return rolloutStatus(c, rest[0], io);
  }
  const usage = `usage: model-gateway rollout ${action} MODEL${action === 'promote' ? ' [--full]' : ''}`;
  const [model, ...extra] = rest;
  if (model === undefined || extra.length > 0) throw new UsageError(usage);
  const view = await c.client.call<RolloutView>('POST', `${rolloutPath(model)}/${action}`, c.full ? { full: true } : undefined);
  if (c.json) {
    io.stdout(`${JSON.stringify(view, null, 2)}\n`);
    return 0;
  }
  io.stdout(`${view.model}: ${view.lastDecision.decision} — ${view.lastDecision.reason}\n  now ${rolloutPosition(view)}\n`);
  return 0;
}

export type AdminCommand = 'status' | 'shift' | 'reload' | 'rollout';

/** Runs `status`, `shift`, `reload` or `rollout`; returns the exit code (0 ok, 1 the call failed, 2 usage). */
export async function runAdminCommand(command: AdminCommand, argv: string[], io: CliIo): Promise<number> {
  try {
    const common = parseCommon(argv, io.env);
    if (common.full && command !== 'rollout') throw new UsageError('--full goes with rollout promote');
    if (command === 'status') return await status(common, io);
    if (command === 'shift') return await shift(common, io);
    if (command === 'rollout') return await rollout(common, io);
    return await reload(common, io);
  } catch (err) {
    if (err instanceof UsageError || (err as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) {
      io.stderr(`model-gateway ${command}: ${(err as Error).message}\n`);
      return 2;
    }
    if (err instanceof AdminCallError) {
      io.stderr(`model-gateway ${command}: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}
