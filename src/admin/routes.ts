// The admin API's endpoints: path and method → handler, each with the access it needs and, for a change, what the
// audit trail records about it (the action, its target, and the state it reads before and after).

import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AdminAction } from './auth.js';
import type { AuditTrail } from './audit.js';
import type { AdminCaller } from './caller.js';
import { limitParam, MAX_DISAGREEMENTS, recentDisagreements } from './disagreements.js';
import type { GatewayConfig } from '../config/schema.js';
import { GatewayError } from '../errors/gateway-error.js';
import { RequestBody } from '../http/request-body.js';
import type { GatewayController } from '../reload/controller.js';
import type { GuardRegistry } from '../resilience/registry.js';
import type { RolloutManager } from '../rollout/manager.js';
import type { OperatorAction } from '../rollout/machine.js';

/** Admin request bodies are tiny (a weight map). */
export const MAX_ADMIN_BODY_BYTES = 64 * 1024;
export const MAX_AUDIT_LIMIT = 1000;

export interface AuditSpec {
  /** e.g. `weights.set`, `rollout.abort`. */
  action: string;
  target: Record<string, string> | null;
  /** The state the action changes, read before and after it runs (null when it cannot be read, e.g. no such model). */
  state: () => unknown;
}

export interface HandlerContext {
  readonly url: URL;
  readonly caller: AdminCaller;
}

export interface Handler {
  action: AdminAction;
  audit?: AuditSpec;
  run?(req: IncomingMessage, context: HandlerContext): Promise<{ status: number; body: unknown }>;
  /** Takes the response over (a live stream) instead of answering JSON. */
  stream?: (req: IncomingMessage, res: ServerResponse, context: HandlerContext) => void;
}

export type Routes = Partial<Record<string, Handler>>;

export interface RouteDeps {
  controller: GatewayController;
  guards?: GuardRegistry;
  rollouts?: RolloutManager;
  audit?: AuditTrail;
  /** GET /admin/events, when the console is on. */
  events?: Handler['stream'];
}

const ROLLOUT_ACTIONS: readonly OperatorAction[] = ['pause', 'resume', 'promote', 'abort'];

const configHashes = new WeakMap<GatewayConfig, string>();

/** SHA-256 of the running config as applied (defaults filled, variables substituted): equal configs, equal hashes. */
export function configHash(config: GatewayConfig): string {
  let hash = configHashes.get(config);
  if (hash === undefined) configHashes.set(config, (hash = createHash('sha256').update(JSON.stringify(config)).digest('hex')));
  return hash;
}

/** The optional body of a rollout action: `{"full": true}` makes promote go straight to the last step. */
async function rolloutOptions(req: IncomingMessage, action: OperatorAction): Promise<{ full?: boolean }> {
  const body = new RequestBody(req, MAX_ADMIN_BODY_BYTES);
  if ((await body.bytes()).length === 0) return {};
  const parsed = await body.json();
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw new GatewayError('GW_ERR_INVALID_REQUEST', 'the body must be a JSON object');
  const { full, ...rest } = parsed as Record<string, unknown>;
  const unknownKeys = Object.keys(rest);
  if (unknownKeys.length > 0) throw new GatewayError('GW_ERR_INVALID_REQUEST', `unknown field(s) ${unknownKeys.join(', ')}; only promote takes {"full": true}`);
  if (full !== undefined && (typeof full !== 'boolean' || action !== 'promote'))
    throw new GatewayError('GW_ERR_INVALID_REQUEST', '"full" is a boolean and only promote takes it');
  return full === undefined ? {} : { full };
}

/** What a weight change changes: the effective weights, where they come from, and the override. */
function weightsState(c: GatewayController, model: string): unknown {
  const m = c.model(model);
  return { weights: m.weights, weightsSource: m.weightsSource, override: m.override ? { weights: m.override.weights, setAt: m.override.setAt } : null };
}

function rolloutState(rollouts: RolloutManager, model: string): unknown {
  const r = rollouts.view(model);
  return { status: r.status, phase: r.phase, step: r.step, position: r.position, weights: r.weights, revision: r.revision };
}

function shadowState(c: GatewayController, model: string): unknown {
  return c.shadowStats(model).pairs.map((p) => ({ pair: `${p.primaryVersion}→${p.shadowVersion}`, compared: p.compared, agreed: p.agreed, since: p.since }));
}

const ok = async (body: unknown) => ({ status: 200, body });

/**
 * The audit action and target of a change, from its method and path alone: the handlers below use it, and so does
 * the workers' relay for the refusals it makes itself (it has no handlers).
 */
