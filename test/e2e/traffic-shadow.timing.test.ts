// Shadow traffic end to end: a slow or failing shadow leaves the primary's p99 and error rate untouched, the mirrored share
// matches the configured percentage, and the two real Iris versions show their real agreement in the admin API.

import test from 'ava';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { stringify } from 'yaml';
import type { PairSummary } from '../../src/shadow/stats.js';
import { createLogger } from '../../src/telemetry/log.js';
import { faultInjectingFactory } from '../helpers/fault-backend.js';
import { gatewayConfig, irisRequest, spawnGateway, startTestGateway } from '../helpers/gateway.js';
import { IRIS_LABELS, IRIS_ROWS, irisDisagreementRows } from '../helpers/iris.js';
import { inTurns, percentile, runLoad, type Sample } from '../helpers/load.js';
import { ADMIN_TOKEN, fileConfig, irisVersion, tempDir } from '../helpers/traffic.js';

const PERCENT = 30;
/** Requests per variant in flight at once; low, so queueing does not amplify the machine's noise. */
const CONCURRENCY = 2;
const WARMUP = 100;
const PER_VARIANT = 1800;
/**
 * The machine is shared (two cores, other test processes): a p99 in the scheduler-noise tail can differ by more than
 * 1 ms between two identical runs. A measurement is repeated, at most this many times, until it is clean; a real
 * effect (a reply that waits for its shadow, work on the primary's path) shows in every measurement and still fails.
 */
const ATTEMPTS = 3;

type Variant = 'plain' | 'slow' | 'failing';
const VARIANTS: readonly Variant[] = ['plain', 'slow', 'failing'];

// Serial: a gateway process starting beside the latency measurement would be noise of our own making.
test.serial('a slow (3 s) or failing shadow leaves the primary’s p99 within 1 ms of the no-shadow run, with zero primary errors', async (t) => {
  const log = createLogger('silent');
  const faults = faultInjectingFactory({ 'slow/2': { delayMs: 3000 }, 'failing/2': { fail: true } }, log);
  const versions = { '1': irisVersion('iris-v1.onnx'), '2': irisVersion('iris-v2.onnx') };
  const shadow = { targets: [{ version: '2', percent: PERCENT }], timeoutMs: 10_000, maxConcurrent: 8 };
  const gw = await startTestGateway(
    { ...gatewayConfig(), models: { plain: { versions, weights: { '1': 1 } }, slow: { versions, weights: { '1': 1 }, shadow }, failing: { versions, weights: { '1': 1 }, shadow } } },
    { backendFactory: faults.factory },
  );
  t.teardown(() => gw.stop());

  const body = JSON.stringify(irisRequest());
  const urls = Object.fromEntries(VARIANTS.map((v) => [v, `${gw.url}/v2/models/${v}/infer`]));
  await inTurns(urls, body, WARMUP / CONCURRENCY, CONCURRENCY);
  let sent = WARMUP;
  let moved: Record<Variant, number> = { plain: 0, slow: Infinity, failing: Infinity };
  for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
    const samples = (await inTurns(urls, body, PER_VARIANT / CONCURRENCY, CONCURRENCY)) as Record<Variant, Sample[]>;
    sent += PER_VARIANT;
    for (const v of VARIANTS) t.true(samples[v].every((s) => s.status === 200), `${v}: a primary request failed`);
    const at = (v: Variant, q: number) => percentile(samples[v].map((s) => s.ms), q);
    const p99 = { plain: at('plain', 0.99), slow: at('slow', 0.99), failing: at('failing', 0.99) };
    moved = { plain: 0, slow: p99.slow - p99.plain, failing: p99.failing - p99.plain };
    t.log(`attempt ${attempt}: ${VARIANTS.map((v) => `${v} p50 ${at(v, 0.5).toFixed(3)} / p99 ${p99[v].toFixed(3)} ms`).join('; ')} (${PER_VARIANT} requests each)`);
    if (Math.abs(moved.slow) <= 1 && Math.abs(moved.failing) <= 1) break;
  }
  t.true(Math.abs(moved.slow) <= 1, `slow shadow moved p99 by ${moved.slow.toFixed(3)} ms`);
  t.true(Math.abs(moved.failing) <= 1, `failing shadow moved p99 by ${moved.failing.toFixed(3)} ms`);

  // Mirrored share (started + dropped at the cap) is within 3σ of 30% over every request sent.
  const sigma = Math.sqrt((PERCENT / 100) * (1 - PERCENT / 100) * sent);
  for (const v of ['slow', 'failing'] as const) {
    const pair = gw.controller.shadowStats(v).pairs[0]!;
    t.log(`${v}: mirrored ${pair.mirrored} of ${sent} (${((pair.mirrored / sent) * 100).toFixed(1)}%), dropped ${pair.dropped}, shadow errors ${pair.errors.shadow}`);
    t.true(Math.abs(pair.mirrored - (sent * PERCENT) / 100) <= 3 * sigma, `${v}: mirrored ${pair.mirrored}, expected ${(sent * PERCENT) / 100} ± ${(3 * sigma).toFixed(0)}`);
    t.is(pair.errors.primary, 0);
  }
  // The slow shadow held at most 8 copies at once: the rest were dropped, not queued.
  const slow = gw.controller.shadowStats('slow').pairs[0]!;
  t.true(slow.dropped > 0 && faults.made.get('slow/2')![0]!.calls <= slow.mirrored - slow.dropped);
  t.true(gw.controller.shadow.inFlight('slow') <= 8);
});

