// Sticky routing: weighted rendezvous hashing maps a caller key to a version, and moves callers only when weights demand it.

import { hash } from 'node:crypto';
import type { VersionWeight } from './weighted.js';

/**
 * Maps (model, version, key) to a number uniform in the open interval (0, 1). Must be deterministic and independent
 * across versions; injected so tests can pin scores.
 */
export type KeyHash = (model: string, version: string, key: string) => number;

const TWO_POW_53 = 2 ** 53;

/**
 * SHA-256 of `model \0 version \0 key`, top 53 bits → (0, 1). A cryptographic hash costs ~1 µs per version here and
 * leaves no structure for similar keys (`user-1`, `user-2`) to correlate on; the model name decorrelates models.
 */
export const sha256KeyHash: KeyHash = (model, version, key) => {
  const digest = hash('sha256', `${model}\0${version}\0${key}`, 'buffer');
  const top53 = Number(digest.readBigUInt64BE(0) >> 11n);
  return (top53 + 0.5) / TWO_POW_53;
};

/**
 * Weighted rendezvous (highest-random-weight) choice: each version scores −ln(h(key, v)) / w_v and the lowest score
 * wins. −ln(h) is an Exp(1) variable, so the score is Exp(w_v) and the minimum falls on v with probability
 * w_v / Σw — the configured split.
 *
 * Monotonic for any number of versions: raising w_v lowers only v's score, so a key either stays where it was or
 * moves *to* v; lowering w_v raises only v's score, so keys move only *away from* v. Versions whose weight did not
 * change never trade callers with each other. (A cumulative-range scheme only has this property for two versions.)
 * Weight 0 scores +∞: such a version is never chosen.
 */
export function rendezvousPick(model: string, key: string, weights: readonly VersionWeight[], keyHash: KeyHash): string | undefined {
  let best: string | undefined;
  let bestScore = Infinity;
  for (const { version, weight } of weights) {
    if (weight <= 0) continue;
    const score = -Math.log(keyHash(model, version, key)) / weight;
    if (score < bestScore) {
      bestScore = score;
      best = version;
    }
  }
  return best;
}

/** Where a sticky key comes from: a request header or a verified token claim. */
export type StickySource = { header: string; claim?: undefined } | { claim: string; header?: undefined };

/** Longest key used; longer values are cut so a huge header cannot make hashing expensive. */
const MAX_KEY_LENGTH = 512;

/**
 * The caller's sticky key, or undefined when the request has none (then routing falls back to weighted random).
 * A repeated header uses its first value (`header` is the request's `Context.header`); claims may be strings or numbers.
 */
export function stickyKey(
  source: StickySource,
  header: (name: string) => string | undefined,
  claims: Readonly<Record<string, unknown>> | undefined,
): string | undefined {
  let raw: unknown;
  if (source.header !== undefined) raw = header(source.header);
  else {
    raw = claims?.[source.claim];
    if (typeof raw === 'number' && Number.isFinite(raw)) raw = String(raw);
  }
  if (typeof raw !== 'string' || raw === '') return undefined;
  return raw.length > MAX_KEY_LENGTH ? raw.slice(0, MAX_KEY_LENGTH) : raw;
}
