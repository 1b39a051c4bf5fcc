// The gateway's own headers on the wire, beyond the OIP's: which version to use and which one answered.

/** Request header naming a version (honoured only where the model allows it); response header naming the one used. */
export const VERSION_HEADER = 'x-model-version';

/** Response header naming the version whose failure (open breaker, failed rollout candidate) made another answer. */
export const FALLBACK_HEADER = 'x-model-fallback';