export function auditedAction(method: string, path: string): { action: string; target: Record<string, string> | null } | undefined {
  const s = path.split('/');
  if (s[0] !== '' || s[1] !== 'admin') return undefined;
  if (method === 'POST' && s.length === 3 && s[2] === 'reload') return { action: 'reload', target: null };
  const model = s[3];
  if (s[2] !== 'models' || !model) return undefined;
  const target = { model };
  if (s.length === 5 && s[4] === 'weights' && (method === 'PUT' || method === 'DELETE'))
    return { action: method === 'PUT' ? 'weights.set' : 'weights.reset', target };
  if (s.length === 5 && s[4] === 'shadow' && method === 'DELETE') return { action: 'shadow.reset', target };
  if (s.length === 6 && s[4] === 'rollout' && method === 'POST' && ROLLOUT_ACTIONS.includes(s[5] as OperatorAction))
    return { action: `rollout.${s[5]}`, target };
  return undefined;
}

/** The handlers of `path` by method; undefined for paths the admin API does not have. */
export function match(path: string, deps: RouteDeps): { routes: Routes } | undefined {
  const { controller: c, guards, rollouts, audit } = deps;
  const s = path.split('/');
  if (s[0] !== '' || s[1] !== 'admin') return undefined;
  if (s.length === 3 && s[2] === 'status') return { routes: { GET: { action: 'read', run: () => ok(c.status()) } } };
  if (s.length === 3 && s[2] === 'reload') {
    const state = () => ({ generation: c.generation, configHash: configHash(c.config) });
    return {
      routes: {
        POST: { action: 'write', audit: { ...auditedAction('POST', path)!, state }, run: async () => ({ status: 200, body: await c.reloadFromFile('admin') }) },
      },
    };
  }
  if (s.length === 3 && s[2] === 'audit' && audit) {
    return {
      routes: {
        GET: { action: 'read', run: async (_req, { url }) => ok({ entries: audit.recent(limitParam(url, 100, MAX_AUDIT_LIMIT)), trail: audit.stats() }) },
      },
    };
  }
  if (s.length === 3 && s[2] === 'events' && deps.events) {
    const stream = deps.events;
    return { routes: { GET: { action: 'read', stream } } };
  }
  if (s[2] !== 'models') return undefined;
  if (s.length === 3) {
    return {
      routes: {
        GET: {
          action: 'read',
          run: () => ok({ generation: c.generation, reload: c.status().reload.lastAttempt, models: c.models(), resilience: guards?.snapshot() ?? {} }),
        },
      },
    };
  }
  const model = s[3];
  if (!model) return undefined;
  if (s.length === 4) return { routes: { GET: { action: 'read', run: () => ok(c.model(model)) } } };
  if (s[4] === 'rollout' && rollouts) {
    if (s.length === 5) return { routes: { GET: { action: 'read', run: () => ok(rollouts.view(model)) } } };
    const action = s[5] as OperatorAction;
    if (s.length !== 6 || !ROLLOUT_ACTIONS.includes(action)) return undefined;
    return {
      routes: {
        POST: {
          action: 'write',
          audit: { ...auditedAction('POST', path)!, state: () => rolloutState(rollouts, model) },
          run: async (req) => {
            rollouts.view(model); // 404 (no such model, or no rollout) before reading the body
            return { status: 200, body: await rollouts.act(model, action, await rolloutOptions(req, action)) };
          },
        },
      },
    };
  }
  if (s.length === 6 && s[4] === 'shadow' && s[5] === 'disagreements') {
    return {
      routes: {
        GET: {
          action: 'read',
          run: async (_req, { url }) => {
            c.model(model); // 404 for an unknown model
            return ok(await recentDisagreements(c.shadow.disagreementLog?.path, model, limitParam(url, 10, MAX_DISAGREEMENTS)));
          },
        },
      },
    };
  }
  if (s.length !== 5) return undefined;
  if (s[4] === 'shadow') {
    return {
      routes: {
        GET: { action: 'read', run: () => ok(c.shadowStats(model)) },
        DELETE: { action: 'write', audit: { ...auditedAction('DELETE', path)!, state: () => shadowState(c, model) }, run: () => ok(c.resetShadowStats(model)) },
      },
    };
  }
  if (s[4] === 'weights') {
    const state = () => weightsState(c, model);
    return {
      routes: {
        PUT: {
          action: 'write',
          audit: { ...auditedAction('PUT', path)!, state },
          run: async (req) => {
            c.model(model); // 404 for an unknown model before reading the body
            const body = await new RequestBody(req, MAX_ADMIN_BODY_BYTES).json();
            return { status: 200, body: await c.setWeights(model, body) };
          },
        },
        DELETE: { action: 'write', audit: { ...auditedAction('DELETE', path)!, state }, run: async () => ({ status: 200, body: await c.clearWeights(model) }) },
      },
    };
  }
  return undefined;
}
