// The ext_authz decision: runs a check from Envoy through the gateway's own auth and admission rate-limit stages.

import type { IncomingHttpHeaders } from 'node:http';
import { canonicalHeaderName, DEFAULT_IDENTITY_HEADERS, identityHeaderNames, ownedHeadersIn } from '../auth/identity-headers.js';
import type { AuthStats } from '../auth/stats.js';
import type { GatewayConfig } from '../config/schema.js';
import type { ErrorCode } from '../errors/codes.js';
import { GatewayError } from '../errors/gateway-error.js';
import { toResponse } from '../errors/to-response.js';
import { createContext } from '../pipeline/context.js';
import type { Pipeline } from '../pipeline/stage.js';
import { matchRoute, pathOf } from '../protocol/routes.js';
import type { RateLimitStore } from '../ratelimit/store.js';
import { extAuthzChain } from '../stages/chain.js';
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
  /** `owned` as canonical names, to find look-alikes (`x_auth_subject`) in a request. */
  canonical: ReadonlySet<string>;
}

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
    const { log, rateLimitStore, authStats, now } = this.deps;
    const chain = extAuthzChain({ config, log, rateLimitStore, ...(authStats ? { authStats } : {}), ...(now ? { now } : {}) });
    const owned = identityHeaderNames(config.auth?.identityHeaders ?? DEFAULT_IDENTITY_HEADERS);
    this.#built = { config, chain, owned, canonical: new Set(owned.map(canonicalHeaderName)) };
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
    const route = matchRoute(pathOf(request.path));
    // Look-alikes of the owned names the client sent (`x_auth_subject`): Envoy must remove them too, by their own names.
    const lookAlikes = ownedHeadersIn(request.headers, built.canonical).filter((name) => !built.owned.includes(name));
    // Unknown paths are refused with the gateway's own 404: the check cannot know what an upstream would expose there.
    if (route === undefined) {
      return deny(new GatewayError('GW_ERR_ROUTE_NOT_FOUND', `no such endpoint: ${request.method} ${request.path.slice(0, 200)}`), {});
    }
    if (route.kind === 'bad-name') return deny(new GatewayError('GW_ERR_INVALID_REQUEST', route.message), {});
    // Health and server metadata are public on the data plane too (kubelet and mesh probes carry no token).
    if (route.kind !== 'model') return { allowed: true, upstreamHeaders: {}, removeUpstreamHeaders: [...built.owned, ...lookAlikes], responseHeaders: {} };

    // The method is not checked: the upstream answers 405, and a wrong method never skips authentication.
    // Envoy sends no body with a check, and these stages never read one.
    const ctx = createContext({
      operation: route.operation,
      modelName: route.model,
      pathVersion: route.version,
      headers: { ...request.headers },
      rawHeaders: request.rawHeaders,
      clientAddress: request.clientAddress,
    });
    try {
      await built.chain(ctx);
    } catch (err) {
      const result = deny(err, ctx.responseHeaders);
      if (result.status >= 500)
        this.deps.log.warn({ requestId: ctx.requestId, model: route.model, code: result.code, err: (err as Error).cause ?? err }, 'ext_authz check failed');
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
      removeUpstreamHeaders: [...built.owned.filter((name) => upstreamHeaders[name] === undefined), ...lookAlikes],
      responseHeaders: { ...ctx.responseHeaders },
    };
  }
}

/** A denial from any error, through the gateway's one error mapper. */
export function deny(err: unknown, responseHeaders: Record<string, string> = {}): Extract<CheckResult, { allowed: false }> {
  const mapped = toResponse(err);
  return { allowed: false, status: mapped.status, code: mapped.code, body: mapped.body, headers: { ...responseHeaders, ...mapped.headers } };
}
