// Version choice for ext_authz checks: the model must exist, a named version too, and naming one is authorised exactly
// as the data plane's route stage authorises it (auth/version-choice.ts) — with no weighted pick, which a check never needs.

import { versionChoiceDenial } from '../auth/version-choice.js';
import { GatewayError } from '../errors/gateway-error.js';
import type { Stage } from '../pipeline/stage.js';
import { VERSION_HEADER } from '../protocol/headers.js';

/** What a check needs to know of one model. */
export interface ModelChoiceRules {
  readonly versions: ReadonlySet<string>;
  /** `override.enabled`: x-model-version is honoured. */
  readonly headerEnabled: boolean;
  /** `override.requiredScope`. */
  readonly requiredScope: string | undefined;
}

export interface VersionChoiceStageOptions {
  /** Model name → its rules; a name not here is unknown (404), as on the data plane. */
  readonly models: ReadonlyMap<string, ModelChoiceRules>;
}

export function versionChoiceStage({ models }: VersionChoiceStageOptions): Stage {
  const missing = (model: string, version: string, rules: ModelChoiceRules) =>
    new GatewayError('GW_ERR_VERSION_NOT_FOUND', `model '${model}' has no version '${version.slice(0, 64)}' (versions: ${[...rules.versions].join(', ')})`);
  return {
    name: 'version-choice',
    handle(ctx, next) {
      const rules = models.get(ctx.modelName);
      if (!rules) throw new GatewayError('GW_ERR_MODEL_NOT_FOUND', `unknown model '${ctx.modelName.slice(0, 128)}'`);
      let version = ctx.pathVersion;
      let how: 'path' | 'header' = 'path';
      if (version === undefined && rules.headerEnabled) {
        if (ctx.headerLines(VERSION_HEADER) > 1) throw new GatewayError('GW_ERR_INVALID_REQUEST', `the ${VERSION_HEADER} header must be sent at most once`);
        version = ctx.header(VERSION_HEADER)?.trim() || undefined;
        how = 'header';
      }
      if (version !== undefined) {
        const denied = versionChoiceDenial(ctx.identity, ctx.modelName, rules.requiredScope, how);
        if (denied) throw denied;
        if (!rules.versions.has(version)) throw missing(ctx.modelName, version, rules);
      }
      return next();
    },
  };
}
