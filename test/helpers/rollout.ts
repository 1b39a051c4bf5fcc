// Rollout settings for tests: evaluations every 5 s of a manual clock, each step held 10 s, few samples per gate.

/** The shared base; iris v1/v2 probabilities differ, so they are compared as classifications. */
export const TEST_ROLLOUT = {
  stable: '1',
  candidate: '2',
  shadow: { requests: 40, durationMs: 600_000, compare: { probabilities: { mode: 'classification' } } },
  steps: [5, 25, 50, 100],
  stepHoldMs: 10_000,
  evaluationIntervalMs: 5_000,
  windowMs: 10_000,
  // Latency is judged exactly in the unit tests; in tests with real traffic a busy CI machine must not decide.
  gates: { minSamples: 20, minAgreement: 0.95, maxErrorRate: 0.05, p99AllowanceMs: 5_000 },
};

/** TEST_ROLLOUT with a different sample size: `n` comparisons end the shadow phase and `n` samples judge a gate. */
export function testRollout(n: number): typeof TEST_ROLLOUT {
  return { ...TEST_ROLLOUT, shadow: { ...TEST_ROLLOUT.shadow, requests: n }, gates: { ...TEST_ROLLOUT.gates, minSamples: n } };
}
