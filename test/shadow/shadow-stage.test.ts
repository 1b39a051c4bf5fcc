// The shadow stage in a real gateway: copies are marked, capped, timed out and compared, and the primary never notices.

import test from 'ava';
import http from 'node:http';
import { mkdtemp, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { RunningGateway } from '../../src/app/gateway.js';
import type { PairSummary } from '../../src/shadow/stats.js';
import { createLogger } from '../../src/telemetry/log.js';
import { faultInjectingFactory } from '../helpers/fault-backend.js';
import { gatewayConfig, irisModels, irisRequest, postJson, startTestGateway } from '../helpers/gateway.js';
import { IRIS_ROWS, irisDisagreementRows } from '../helpers/iris.js';

const versions = (irisModels().iris as { versions: unknown }).versions;
const shadowed = (shadow: Record<string, unknown>) => ({ versions, weights: { '1': 1 }, shadow: { targets: [{ version: '2' }], ...shadow } });
const log = createLogger('silent');

let gw: RunningGateway;
let made: ReturnType<typeof faultInjectingFactory>['made'];
let logFile: string;

test.before(async () => {
  logFile = path.join(await mkdtemp(path.join(os.tmpdir(), 'mg-shadow-')), 'disagreements.jsonl');
  const faults = faultInjectingFactory({ 'timeouts/2': { delayMs: 60_000 }, 'failing/2': { fail: true } }, log);
  made = faults.made;
  gw = await startTestGateway(
    {
      ...gatewayConfig(),
      disagreementLog: { path: logFile },
      models: {
        mirrored: shadowed({ compare: { probabilities: { mode: 'ignore' } } }),
        timeouts: shadowed({ timeoutMs: 50 }),
        failing: shadowed({}),
        off: shadowed({ targets: [{ version: '2', percent: 0 }] }),
      },
    },
    { backendFactory: faults.factory },
  );
});
test.after.always(() => gw?.stop());

const backend = (label: string) => made.get(label)!.at(-1)!;
const pairOf = (model: string): PairSummary | undefined => gw.controller.shadowStats(model).pairs[0];

async function infer(model: string, rows: number[][] = [IRIS_ROWS[0]!], headers: Record<string, string> = {}, pathVersion?: string) {
  const res = await postJson(`${gw.url}/v2/models/${model}${pathVersion ? `/versions/${pathVersion}` : ''}/infer`, irisRequest(rows), headers);
  return res;
}

test.serial('every mirrored copy reaches the shadow marked as a shadow; the primary sees none', async (t) => {
  const before = { shadow: backend('mirrored/2').shadowCalls, primary: backend('mirrored/1').calls };
  for (let i = 0; i < 5; i++) t.is((await infer('mirrored')).status, 200);
  await gw.controller.shadow.idle();
  t.is(backend('mirrored/2').shadowCalls - before.shadow, 5);
  t.is(backend('mirrored/1').calls - before.primary, 5);
  t.is(backend('mirrored/1').shadowCalls, 0);
  t.like(pairOf('mirrored'), { primaryVersion: '1', shadowVersion: '2', errors: { primary: 0, shadow: 0, shadowTimeouts: 0 } });
});

test.serial('a request the shadow version answers itself is not mirrored to it', async (t) => {
  const before = { calls: backend('mirrored/2').calls, shadowCalls: backend('mirrored/2').shadowCalls, mirrored: pairOf('mirrored')?.mirrored ?? 0 };
  t.is((await infer('mirrored', undefined, {}, '2')).status, 200);
  await gw.controller.shadow.idle();
  t.is(backend('mirrored/2').calls - before.calls, 1);
  t.is(backend('mirrored/2').shadowCalls, before.shadowCalls);
  t.is(pairOf('mirrored')?.mirrored ?? 0, before.mirrored);
});

/** POST with a raw Host header (fetch does not let a caller set Host). */
function postWithHost(host: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify(irisRequest());
    const req = http.request(
      `${gw.url}/v2/models/mirrored/infer`,
      { method: 'POST', headers: { host, 'content-type': 'application/json', ...headers } },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode!));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

test.serial('a request that is itself a mirror (x-shadow: true, or a -shadow host) is served but not mirrored again', async (t) => {
  const before = backend('mirrored/2').shadowCalls;
  t.is(await postWithHost('127.0.0.1', { 'x-shadow': 'true' }), 200);
  t.is(await postWithHost('iris-shadow:8080'), 200);
  t.is(await postWithHost('iris-shadow'), 200);
  await gw.controller.shadow.idle();
  t.is(backend('mirrored/2').shadowCalls, before);
});

test.serial('disagreements are logged with the request id and both outputs; agreements are not', async (t) => {
  const rows = irisDisagreementRows();
  for (const [i, row] of rows.entries()) t.is((await infer('mirrored', [IRIS_ROWS[row]!], { 'x-request-id': `disagree-${i}` })).status, 200);
  t.is((await infer('mirrored', [IRIS_ROWS[0]!], { 'x-request-id': 'agree-0' })).status, 200);
  await gw.controller.shadow.idle();
  const lines = (await readFile(logFile, 'utf8'))
    .trimEnd()
    .split('\n')
    .map(
      (l) =>
        JSON.parse(l) as {
          requestId: string;
          comparison: { name: string }[];
          primary: { name: string; data: number[] }[];
          shadow: { name: string; data: number[] }[];
        },
    );
  const ids = lines.map((l) => l.requestId);
  t.deepEqual(ids.filter((id) => id.startsWith('disagree-')).sort(), rows.map((_, i) => `disagree-${i}`).sort());
  t.false(ids.includes('agree-0'));
  for (const line of lines) {
    t.deepEqual(
      line.comparison.map((c) => c.name),
      ['label'],
    );
    const label = (side: { name: string; data: number[] }[]) => side.find((o) => o.name === 'label')!.data[0];
    t.not(label(line.primary), label(line.shadow));
  }
  t.like(gw.controller.shadowStats('mirrored').disagreementLog, { path: logFile, written: lines.length, dropped: 0 });
});

test('a shadow slower than its timeout is abandoned (its call aborted) and counted; the primary answers normally', async (t) => {
  const started = Date.now();
  for (let i = 0; i < 3; i++) t.is((await infer('timeouts')).status, 200);
  await gw.controller.shadow.idle();
  // Three abandoned calls, each aborted through its signal (the 60 s delay never elapsed).
  t.is(backend('timeouts/2').aborted, 3);
  t.true(Date.now() - started < 30_000);
  t.like(pairOf('timeouts'), { mirrored: 3, compared: 0, errors: { primary: 0, shadow: 0, shadowTimeouts: 3 } });
  t.is(gw.controller.shadow.inFlight('timeouts'), 0);
});

test('a failing shadow is counted; the primary answers normally', async (t) => {
  for (let i = 0; i < 3; i++) t.is((await infer('failing')).status, 200);
  await gw.controller.shadow.idle();
  t.like(pairOf('failing'), { mirrored: 3, compared: 0, errors: { primary: 0, shadow: 3, shadowTimeouts: 0 } });
  t.is(pairOf('failing')!.latencyMs.primary.count, 3);
});

test('a 0% target mirrors nothing', async (t) => {
  t.is((await infer('off')).status, 200);
  await gw.controller.shadow.idle();
  t.is(backend('off/2').calls, 0);
  t.deepEqual(gw.controller.shadowStats('off').pairs, []);
});

test('copies beyond maxConcurrent are dropped and counted, never queued; stop() aborts the ones in flight, which are no shadow errors', async (t) => {
  const faults = faultInjectingFactory({ 'capped/2': { delayMs: 60_000 } }, log);
  const capped = await startTestGateway(
    { ...gatewayConfig(), models: { capped: shadowed({ maxConcurrent: 2, timeoutMs: 60_000 }) } },
    { backendFactory: faults.factory },
  );
  t.teardown(() => capped.stop());
  for (let i = 0; i < 6; i++) t.is((await postJson(`${capped.url}/v2/models/capped/infer`, irisRequest())).status, 200);
  t.is(capped.controller.shadow.inFlight('capped'), 2);
  t.is(capped.controller.model('capped').shadow!.inFlight, 2);
  t.like(capped.controller.shadowStats('capped').pairs[0], { mirrored: 6, dropped: 4 });
  t.is(faults.made.get('capped/2')![0]!.calls, 2);
  await capped.stop();
  t.is(faults.made.get('capped/2')![0]!.aborted, 2);
  // Cut short by the gateway's own shutdown: no verdict on the shadow (a rolling restart must not look like shadow failures).
  t.like(capped.controller.shadowStats('capped').pairs[0], { mirrored: 6, dropped: 4, errors: { shadow: 0, shadowTimeouts: 0 } });
  const metrics = await capped.metrics!.registry.getSingleMetric('model_gateway_shadow_errors_total')!.get();
  t.deepEqual(
    metrics.values.map((v) => v.value),
    [0],
  );
});

test.serial('the primary backend call is dispatched before its shadow copy (the copy never runs ahead of it)', async (t) => {
  const order: string[] = [];
  const watch = (label: string) => {
    const b = backend(label);
    const infer = b.infer.bind(b);
    b.infer = (request, signal) => {
      order.push(label);
      return infer(request, signal);
    };
    t.teardown(() => {
      b.infer = infer;
    });
  };
  watch('mirrored/1');
  watch('mirrored/2');
  for (let i = 0; i < 5; i++) t.is((await infer('mirrored')).status, 200);
  await gw.controller.shadow.idle();
  t.deepEqual(order, Array.from({ length: 5 }, () => ['mirrored/1', 'mirrored/2']).flat());
});
