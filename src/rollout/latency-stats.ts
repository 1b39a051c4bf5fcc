// The latency gate's statistics on sparse log-scale histograms: nearest-rank p99, a lower confidence bound of it, the
// count of calls slower than a limit, and whether the candidate holds more than its share of those slow calls.

/** Latency histogram resolution: bucket i holds samples up to HIST_MIN_MS·2^(i/HIST_STEPS_PER_DOUBLING) ms (≈4.4 % wide). */
const HIST_MIN_MS = 0.01;
const HIST_STEPS_PER_DOUBLING = 16;
const HIST_MAX_INDEX = 600; // ≈ 0.01 ms · 2^37.5: far beyond any deadline

/** Histogram index → samples in that bucket (sparse). */
export type LatencyHistogram = Record<number, number>;

/** How sure the latency gate must be before it rolls back: noise rolls a candidate back at most once in a thousand. */
export const P99_CONFIDENCE = 0.999;

export function latencyIndex(ms: number): number {
  if (!(ms > HIST_MIN_MS)) return 0;
  return Math.min(HIST_MAX_INDEX, Math.ceil(Math.log2(ms / HIST_MIN_MS) * HIST_STEPS_PER_DOUBLING));
}

/** The upper bound of histogram bucket `index`, ms. */
export function latencyOfIndex(index: number): number {
  return HIST_MIN_MS * 2 ** (index / HIST_STEPS_PER_DOUBLING);
}

/** The lower bound of histogram bucket `index`, ms (every sample in it is above this). */
function lowerEdge(index: number): number {
  return index === 0 ? 0 : latencyOfIndex(index - 1);
}

const roundMs = (ms: number) => Math.round(ms * 1000) / 1000;

function sortedIndices(h: LatencyHistogram): number[] {
  return Object.keys(h)
    .map(Number)
    .sort((a, b) => a - b);
}

export function countOf(h: LatencyHistogram): number {
  let n = 0;
  for (const i in h) n += h[i]!;
  return n;
}

/** The histogram index holding the sample of 1-based `rank` in ascending order. */
function indexAtRank(h: LatencyHistogram, indices: readonly number[], rank: number): number {
  let seen = 0;
  for (const i of indices) {
    seen += h[i]!;
    if (seen >= rank) return i;
  }
  return indices[indices.length - 1]!;
}

/** Nearest-rank p99 (the upper bound of the bucket holding it), null without samples. */
export function p99Of(h: LatencyHistogram): number | null {
  const n = countOf(h);
  if (n === 0) return null;
  return roundMs(latencyOfIndex(indexAtRank(h, sortedIndices(h), Math.ceil(0.99 * n))));
}

/** log(a + b) from log a and log b. */
function logAdd(logA: number, logB: number): number {
  if (logA === -Infinity) return logB;
  if (logB === -Infinity) return logA;
  const hi = Math.max(logA, logB);
  return hi + Math.log1p(Math.exp(Math.min(logA, logB) - hi));
}

/** log P(Binomial(n, p) = k), through log-gamma-free recurrences kept by the callers; this is the k = 0 term. */
function logPmfZero(n: number, p: number): number {
  return n * Math.log1p(-p);
}

/**
 * How many of `n` samples may lie above the true p99 at `confidence`: the smallest j with P(Binomial(n, 0.01) ≤ j) ≥
 * confidence. The (n − j)-th smallest sample is then a lower confidence bound of the p99 (order statistics).
 */
export function p99Exceedances(n: number, confidence = P99_CONFIDENCE): number {
  const p = 0.01;
  // Summed in log space: (1 − p)^n underflows beyond n ≈ 70 000.
  let logPmf = logPmfZero(n, p);
  let logCdf = logPmf;
  const target = Math.log(confidence);
  let j = 0;
  while (logCdf < target && j < n) {
    logPmf += Math.log((n - j) / (j + 1)) + Math.log(p / (1 - p));
    logCdf = logAdd(logCdf, logPmf);
    j++;
  }
  return j;
}

/**
 * A lower confidence bound of the p99 at P99_CONFIDENCE (the lower edge of its bucket, so never above a sample it
 * stands for); 0 when there are too few samples to bound anything, null without samples.
 */
export function p99LowerBoundOf(h: LatencyHistogram): number | null {
  const n = countOf(h);
  if (n === 0) return null;
  const rank = n - p99Exceedances(n);
  return rank < 1 ? 0 : roundMs(lowerEdge(indexAtRank(h, sortedIndices(h), rank)));
}

/** Samples certainly slower than `ms`: those in buckets whose lower edge is at or above it. */
export function countSlowerThan(h: LatencyHistogram, ms: number): number {
  let n = 0;
  for (const i in h) if (lowerEdge(Number(i)) >= ms) n += h[i]!;
  return n;
}

/**
 * P(Binomial(n, p) ≥ k): the chance that at least `k` of `n` slow calls would be the candidate's if each were the
 * candidate's with probability `p` (its share of all the calls), i.e. if the candidate were no slower than stable.
 */
export function binomialUpperTail(n: number, p: number, k: number): number {
  if (k <= 0) return 1;
  if (k > n || p <= 0) return 0;
  if (p >= 1) return 1;
  // Summed in log space from k up: every term is tiny when the answer is, and (1 − p)^n may underflow.
  let logPmf = logPmfZero(n, p);
  const step = Math.log(p / (1 - p));
  for (let j = 0; j < k; j++) logPmf += Math.log((n - j) / (j + 1)) + step;
  let logTail = logPmf;
  for (let j = k; j < n; j++) {
    logPmf += Math.log((n - j) / (j + 1)) + step;
    logTail = logAdd(logTail, logPmf);
    if (logPmf < logTail - 40) break; // the rest cannot change the sum
  }
  return Math.min(1, Math.exp(logTail));
}
