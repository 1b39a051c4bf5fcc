// End to end: the real CLI process serves the example config, its banner's curl example works and says what
// unversioned requests get, SIGTERM drains and SIGINT stops without the drain delay.

import test from 'ava';
import http from 'node:http';
import path from 'node:path';
import { ROOT, irisModels, irisRequest, postJson, runCli, spawnGateway, getJson, writeConfigFile } from '../helpers/gateway.js';

/** A token from the development key, minted the way the README quick start and the banner say. */
async function devToken(scope: string): Promise<string> {
  const minted = await runCli(['token', '--scope', scope]);
  if (minted.code !== 0) throw new Error(`model-gateway token failed: ${minted.stderr}`);
  return minted.stdout.trim();
}

const EXAMPLE = path.join(ROOT, 'examples/gateway.yaml');

test('the example config serves both Iris versions and the large MLP; the banner curl example works', async (t) => {
  const gw = await spawnGateway(EXAMPLE, ['--port', '0', '--host', '127.0.0.1', '--admin-port', '0', '--grpc-port', '0']);
  t.teardown(() => gw.stop());
  t.regex(gw.stderr(), /model iris: versions 1, 2 \(unversioned requests by weight: 1=90 2=10\); shadow 2 at 100%/);
  t.regex(gw.stderr(), /model mlp-large: versions 1 \(default 1\)/);

  // Run the banner's own example body against the gateway.
  // The banner's curl carries a dev-token command: run that command, then the request.
  const curl = /curl -s (\S+) -H 'content-type: application\/json' -H "authorization: Bearer \$\(node \S+ token --scope '([^']+)'\)" -d '(.+)'/.exec(
    gw.stderr(),
  );
  t.truthy(curl, gw.stderr());
  const [, url, scope, body] = curl as unknown as [string, string, string, string];
  const authorization = `Bearer ${await devToken(scope)}`;
  const example = await postJson(url, body, { authorization });
  t.is(example.status, 200);
  const anonymous = await postJson(url, body);
  t.is(anonymous.status, 401);
  t.is(anonymous.headers.get('www-authenticate'), 'Bearer realm="model-gateway"');
  // Unversioned iris traffic is split 90/10 in the example config: the answer names whichever version served it.
  t.true(['1', '2'].includes(String(example.body.model_version)));
  t.is(example.headers.get('x-model-version'), String(example.body.model_version));

  const v2 = await postJson(`${gw.url}/v2/models/iris/versions/2/infer`, JSON.parse(body), { authorization });
  t.is(v2.status, 200);
  t.is(v2.headers.get('x-model-version'), '2');

  const mlp = await postJson(
    `${gw.url}/v2/models/mlp-large/infer`,
    { inputs: [{ name: 'input', shape: [1, 512], datatype: 'FP32', data: Array.from({ length: 512 }, (_, i) => Math.sin(i)) }] },
    { authorization: `Bearer ${await devToken('mlp:infer')}` },
  );
  t.is(mlp.status, 200);
  t.deepEqual((mlp.body.outputs as { shape: number[] }[])[0]!.shape, [1, 16]);
  t.like(await getJson(`${gw.url}/v2/health/ready`), { status: 200 });

  // With auth on, the admin API takes a JWT with auth.admin's scope (default gateway:admin) instead of a static token.
  const admin = /admin API on (http:\/\/\S+)/.exec(gw.stderr());
  t.truthy(admin, gw.stderr());
  const status = (token?: string) => fetch(`${admin![1]}/admin/status`, token ? { headers: { authorization: `Bearer ${token}` } } : {}).then((r) => r.status);
  t.is(await status(await devToken('gateway:admin')), 200);
  t.is(await status(await devToken('iris:infer')), 403);
  t.is(await status(), 401);

  // The banner's suggested status command works as printed: its token command, then status with that token.
  const hint = /try: node \S+ status --admin-url (\S+) --token "\$\(node \S+ token --scope '([^']+)'\)"/.exec(gw.stderr());
  t.truthy(hint, gw.stderr());
  const [, adminUrl, adminScope] = hint as unknown as [string, string, string];
  t.is(adminUrl, admin![1]!);
  const run = await runCli(['status', '--admin-url', adminUrl, '--token', await devToken(adminScope)]);
  t.is(run.code, 0, run.stderr);
  t.regex(run.stdout, /iris/);
});