test.serial('iris v1 with v2 as its shadow: the admin API shows the real agreement on the 150 Iris rows, and the log names the disagreements', async (t) => {
  const dir = await tempDir('mg-e2e-shadow-');
  const file = path.join(dir, 'gateway.yaml');
  await writeFile(
    file,
    stringify(
      fileConfig(
        { iris: { versions: { '1': irisVersion('iris-v1.onnx'), '2': irisVersion('iris-v2.onnx') }, weights: { '1': 1 }, shadow: { targets: [{ version: '2', percent: 100 }], maxConcurrent: 200 } } },
        { disagreementLog: { path: 'disagreements.jsonl' } },
      ),
    ),
  );
  const gw = await spawnGateway(file);
  t.teardown(() => gw.stop());
  const adminUrl = /admin API on (http:\/\/\S+)/.exec(gw.stderr())![1]!;

  let correct = 0;
  const sent = await runLoad({
    url: `${gw.url}/v2/models/iris/infer`,
    body: (i) => JSON.stringify(irisRequest([IRIS_ROWS[i]!])),
    headers: (i) => ({ 'x-request-id': `iris-row-${i}` }),
    concurrency: 8,
    total: IRIS_ROWS.length,
  });
  t.deepEqual(sent.statuses, { 200: 150 });
  for (const s of sent.samples) {
    const label = (JSON.parse(s.body) as { outputs: { name: string; data: number[] }[] }).outputs.find((o) => o.name === 'label')!.data[0];
    if (label === IRIS_LABELS[s.index]) correct++;
  }

  // The comparisons finish after the replies; another process has no event to await, so poll (bounded).
  let pair: PairSummary | undefined;
  for (let attempt = 0; attempt < 200 && (pair?.compared ?? 0) < 150; attempt++) {
    if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 25));
    const res = await fetch(`${adminUrl}/admin/models/iris/shadow`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    pair = ((await res.json()) as { pairs: PairSummary[] }).pairs[0];
  }
  const expectedDisagreements = irisDisagreementRows();
  t.log(`v1 accuracy ${correct}/150; label agreement ${pair?.outputs.label?.rowsAgreed}/${pair?.outputs.label?.rows} (${pair?.outputs.label?.agreementRate})`);
  t.like(pair, { primaryVersion: '1', shadowVersion: '2', mirrored: 150, dropped: 0, compared: 150, errors: { primary: 0, shadow: 0, shadowTimeouts: 0 } });
  t.deepEqual(pair!.outputs.label, { mode: 'classification', rows: 150, rowsAgreed: 150 - expectedDisagreements.length, agreementRate: Math.round(((150 - expectedDisagreements.length) / 150) * 10_000) / 10_000, mismatches: 0 });
  // Probabilities are floats: compared as regression by default, with real (non-zero) differences between the models.
  t.like(pair!.outputs.probabilities, { mode: 'regression', rows: 150 });
  t.true(pair!.outputs.probabilities!.maxAbsDiff!.max! > 0);
  t.is(pair!.latencyMs.shadow.count, 150);

  const lines = (await readFile(path.join(dir, 'disagreements.jsonl'), 'utf8')).trimEnd().split('\n').map((l) => JSON.parse(l) as { requestId: string; comparison: { name: string }[] });
  const labelDisagreements = lines.filter((l) => l.comparison.some((c) => c.name === 'label')).map((l) => l.requestId).sort();
  t.deepEqual(labelDisagreements, expectedDisagreements.map((i) => `iris-row-${i}`).sort());
});
