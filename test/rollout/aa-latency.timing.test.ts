// An A/A rollout: stable and candidate are the same model file, so nothing about the candidate is slower, and a
// rollout with the default gates must complete under real concurrent traffic — never roll back on latency. Runs in the
// timing pass (alone), with the controller's clock injected; the traffic, the worker threads and their latencies are
// real.

import test from 'ava';
import path from 'node:path';
import type { GateResult } from '../../src/rollout/machine.js';
import type { RolloutView } from '../../src/rollout/view.js';
import { MODELS, gatewayConfig, startTestGateway } from '../helpers/gateway.js';
import { runLoad } from '../helpers/load.js';
import { ManualClock } from '../helpers/manual-clock.js';

/** A model that takes about a millisecond of compute per row, so latencies are the model's and the queues', not noise. */
const MODEL = path.join(MODELS, 'mlp-large.onnx');
const ROW = Array.from({ length: 512 }, (_, i) => ((i * 37) % 101) / 101);
const BODY = JSON.stringify({ inputs: [{ name: 'input', shape: [1, 512], datatype: 'FP32', data: ROW }] });

/**
 * Callers in flight at once: several per worker thread, so requests queue as they do in production. (Far beyond the
 * machine's cores — 16 callers on two, beside two busy worker threads — the OS can keep one version's worker on a worse
 * core for a whole window; in-process versions share the cores, see docs/rollouts.md.)
 */
const CONCURRENCY = 8;
/** Requests per evaluation interval: at the first step (5 %) a window of two intervals holds ~100 candidate calls. */
const PER_INTERVAL = 1000;
const INTERVAL_MS = 30_000;
/** Bounds the test: the rollout below needs about 12 evaluations when every gate passes at once. */
const MAX_EVALUATIONS = 40;

test('an A/A rollout (the same model file as stable and candidate) under concurrent traffic completes with the default gates, never failing on latency', async (t) => {
  const clock = new ManualClock(Date.now());
  const gw = await startTestGateway(
    gatewayConfig({
      admin: { token: 'aa-rollout-admin-token-0123' },
      models: {
        mlp: {
          versions: { '1': { backend: { kind: 'onnx', path: MODEL } }, '2': { backend: { kind: 'onnx', path: MODEL } } },
          // The default gates (minAgreement 0.99, maxErrorRate 0.01, maxP99Ratio 1.5, p99AllowanceMs 5, minSamples 100)
          // and steps; only the phases' lengths are shortened so the test sends thousands of requests, not millions.
          rollout: { stable: '1', candidate: '2', shadow: { requests: 500 }, stepHoldMs: 60_000, evaluationIntervalMs: INTERVAL_MS, windowMs: 60_000 },
        },
      },
    }),
    { rolloutClock: clock },
  );
  t.teardown(() => gw.stop());

  const evaluations: RolloutView[] = [];
  let view = gw.rollouts.view('mlp');
  for (let i = 0; i < MAX_EVALUATIONS && (view.status === 'running' || view.status === 'paused'); i++) {
    const load = await runLoad({ url: `${gw.url}/v2/models/mlp/infer`, body: BODY, concurrency: CONCURRENCY, total: PER_INTERVAL });
    t.deepEqual(load.statuses, { 200: PER_INTERVAL }, JSON.stringify(load.failures.slice(0, 3)));
    await gw.controller.shadow.idle();
    clock.advance(INTERVAL_MS);
    await gw.rollouts.idle();
    view = gw.rollouts.view('mlp');
    evaluations.push(view);
  }

  const log = evaluations.map((v) => `${v.lastDecision.decision}: ${v.lastDecision.reason}`).join('\n');
  t.is(view.status, 'complete', log);
  t.false(
    evaluations.some((v) => v.lastDecision.decision === 'rollback'),
    log,
  );
  const p99s = evaluations.map((v) => v.gates?.find((g) => g.gate === 'p99')).filter((g): g is GateResult => g !== undefined);
  t.false(
    p99s.some((g) => g.status === 'fail'),
    log,
  );
  // Latency was really judged: in the steps, on at least minSamples of the candidate's real calls.
  t.true(
    p99s.some((g) => g.status === 'pass' && g.samples >= 100),
    log,
  );
  t.log(`${evaluations.length} evaluations:\n${log}`);
});
