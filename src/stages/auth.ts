// Auth: strips client copies of identity headers, verifies the bearer token, authorises per model and forwards the identity.

import type { AccessPolicy } from '../auth/authorize.js';
import { checkAccess } from '../auth/authorize.js';
import { authError } from '../auth/challenge.js';
import { canonicalHeaderName, identityHeaderNames, identityHeaders, stripIdentityHeaders, type IdentityHeaderConfig } from '../auth/identity-headers.js';
import type { AuthStats } from '../auth/stats.js';
import type { TokenVerifier } from '../auth/verify.js';
import { isGatewayError, type GatewayError } from '../errors/gateway-error.js';
import type { Context, Identity, Next, Reply, Stage } from '../pipeline/stage.js';
import { LogThrottle } from '../telemetry/log-throttle.js';
import type { Logger } from '../telemetry/log.js';

/** Token checking, when auth is on. */
export interface Authentication {
  readonly verifier: TokenVerifier;
  /** The realm of every `WWW-Authenticate` challenge. */
  readonly realm: string;
  /** Pass a verified token on to the backend (as a gateway-owned header). */
  readonly forwardToken: boolean;
  /** Per model; models without one (and unknown names, which route answers with 404) need any verified caller. */
  readonly policies: ReadonlyMap<string, AccessPolicy>;
  readonly defaultPolicy: AccessPolicy;
  readonly stats: AuthStats;
}

export interface AuthStageOptions {
  /** Gateway-owned identity headers: client copies are always removed, and a verified caller's identity set. */
  readonly identityHeaders: IdentityHeaderConfig;
  /** Absent: auth is off (identity headers are still stripped). */
  readonly authentication?: Authentication;
  readonly log: Logger;
  readonly now: () => number;
}

export function authStage(options: AuthStageOptions): Stage {
  const { identityHeaders: headerConfig, authentication: auth, log } = options;
  const owned = new Set(identityHeaderNames(headerConfig).map(canonicalHeaderName));
  if (auth === undefined) {
    return {
      name: 'auth',
      handle(ctx, next) {
        stripIdentityHeaders(ctx.headers, owned);
        return next();
      },
    };
  }
  const { verifier, realm, stats } = auth;
  const dryRunLog = new LogThrottle(log, options.now);

  /** The decision once the caller is known (or known to have no valid token): allow, dry-run, or refuse. */
  function decide(ctx: Context, identity: Identity | undefined, failure: GatewayError | undefined, next: Next): Promise<Reply> {
    const policy = auth!.policies.get(ctx.modelName) ?? auth!.defaultPolicy;
    const model = ctx.modelName.slice(0, 128);
    let denial = failure;
    if (denial === undefined) {
      if (identity === undefined) {
        if (!policy.allowAnonymous) denial = authError('GW_ERR_UNAUTHENTICATED', realm, `model '${model}' needs a bearer token`);
      } else {
        const requirement = ctx.operation === 'infer' ? policy.infer : policy.metadata;
        denial = checkAccess(identity, requirement, realm, `${ctx.operation === 'infer' ? 'inference on' : 'reading'} model '${model}'`);
      }
    }
    // A verified token may be forwarded (gateway-owned, so it survives the remote backend's header filtering);
    // the client's header itself never is.
    if (auth!.forwardToken && identity !== undefined && typeof ctx.headers.authorization === 'string') {
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
  }

  const refusal = (err: unknown): GatewayError => {
    if (!isGatewayError(err)) throw err;
    return err;
  };

  return {
    name: 'auth',
    handle(ctx, next) {
      stripIdentityHeaders(ctx.headers, owned);
      let found;
      try {
        found = verifier.authenticateNow(ctx.headers, ctx.rawHeaders, ctx.connection);
      } catch (err) {
        return decide(ctx, undefined, refusal(err), next);
      }
      // A known token (the connection's or the cache's) is decided now; only a new one waits for its verification.
      if (!('pending' in found)) return decide(ctx, found.identity, undefined, next);
      return found.pending.then(
        (identity) => decide(ctx, identity, undefined, next),
        (err: unknown) => decide(ctx, undefined, refusal(err), next),
      );
    },
  };
}
