// Weighted version choice: checking integer weights against a model's versions and picking one at random by weight.

import { MAX_WEIGHT } from '../config/schema.js';

/** A uniform random number in [0, 1); injected so tests are deterministic. */
export type Rng = () => number;

/** One version and its integer weight. */
export interface VersionWeight {
  readonly version: string;
  readonly weight: number;
}

/**
 * Problems with a proposed weight map for a model whose versions are `versions`: unknown versions, weights that are not
 * non-negative integers up to MAX_WEIGHT, or all weights zero. Empty when the map is usable.
 */
export function weightProblems(weights: unknown, versions: readonly string[]): string[] {
  if (weights === null || typeof weights !== 'object' || Array.isArray(weights)) {
    return [`weights must be an object of version → integer weight, e.g. {"1": 90, "2": 10}`];
  }
  const entries = Object.entries(weights);
  if (entries.length === 0) return ['weights must name at least one version'];
  const problems: string[] = [];
  for (const [version, weight] of entries) {
    if (!versions.includes(version)) problems.push(`version '${version.slice(0, 64)}' is not one of ${versions.join(', ')}`);
    else if (typeof weight !== 'number' || !Number.isSafeInteger(weight) || weight < 0 || weight > MAX_WEIGHT) {
      problems.push(`weight of version '${version}' must be an integer from 0 to ${MAX_WEIGHT}, got ${JSON.stringify(weight) ?? String(weight)}`);
    }
  }
  if (problems.length === 0 && entries.every(([, w]) => w === 0)) problems.push('at least one weight must be above 0');
  return problems;
}

/** Every version of the model with its weight (unlisted versions get 0), in the model's version order. */
export function completeWeights(weights: Readonly<Record<string, number>>, versions: readonly string[]): VersionWeight[] {
  return versions.map((version) => ({ version, weight: Object.hasOwn(weights, version) ? weights[version]! : 0 }));
}

/** Two weight lists mean the same split when every version has the same weight (0 and unlisted are equal). */
export function sameWeights(a: readonly VersionWeight[], b: readonly VersionWeight[]): boolean {
  const weightOf = (list: readonly VersionWeight[], v: string) => list.find((e) => e.version === v)?.weight ?? 0;
  const all = new Set([...a, ...b].map((e) => e.version));
  return [...all].every((v) => weightOf(a, v) === weightOf(b, v));
}

/** Picks versions in proportion to their weights; built once per weight change, used per request. */
export class WeightedChoice {
  readonly weights: readonly VersionWeight[];
  readonly total: number;
  /** Versions with weight > 0 and the running sum of weights up to and including each. */
  readonly #versions: string[];
  readonly #cumulative: number[];

  constructor(weights: readonly VersionWeight[]) {
    this.weights = weights.map((w) => ({ ...w }));
    this.#versions = [];
    this.#cumulative = [];
    let total = 0;
    for (const { version, weight } of weights) {
      if (weight <= 0) continue;
      total += weight;
      this.#versions.push(version);
      this.#cumulative.push(total);
    }
    if (total === 0) throw new Error('at least one weight must be above 0');
    this.total = total;
  }

  /** A version chosen with probability weight / total. */
  pick(rng: Rng): string {
    const r = Math.floor(rng() * this.total);
    // Binary search for the first running sum above r; a handful of versions makes this a few comparisons.
    let lo = 0;
    let hi = this.#cumulative.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#cumulative[mid]! > r) hi = mid;
      else lo = mid + 1;
    }
    return this.#versions[lo]!;
  }

  /** The version's share of traffic, 0–1. */
  share(version: string): number {
    return (this.weights.find((w) => w.version === version)?.weight ?? 0) / this.total;
  }

  /** The version with the largest weight; ties go to the later (higher) version. */
  heaviest(): string {
    let best = this.weights[0]!;
    for (const w of this.weights) if (w.weight >= best.weight) best = w;
    return best.version;
  }
}
