// Auth: strips client copies of identity headers, verifies the bearer token, authorises per model and forwards the identity.

import type { RemoteKeySources } from '../auth/jwks.js';
import type { AuthConfig, GatewayConfig, ModelAuthConfig } from '../config/schema.js';
import { checkAccess } from '../auth/authorize.js';
import { authError } from '../auth/challenge.js';
import { DEFAULT_IDENTITY_HEADERS, identityHeaderNames, identityHeaders, stripIdentityHeaders } from '../auth/identity-headers.js';
import { AuthStats } from '../auth/stats.js';
import { TokenVerifier } from '../auth/verify.js';
import { isGatewayError, type GatewayError } from '../errors/gateway-error.js';
import type { Identity, Stage } from '../pipeline/stage.js';
import { LogThrottle } from '../ratelimit/log-throttle.js';
import type { Logger } from '../telemetry/log.js';

export interface AuthStageOptions {
  auth: AuthConfig | undefined;
  models: GatewayConfig['models'];
  log: Logger;
  now?: () => number;
  stats?: AuthStats;
  fetch?: typeof fetch;
  /** Process-wide remote key sources (see createKeySource): a reload keeps the last good key sets. */
  remoteSources?: RemoteKeySources;
}

type Policy = ModelAuthConfig & { enforce: boolean };

export interface AuthStage extends Stage {
  /** Undefined when auth is off. */
  readonly verifier: TokenVerifier | undefined;
}

export function authStage(options: AuthStageOptions): AuthStage {
  const { auth, log } = options;
  const now = options.now ?? Date.now;
  const headerConfig = auth?.identityHeaders ?? DEFAULT_IDENTITY_HEADERS;
  const owned = identityHeaderNames(headerConfig);
  if (auth === undefined) {
    return {
      name: 'auth',
      verifier: undefined,
      handle(ctx, next) {
        stripIdentityHeaders(ctx.headers, owned);
        return next();
      },
    };
  }

  const stats = options.stats ?? new AuthStats();
  const verifier = new TokenVerifier(auth, { now, log, stats, fetch: options.fetch, ...(options.remoteSources ? { remoteSources: options.remoteSources } : {}) });
  void verifier.warm();
  const policies = new Map<string, Policy>();
  for (const [name, model] of Object.entries(options.models)) {
    if (model.auth) policies.set(name, { ...model.auth, enforce: model.auth.enforce ?? auth.enforce });
  }
  // Models without an auth block (and unknown names, which route answers with 404) need any verified caller.
  const fallback: Policy = { allowAnonymous: false, enforce: auth.enforce, infer: { scopes: [], claims: {} }, metadata: { scopes: [], claims: {} } };
  const dryRunLog = new LogThrottle(log, now);

  return {
    name: 'auth',
    verifier,
    async handle(ctx, next) {
      stripIdentityHeaders(ctx.headers, owned);
      const policy = policies.get(ctx.modelName) ?? fallback;
      const model = ctx.modelName.slice(0, 128);
      let identity: Identity | undefined;
      let denial: GatewayError | undefined;
      try {
        identity = await verifier.authenticate(ctx.headers, ctx.rawHeaders);
        if (identity === undefined) {
          if (!policy.allowAnonymous) denial = authError('GW_ERR_UNAUTHENTICATED', auth.realm, `model '${model}' needs a bearer token`);
        } else {
          const requirement = ctx.operation === 'infer' ? policy.infer : policy.metadata;
          denial = checkAccess(identity, requirement, auth.realm, `${ctx.operation === 'infer' ? 'inference on' : 'reading'} model '${model}'`);
        }
      } catch (err) {
        if (!isGatewayError(err)) throw err;
        denial = err;
      }
      // A verified token may be forwarded (gateway-owned, so it survives the remote backend's header filtering);
      // the client's header itself never is.
      if (auth.forwardToken && identity !== undefined && typeof ctx.headers.authorization === 'string') {
        ctx.upstreamHeaders.authorization = ctx.headers.authorization;
      }
      delete ctx.headers.authorization;
      if (denial !== undefined) {
        if (policy.enforce) {
          stats.count(stats.denied, denial.code);
          throw denial;
        }
        stats.count(stats.dryRunDenied, denial.code);
        dryRunLog.warn(
          `${model}:${denial.code}`,
          { dryRun: true, requestId: ctx.requestId, model, code: denial.code, status: denial.status, reason: denial.message, subject: identity?.subject },
          'auth dry run: this request would have been denied',
        );
      }
      if (identity !== undefined) {
        ctx.identity = identity;
        Object.assign(ctx.upstreamHeaders, identityHeaders(identity, headerConfig));
      }
      return next();
    },
  };
}
