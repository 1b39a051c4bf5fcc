// Shadow traffic end to end: a slow, failing or hung shadow leaves the primary's p99 and error rate untouched, the
// mirrored share matches the configured percentage, and the two real Iris versions show their real agreement in the
// admin API.

import test, { type ExecutionContext } from 'ava';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { stringify } from 'yaml';
import type { PairSummary } from '../../src/shadow/stats.js';
import { createLogger } from '../../src/telemetry/log.js';
import { faultInjectingFactory } from '../helpers/fault-backend.js';
import { gatewayConfig, irisRequest, spawnGateway, startTestGateway } from '../helpers/gateway.js';
import { IRIS_LABELS, IRIS_ROWS, irisDisagreementRows } from '../helpers/iris.js';
import { inTurns, loadFigures, percentile, reportLoad, rssMiB, runLoad, type Sample } from '../helpers/load.js';
import { ADMIN_TOKEN, fileConfig, irisVersion, tempDir } from '../helpers/traffic.js';
import { startRecordingBackend } from './hardening-recorder.js';

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
const IN_PROCESS = 'the test process (in-process gateway)';

/**
 * Measures `plain` (no shadow) and the shadowed variants in turns, after a warm-up, until every shadowed variant's p99
 * is within 1 ms of plain's (at most ATTEMPTS times). Asserts that every primary request got a 200; returns each
 * shadowed variant's last p99 difference, the number of requests sent per variant, and every sample (warm-up included).
 */
async function p99AgainstPlain<V extends string>(
  t: ExecutionContext,
  urls: Record<'plain' | V, string>,
  body: string,
): Promise<{ moved: Record<V, number>; sent: number; samples: Record<'plain' | V, Sample[]> }> {
  const names = Object.keys(urls) as ('plain' | V)[];
  const shadowed = names.filter((v): v is V => v !== 'plain');
  // Every request sent, the warm-up included, for the figures; the p99 comparison uses only the measured turns.
  const all = (await inTurns(urls, body, WARMUP / CONCURRENCY, CONCURRENCY)) as Record<'plain' | V, Sample[]>;
  let sent = WARMUP;
  let moved = Object.fromEntries(shadowed.map((v) => [v, Infinity])) as Record<V, number>;
  for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
    const samples = (await inTurns(urls, body, PER_VARIANT / CONCURRENCY, CONCURRENCY)) as Record<'plain' | V, Sample[]>;
    sent += PER_VARIANT;
    for (const v of names) {
      all[v].push(...samples[v]);
      t.true(
        samples[v].every((s) => s.status === 200),
        `${v}: a primary request failed`,
      );
    }
    const at = (v: 'plain' | V, q: number) =>
      percentile(
        samples[v].map((s) => s.ms),
        q,
      );
    moved = Object.fromEntries(shadowed.map((v) => [v, at(v, 0.99) - at('plain', 0.99)])) as Record<V, number>;
    t.log(
      `attempt ${attempt}: ${names.map((v) => `${v} p50 ${at(v, 0.5).toFixed(3)} / p99 ${at(v, 0.99).toFixed(3)} ms`).join('; ')} (${PER_VARIANT} requests each)`,
    );
    if (shadowed.every((v) => Math.abs(moved[v]) <= 1)) break;
  }
  return { moved, sent, samples: all };
}

