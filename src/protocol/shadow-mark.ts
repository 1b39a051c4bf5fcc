// How a mirrored (shadow) request is marked, so backends can tell it apart and the gateway never mirrors a mirror.

import type { IncomingHttpHeaders } from 'node:http';
import type { InferenceRequest } from './oip.js';

/** The header a remote backend receives on a mirrored request (HTTP backends forward the parameter as this header). */
export const SHADOW_HEADER = 'x-shadow';
/** The request parameter that carries the mark to every backend, including in-process ones. */
export const SHADOW_PARAMETER = 'shadow';

/** A copy of the request marked as a shadow; the input tensors are shared, not copied (backends never mutate them). */
export function markShadow(request: InferenceRequest): InferenceRequest {
  return { ...request, parameters: { ...request.parameters, [SHADOW_PARAMETER]: true } };
}

export function isShadowRequest(request: InferenceRequest): boolean {
  return request.parameters?.[SHADOW_PARAMETER] === true;
}

/**
 * True when the incoming request is itself a mirror: marked `x-shadow: true` (by another gateway) or sent to a
 * `-shadow` host (Envoy and Istio mirroring append that suffix). Such requests are served but not mirrored again,
 * so two mirroring hops can never amplify traffic.
 */
export function isMirroredRequest(headers: IncomingHttpHeaders, header: (name: string) => string | undefined): boolean {
  if (header(SHADOW_HEADER)?.trim() === 'true') return true;
  const host = headers.host;
  if (typeof host !== 'string') return false;
  const name = host.startsWith('[') ? host : host.split(':')[0]!;
  return name.endsWith('-shadow');
}
