// Choosing a version is one authorisation decision, however the caller chooses it: in the path or in x-model-version.

import { GatewayError } from '../errors/gateway-error.js';
import type { Identity } from '../pipeline/stage.js';

/** How a caller named the version it wants. */
export type VersionChoice = 'path' | 'header';

/**
 * The refusal for a caller that named a version of `model` without the scope the model requires for choosing one
 * (`override.requiredScope`); undefined when it may (no scope required, or it holds it). The data plane's route stage
 * and ext_authz checks both decide here, so `/versions/2/infer` and `x-model-version: 2` can never disagree.
 */
export function versionChoiceDenial(
  identity: Identity | undefined,
  model: string,
  requiredScope: string | undefined,
  how: VersionChoice,
): GatewayError | undefined {
  if (requiredScope === undefined || identity?.scopes.has(requiredScope)) return undefined;
  const where = how === 'path' ? 'in the path' : 'with x-model-version';
  return new GatewayError(
    'GW_ERR_OVERRIDE_FORBIDDEN',
    identity
      ? `choosing a version of model '${model}' ${where} needs the scope '${requiredScope}'`
      : `choosing a version of model '${model}' ${where} needs an authenticated caller with the scope '${requiredScope}'`,
  );
}
