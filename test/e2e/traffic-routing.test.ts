// End to end: a real gateway process splits 1,000 requests 90/10, and a weight shift through the CLI under load drops nothing.

import test from 'ava';
import path from 'node:path';
import { stringify } from 'yaml';
import { writeFile } from 'node:fs/promises';
import { irisRequest, runCli, spawnGateway, type GatewayProcess } from '../helpers/gateway.js';
import { runLoad, startLoad } from '../helpers/load.js';
import { ADMIN_TOKEN, fileConfig, irisVersion, tempDir } from '../helpers/traffic.js';

const BODY = JSON.stringify(irisRequest());

async function spawnIris(weights: Record<string, number>): Promise<{ gw: GatewayProcess; adminUrl: string }> {
  const file = path.join(await tempDir('mg-e2e-'), 'gateway.yaml');
  await writeFile(file, stringify(fileConfig({ iris: { versions: { '1': irisVersion('iris-v1.onnx'), '2': irisVersion('iris-v2.onnx') }, weights } })));
  const gw = await spawnGateway(file);
  const adminUrl = /admin API on (http:\/\/\S+)/.exec(gw.stderr())?.[1];
  if (!adminUrl) throw new Error(`no admin URL in the banner:\n${gw.stderr()}`);
  return { gw, adminUrl };
}

test('1,000 requests at concurrency 10 with weights 90/10: each version’s share is within ±5 points', async (t) => {
  const { gw } = await spawnIris({ '1': 90, '2': 10 });
  t.teardown(() => gw.stop());
  const result = await runLoad({ url: `${gw.url}/v2/models/iris/infer`, body: BODY, concurrency: 10, total: 1000 });
  t.deepEqual(result.statuses, { 200: 1000 });
  const v1 = (result.versions['1'] ?? 0) / 10;
  const v2 = (result.versions['2'] ?? 0) / 10;
  t.log(`shares: v1 ${v1}%, v2 ${v2}%`);
  t.is(v1 + v2, 100);
  t.true(Math.abs(v1 - 90) <= 5, `v1 ${v1}%`);
  t.true(Math.abs(v2 - 10) <= 5, `v2 ${v2}%`);
  // Each reply names its version in the body as well as the header.
  t.true(result.samples.every((s) => (JSON.parse(s.body) as { model_version: string }).model_version === s.version));
});

test('shifting weights with `model-gateway shift` under steady load: zero non-2xx, and the new split takes over', async (t) => {
  const { gw, adminUrl } = await spawnIris({ '1': 90, '2': 10 });
  t.teardown(() => gw.stop());
  const load = startLoad({ url: `${gw.url}/v2/models/iris/infer`, body: BODY, concurrency: 10, maxRequests: 20_000 });
  await load.completed(300);
  const env = { ...process.env, MODEL_GATEWAY_ADMIN_TOKEN: ADMIN_TOKEN };
  const shifted = await runCli(['shift', 'iris', '1=25', '2=75', '--admin-url', adminUrl], env);
  t.is(shifted.code, 0, shifted.stderr);
  t.regex(shifted.stdout, /^iris: weights 1=90 2=10 → 1=25 2=75 \(1 25\.0%, 2 75\.0%\)\n {2}runtime override/);
  await load.completed(600);
  const result = await load.stop();
  t.deepEqual(result.failures, [], JSON.stringify(result.statuses));
  // The last 500 requests were all issued after the shift returned: ~75% must be v2.
  const after = result.samples.filter((s) => s.index >= result.samples.length - 500);
  const v2 = after.filter((s) => s.version === '2').length / after.length;
  t.log(`v2 share after the shift: ${(v2 * 100).toFixed(1)}% of ${after.length}`);
  t.true(Math.abs(v2 - 0.75) <= 0.1, `v2 ${v2}`);
});