// Serial: a gateway process starting beside the latency measurement would be noise of our own making.
test.serial('a slow (3 s) or failing shadow leaves the primary’s p99 within 1 ms of the no-shadow run, with zero primary errors', async (t) => {
  const log = createLogger('silent');
  const faults = faultInjectingFactory({ 'slow/2': { delayMs: 3000 }, 'failing/2': { fail: true } }, log);
  const versions = { '1': irisVersion('iris-v1.onnx'), '2': irisVersion('iris-v2.onnx') };
  const shadow = { targets: [{ version: '2', percent: PERCENT }], timeoutMs: 10_000, maxConcurrent: 8 };
  const gw = await startTestGateway(
    {
      ...gatewayConfig(),
      models: { plain: { versions, weights: { '1': 1 } }, slow: { versions, weights: { '1': 1 }, shadow }, failing: { versions, weights: { '1': 1 }, shadow } },
    },
    { backendFactory: faults.factory },
  );
  t.teardown(() => gw.stop());

  const body = JSON.stringify(irisRequest());
  const urls = Object.fromEntries(VARIANTS.map((v) => [v, `${gw.url}/v2/models/${v}/infer`])) as Record<Variant, string>;
  const rssAtStart = rssMiB();
  const { moved, sent, samples } = await p99AgainstPlain(t, urls, body);
  for (const v of VARIANTS) reportLoad(t, `${v} (primary requests)`, loadFigures(samples[v], { startMiB: rssAtStart, endMiB: rssMiB(), of: IN_PROCESS }));
  t.true(Math.abs(moved.slow) <= 1, `slow shadow moved p99 by ${moved.slow.toFixed(3)} ms`);
  t.true(Math.abs(moved.failing) <= 1, `failing shadow moved p99 by ${moved.failing.toFixed(3)} ms`);

  // Mirrored share (started + dropped at the cap) is within 3σ of 30% over every request sent.
  const sigma = Math.sqrt((PERCENT / 100) * (1 - PERCENT / 100) * sent);
  for (const v of ['slow', 'failing'] as const) {
    const pair = gw.controller.shadowStats(v).pairs[0]!;
    t.log(
      `${v}: mirrored ${pair.mirrored} of ${sent} (${((pair.mirrored / sent) * 100).toFixed(1)}%), dropped ${pair.dropped}, shadow errors ${pair.errors.shadow}`,
    );
    t.true(
      Math.abs(pair.mirrored - (sent * PERCENT) / 100) <= 3 * sigma,
      `${v}: mirrored ${pair.mirrored}, expected ${(sent * PERCENT) / 100} ± ${(3 * sigma).toFixed(0)}`,
    );
    t.is(pair.errors.primary, 0);
  }
  // The slow shadow held at most 8 copies at once: the rest were dropped, not queued.
  const slow = gw.controller.shadowStats('slow').pairs[0]!;
  t.true(slow.dropped > 0 && faults.made.get('slow/2')![0]!.calls <= slow.mirrored - slow.dropped);
  t.true(gw.controller.shadow.inFlight('slow') <= 8);
});