test('SIGTERM: stops accepting, finishes the in-flight request, exits 0', async (t) => {
  const gw = await spawnGateway(EXAMPLE, ['--port', '0', '--host', '127.0.0.1', '--admin-port', '0', '--grpc-port', '0']);
  t.teardown(() => gw.stop('SIGKILL'));
  const authorization = `Bearer ${await devToken('mlp:infer')}`;
  const rows = 2048;
  const body = JSON.stringify({ inputs: [{ name: 'input', shape: [rows, 512], datatype: 'FP32', data: new Array(rows * 512).fill(0.25) }] });
  // A raw request so we know exactly when the body has been sent before the signal.
  const inFlight = new Promise<{ status: number; connection: string | undefined }>((resolve, reject) => {
    const req = http.request(
      `${gw.url}/v2/models/mlp-large/infer`,
      { method: 'POST', headers: { 'content-type': 'application/json', authorization } },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode!, connection: res.headers.connection }));
      },
    );
    req.on('error', reject);
    req.end(body, () => setTimeout(() => gw.child.kill('SIGTERM'), 20));
  });
  const [result, code] = await Promise.all([inFlight, gw.exited]);
  t.is(result.status, 200);
  t.is(result.connection, 'close');
  t.is(code, 0);
  t.regex(gw.stdout(), /"msg":"stopped"/);
});

test('a config that cannot start fails fast with its problems and exit 1', async (t) => {
  const { runCli, writeConfigFile } = await import('../helpers/gateway.js');
  const file = await writeConfigFile({ models: { iris: { versions: { '1': { backend: { kind: 'onnx', path: 'nope.onnx' } } } } } });
  const { code, stderr } = await runCli(['start', '--config', file]);
  t.is(code, 1);
  t.regex(stderr, /models\.iris\.versions\.1\.backend\.path: file not found/);
});

/** A config without auth or admin API: the example Iris versions under the given models' traffic settings. */
function plainConfig(models: Record<string, Record<string, unknown>>, server: Record<string, unknown> = {}): Promise<string> {
  const { versions } = irisModels().iris as { versions: unknown };
  return writeConfigFile({
    server: { host: '127.0.0.1', port: 0, grpc: { port: 0 }, ...server },
    admin: { enabled: false },
    reload: { watch: false },
    logging: { level: 'info' },
    models: Object.fromEntries(Object.entries(models).map(([name, traffic]) => [name, { versions, ...traffic }])),
  });
}

test('the banner says what a request without a version gets: the weights when there are some (not the highest version), else the default', async (t) => {
  const file = await plainConfig({ iris: { weights: { '1': 90, '2': 10 } }, pinned: { weights: { '1': 1, '2': 0 } }, plain: {} });
  const gw = await spawnGateway(file);
  t.teardown(() => gw.stop());
  const banner = gw.stderr();
  t.regex(banner, /model iris: versions 1, 2 \(unversioned requests by weight: 1=90 2=10\)\n/);
  t.regex(banner, /model pinned: versions 1, 2 \(unversioned requests by weight: 1=1 2=0\)\n/);
  t.regex(banner, /model plain: versions 1, 2 \(default 2\)\n/);
  t.notRegex(banner, /model (iris|pinned): [^\n]*default/);
  // What the banner says is what requests get: the catalog's highest version (2) never answers `pinned` unversioned.
  for (let i = 0; i < 5; i++) t.like(await postJson(`${gw.url}/v2/models/pinned/infer`, irisRequest()), { status: 200, body: { model_version: '1' } });
  t.like(await postJson(`${gw.url}/v2/models/plain/infer`, irisRequest()), { status: 200, body: { model_version: '2' } });
});

test('SIGINT: exits 0 in under 4 s, skipping server.drainDelayMs (8 s; SIGINT uses 0), well within shutdownTimeoutMs (15 s)', async (t) => {
  const file = await plainConfig({ iris: {} }, { drainDelayMs: 8_000, shutdownTimeoutMs: 15_000 });
  const gw = await spawnGateway(file);
  t.teardown(() => gw.stop('SIGKILL'));
  t.like(await getJson(`${gw.url}/v2/health/ready`), { status: 200 });
  const sent = performance.now();
  gw.child.kill('SIGINT');
  const code = await gw.exited;
  const elapsedMs = performance.now() - sent;
  t.is(code, 0);
  t.log(`exited ${elapsedMs.toFixed(0)} ms after SIGINT`);
  t.true(elapsedMs < 4_000, `exited ${elapsedMs.toFixed(0)} ms after SIGINT`);
  t.regex(gw.stdout(), /"signal":"SIGINT","drainDelayMs":0/);
  t.regex(gw.stdout(), /"msg":"stopped"/);
});
