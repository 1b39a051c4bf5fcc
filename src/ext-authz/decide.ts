// The ext_authz decision: runs a check from Envoy through the gateway's own auth and admission rate-limit stages.

import { IncomingMessage, type IncomingHttpHeaders } from 'node:http';
import { Socket } from 'node:net';
import type { GatewayConfig } from '../config/schema.js';
import { DEFAULT_IDENTITY_HEADERS, identityHeaderNames } from '../auth/identity-headers.js';
import type { AuthStats } from '../auth/stats.js';
import type { ErrorCode } from '../errors/codes.js';
import { GatewayError } from '../errors/gateway-error.js';
import { toResponse } from '../errors/to-response.js';
import { RequestBody } from '../http/request-body.js';
import { compose } from '../pipeline/compose.js';
import type { Context, Pipeline, Stage } from '../pipeline/stage.js';
import { compileRules } from '../ratelimit/rules.js';
import type { RateLimitStore } from '../ratelimit/store.js';
import { matchRoute } from '../server.js';
import { authStage } from '../stages/auth.js';
import { rateLimitStage } from '../stages/rate-limit.js';
import { requestIdFrom } from '../stages/request-id.js';
import type { Logger } from '../telemetry/log.js';

/** One check, as Envoy describes the client's request (HTTP service headers, or gRPC AttributeContext). */
export interface CheckRequest {
  method: string;
  /** The client's path and query, with Envoy's `path_prefix` already removed. */
  path: string;
  /** Lowercase names. */
  headers: IncomingHttpHeaders;
  /** Name/value pairs, so a repeated Authorization header is still refused (400) as the data plane does. */
  rawHeaders: readonly string[];
  /** The downstream client (gRPC: `source.address`); for the HTTP service, the Envoy that asks. */
  clientAddress: string;
}

export type CheckResult =
  | {
      allowed: true;
      /** Identity headers for the upstream request (Envoy `allowed_upstream_headers` / OkHttpResponse.headers). */
      upstreamHeaders: Record<string, string>;
      /** Gateway-owned identity header names not set above: client copies must not reach the upstream. */
      removeUpstreamHeaders: string[];
      /** RateLimit / RateLimit-Policy for the client's response. */
      responseHeaders: Record<string, string>;
    }
  | {
      allowed: false;
      status: number;
      code: ErrorCode;
      body: { error: string };
      /** WWW-Authenticate, Retry-After, RateLimit headers for the client's response. */
      headers: Record<string, string>;
    };

export interface ExtAuthzDeps {
  log: Logger;
  /** The process's store: an ext_authz check and the data plane charge the very same buckets. */
  rateLimitStore: RateLimitStore;
  authStats?: AuthStats;
  now?: () => number;
}

interface Built {
  config: GatewayConfig;
  chain: Pipeline;
  owned: string[];
}

const ALLOW = { status: 200, body: null };

/**
 * Decides checks with the policy of the config `currentConfig()` returns (read per check, so reloads apply); the
 * chain is rebuilt only when that config object changes, keeping token caches and JWKS between checks.
 */
export class ExtAuthzDecider {
  #built: Built | undefined;

  constructor(
    private readonly currentConfig: () => GatewayConfig,
    private readonly deps: ExtAuthzDeps,
  ) {}

  #chainFor(config: GatewayConfig): Built {
    if (this.#built?.config === config) return this.#built;
    const { log } = this.deps;
    const now = this.deps.now ?? Date.now;
    // The same stage factories build.ts uses, so a check can never disagree with the data plane's own decision.
    // Only admission rules apply: routed ones need the serving version or the body, which a check does not have.
    const stages: Stage[] = [authStage({ auth: config.auth, models: config.models, log, now, ...(this.deps.authStats ? { stats: this.deps.authStats } : {}) })];
    if (config.extAuthz.rateLimits) {
      stages.push(rateLimitStage('admission', { rules: compileRules(config.rateLimits), store: this.deps.rateLimitStore, log, now }));
    }
    stages.push({ name: 'ext-authz:allow', handle: () => Promise.resolve(ALLOW) });
    this.#built = { config, chain: compose(stages), owned: identityHeaderNames(config.auth?.identityHeaders ?? DEFAULT_IDENTITY_HEADERS) };
    return this.#built;
  }

  async check(request: CheckRequest): Promise<CheckResult> {
    const built = this.#chainFor(this.currentConfig());
    if (!request.path.startsWith('/')) {
      return deny(new GatewayError('GW_ERR_EXT_AUTHZ_BAD_CHECK', 'the check has no request path (expected the client path, starting with /)'), {});
    }
    if (!/^[A-Z]+$/.test(request.method)) {
      return deny(new GatewayError('GW_ERR_EXT_AUTHZ_BAD_CHECK', 'the check has no valid request method'), {});
    }
    const q = request.path.indexOf('?');
    const route = matchRoute(q < 0 ? request.path : request.path.slice(0, q));
    // Unknown paths are refused with the gateway's own 404: the check cannot know what an upstream would expose there.
    if (route === undefined) {
      return deny(new GatewayError('GW_ERR_ROUTE_NOT_FOUND', `no such endpoint: ${request.method} ${request.path.slice(0, 200)}`), {});
    }
    // Health and server metadata are public on the data plane too (kubelet and mesh probes carry no token).
    if (route.kind !== 'model') return { allowed: true, upstreamHeaders: {}, removeUpstreamHeaders: built.owned, responseHeaders: {} };

    // The method is not checked: the upstream answers 405, and a wrong method never skips authentication.
    const ctx: Context = {
      requestId: requestIdFrom(request.headers['x-request-id']),
      operation: route.operation,
      modelName: route.model,
      pathVersion: route.version,
      headers: { ...request.headers },
      rawHeaders: request.rawHeaders,
      clientAddress: request.clientAddress,
      signal: new AbortController().signal,
      body: noBody(),
      responseHeaders: {},
      upstreamHeaders: {},
    };
    try {
      await built.chain(ctx);
    } catch (err) {
      const result = deny(err, ctx.responseHeaders);
      if (result.status >= 500) this.deps.log.warn({ requestId: ctx.requestId, model: route.model, code: result.code, err: (err as Error).cause ?? err }, 'ext_authz check failed');
      return result;
    }
    const upstreamHeaders: Record<string, string> = {};
    for (const name of built.owned) {
      const value = ctx.upstreamHeaders[name];
      if (value !== undefined) upstreamHeaders[name] = value;
    }
    return {
      allowed: true,
      upstreamHeaders,
      removeUpstreamHeaders: built.owned.filter((name) => upstreamHeaders[name] === undefined),
      responseHeaders: { ...ctx.responseHeaders },
    };
  }
}

/** A denial from any error, through the gateway's one error mapper. */
export function deny(err: unknown, responseHeaders: Record<string, string> = {}): Extract<CheckResult, { allowed: false }> {
  const mapped = toResponse(err);
  return { allowed: false, status: mapped.status, code: mapped.code, body: mapped.body, headers: { ...responseHeaders, ...mapped.headers } };
}

/** Envoy sends no body with a check (and these stages never read one): an ended, empty message. */
function noBody(): RequestBody {
  const message = new IncomingMessage(new Socket());
  message.push(null);
  return new RequestBody(message, 0);
}