// A truly hung shadow: a real HTTP backend that takes the request and never answers. Only the shadow's own deadline
// (timeoutMs, far below the run) frees its slot; the cap drops what does not fit instead of queueing it.
test.serial(
  'a hung shadow backend (accepts, never answers; shadow timeoutMs 200): the primary’s p99 stays within 1 ms of the no-shadow run, zero primary errors, every copy sent is timed out and counted, the rest dropped at the cap, none queued',
  async (t) => {
    const hung = await startRecordingBackend({ delayMs: 600_000 }); // metadata and readiness answer; inference never does
    t.teardown(() => hung.close());
    const timeoutMs = 200;
    const maxConcurrent = 8;
    const v1 = irisVersion('iris-v1.onnx');
    const gw = await startTestGateway({
      ...gatewayConfig(),
      models: {
        plain: { versions: { '1': v1 }, weights: { '1': 1 } },
        hung: {
          versions: { '1': v1, '2': { backend: { kind: 'http', url: hung.url, model: 'iris' } } },
          weights: { '1': 1 },
          shadow: { targets: [{ version: '2', percent: PERCENT }], timeoutMs, maxConcurrent },
        },
      },
    });
    t.teardown(() => gw.stop());

    // The most shadow calls in flight at once, sampled through the run.
    let maxInFlight = 0;
    const sampler = setInterval(() => (maxInFlight = Math.max(maxInFlight, gw.controller.shadow.inFlight('hung'))), 10);
    t.teardown(() => clearInterval(sampler));
    const rssAtStart = rssMiB();
    const { moved, samples } = await p99AgainstPlain(
      t,
      { plain: `${gw.url}/v2/models/plain/infer`, hung: `${gw.url}/v2/models/hung/infer` },
      JSON.stringify(irisRequest()),
    );
    const loadEnded = performance.now();
    await gw.controller.shadow.idle();
    const settledMs = performance.now() - loadEnded;
    clearInterval(sampler);
    for (const v of ['plain', 'hung'] as const)
      reportLoad(t, `${v} (primary requests)`, loadFigures(samples[v], { startMiB: rssAtStart, endMiB: rssMiB(), of: IN_PROCESS }));

    const pair = gw.controller.shadowStats('hung').pairs[0]!;
    const started = pair.mirrored - pair.dropped;
    t.log(
      `hung shadow: mirrored ${pair.mirrored}, dropped at the cap ${pair.dropped}, started ${started}, timed out ${pair.errors.shadowTimeouts}, ` +
        `other shadow errors ${pair.errors.shadow}; received by the backend ${hung.infers.length}, answered ${hung.completed()}; ` +
        `at most ${maxInFlight} in flight; the last settled ${settledMs.toFixed(0)} ms after the load`,
    );
    t.true(Math.abs(moved.hung) <= 1, `hung shadow moved p99 by ${moved.hung.toFixed(3)} ms`);
    t.is(pair.errors.primary, 0);
    // Every copy that got a slot reached the hung backend, was never answered, and was cut at timeoutMs and counted.
    t.true(started > 0);
    t.is(pair.errors.shadowTimeouts, started, 'every started copy is counted as a shadow timeout');
    t.is(pair.errors.shadow, 0);
    t.is(pair.compared, 0);
    t.is(hung.infers.length, started, 'each started copy reached the backend once');
    t.is(hung.completed(), 0, 'the backend never answered');
    // Bounded, not queued: the excess was dropped at the cap, and what was in flight settled within one timeout.
    t.true(pair.dropped > 0, 'copies beyond the cap are dropped');
    t.true(maxInFlight <= maxConcurrent, `${maxInFlight} shadow calls in flight at once (cap ${maxConcurrent})`);
    t.true(settledMs <= timeoutMs + 500, `the last shadow calls settled ${settledMs.toFixed(0)} ms after the load`);
    t.is(gw.controller.shadow.inFlight('hung'), 0);
  },
);

test.serial('iris v1 with v2 as its shadow: the admin API shows the real agreement on the 150 Iris rows, and the log names the disagreements', async (t) => {
  const dir = await tempDir('mg-e2e-shadow-');
  const file = path.join(dir, 'gateway.yaml');
  await writeFile(
    file,
    stringify(
      fileConfig(
        {
          iris: {
            versions: { '1': irisVersion('iris-v1.onnx'), '2': irisVersion('iris-v2.onnx') },
            weights: { '1': 1 },
            shadow: { targets: [{ version: '2', percent: 100 }], maxConcurrent: 200 },
          },
        },
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
  t.deepEqual(pair!.outputs.label, {
    mode: 'classification',
    rows: 150,
    rowsAgreed: 150 - expectedDisagreements.length,
    agreementRate: Math.round(((150 - expectedDisagreements.length) / 150) * 10_000) / 10_000,
    mismatches: 0,
  });
  // Probabilities are floats: compared as regression by default, with real (non-zero) differences between the models.
  t.like(pair!.outputs.probabilities, { mode: 'regression', rows: 150 });
  t.true(pair!.outputs.probabilities!.maxAbsDiff!.max! > 0);
  t.is(pair!.latencyMs.shadow.count, 150);

  const lines = (await readFile(path.join(dir, 'disagreements.jsonl'), 'utf8'))
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as { requestId: string; comparison: { name: string }[] });
  const labelDisagreements = lines
    .filter((l) => l.comparison.some((c) => c.name === 'label'))
    .map((l) => l.requestId)
    .sort();
  t.deepEqual(labelDisagreements, expectedDisagreements.map((i) => `iris-row-${i}`).sort());
});
