// End to end: real `serve-model` processes as the runtime container behind `http` versions — directly, pass-through,
// a version split between in-process and remote, and the CLI gateway process proxying to it.

import test from 'ava';
import { copyFile, mkdir, mkdtemp, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import ort from 'onnxruntime-node';
import { irisDisagreementRows, IRIS_ROWS } from '../helpers/iris.js';
import { MODELS, gatewayConfig, getJson, irisRequest, postJson, runCli, spawnGateway, startTestGateway, writeConfigFile } from '../helpers/gateway.js';
import { spawnServeModel, type ServeModelProcess } from '../helpers/serve-model.js';
import { scanModelDirectory } from '../../src/app/runtime.js';
import { countingServer, ecKey } from '../helpers/jwt.js';

type Body = Record<string, unknown>;
const outputsOf = (body: Body) => body.outputs as { name: string; datatype: string; shape: number[]; data: number[] }[];

async function runtime(t: import('ava').ExecutionContext, args: string[] = ['--model-dir', MODELS]): Promise<ServeModelProcess> {
  const proc = await spawnServeModel([...args, '--port', '0', '--log-level', 'warn']);
  t.teardown(() => proc.stop('SIGKILL'));
  return proc;
}

/** A model directory using both layouts: iris/<v>/model.onnx, petals-v3.onnx, plain.onnx; other files are ignored. */
async function mixedRepository(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'mg-repo-'));
  for (const v of ['1', '2']) {
    await mkdir(path.join(dir, 'iris', v), { recursive: true });
    await copyFile(path.join(MODELS, `iris-v${v}.onnx`), path.join(dir, 'iris', v, 'model.onnx'));
  }
  await copyFile(path.join(MODELS, 'iris-v1.onnx'), path.join(dir, 'petals-v3.onnx'));
  await copyFile(path.join(MODELS, 'iris-v2.onnx'), path.join(dir, 'plain.onnx'));
  await writeFile(path.join(dir, 'README.txt'), 'not a model');
  return dir;
}

test('serve-model serves a model directory in both layouts over OIP, on 127.0.0.1 by default, and drains on SIGTERM', async (t) => {
  const proc = await runtime(t, ['--model-dir', await mixedRepository()]);
  t.regex(proc.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  t.regex(proc.stderr(), /model iris: versions 1, 2/);
  t.like(await getJson(`${proc.url}/v2/models/iris`), { status: 200, body: { name: 'iris', versions: ['1', '2'], platform: 'onnxruntime_onnx' } });
  t.like(await getJson(`${proc.url}/v2/models/petals/versions/3/ready`), { status: 200, body: { ready: true } });
  const plain = await postJson(`${proc.url}/v2/models/plain/versions/1/infer`, irisRequest(), { 'x-request-id': 'abc-1' });
  t.is(plain.status, 200);
  t.is(plain.headers.get('x-request-id'), 'abc-1');
  t.like(plain.body, { model_name: 'plain', model_version: '1' });
  t.like(await getJson(`${proc.url}/v2/health/ready`), { status: 200 });
  t.is(await proc.stop('SIGTERM'), 0);
});

test("serve-model SIGTERM follows the gateway's drain timeline: not ready at once, new connections served for drainDelayMs, then exit 0", async (t) => {
  const drainDelayMs = 1_500;
  const file = await writeConfigFile({
    server: { drainDelayMs, shutdownTimeoutMs: 10_000 },
    models: { iris: { versions: { '1': { backend: { kind: 'onnx', path: path.join(MODELS, 'iris-v1.onnx') } } } } },
  });
  const proc = await runtime(t, ['--config', file]);
  const signalled = Date.now();
  proc.child.kill('SIGTERM');
  // Readiness fails at once while the listener still accepts: the kubelet takes the pod out, in-flight traffic lands.
  let ready = await getJson(`${proc.url}/v2/health/ready`);
  for (let i = 0; ready.status !== 503 && i < 50; i++) ready = await getJson(`${proc.url}/v2/health/ready`);
  t.is(ready.status, 503);
  t.true(Date.now() - signalled < 1_000, 'readiness failed within a second of SIGTERM');
  await new Promise((resolve) => setTimeout(resolve, drainDelayMs / 2));
  const during = await postJson(`${proc.url}/v2/models/iris/infer`, irisRequest());
  t.is(during.status, 200, 'a new connection during the drain delay is still served');
  t.is(during.headers.get('connection'), 'close');
  t.is(await proc.exited, 0);
  t.true(Date.now() - signalled >= drainDelayMs, `exited after the drain delay (${Date.now() - signalled} ms)`);
});

const cliFails = test.macro(async (t, args: () => Promise<string[]>, code: number, message: RegExp) => {
  const result = await runCli(['serve-model', ...(await args())]);
  t.is(result.code, code, result.stderr);
  t.regex(result.stderr, message);
});
test('a model directory published through symbolic links (ConfigMap volumes, git-sync) is scanned like a plain one', async (t) => {
  // Kubernetes ConfigMap/Secret volume layout: visible names are links into a hidden ..data directory.
  const dir = await mkdtemp(path.join(os.tmpdir(), 'mg-links-'));
  await mkdir(path.join(dir, '..2026_12_07', 'iris', '2'), { recursive: true });
  await copyFile(path.join(MODELS, 'iris-v1.onnx'), path.join(dir, '..2026_12_07', 'plain.onnx'));
  await copyFile(path.join(MODELS, 'iris-v2.onnx'), path.join(dir, '..2026_12_07', 'iris', '2', 'model.onnx'));
  await symlink('..2026_12_07', path.join(dir, '..data'));
  await symlink(path.join('..data', 'plain.onnx'), path.join(dir, 'plain.onnx')); // a linked file
  await mkdir(path.join(dir, 'iris'));
  await symlink(path.join('..', '..data', 'iris', '2'), path.join(dir, 'iris', '2')); // a linked version directory
  await symlink(path.join('..data', 'iris'), path.join(dir, 'linked-model')); // a linked model directory
  const found = (await scanModelDirectory(dir)).map((m) => `${m.model}/${m.version}`).sort();
  t.deepEqual(found, ['iris/2', 'linked-model/2', 'plain/1']);

  await symlink(path.join(dir, 'nowhere.onnx'), path.join(dir, 'dangling.onnx'));
  const err = await t.throwsAsync(scanModelDirectory(dir));
  t.regex(err!.message, /dangling\.onnx: a symbolic link to nothing/);
});

test('serve-model without a source exits 2 with usage', cliFails, async () => [], 2, /needs exactly one of --model-dir DIR or --config FILE/);
test(
  'serve-model on an empty directory exits 1',
  cliFails,
  async () => ['--model-dir', await mkdtemp(path.join(os.tmpdir(), 'mg-empty-'))],
  1,
  /no models found/,
);
test(
  'serve-model refuses names the gateway cannot serve',
  cliFails,
  async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'mg-bad-'));
    await copyFile(path.join(MODELS, 'iris-v1.onnx'), path.join(dir, 'bad name.onnx'));
    return ['--model-dir', dir];
  },
  1,
  /bad name\.onnx: model name 'bad name' must match/,
);
test(
  'serve-model --config refuses http versions (it is the runtime, not a proxy)',
  cliFails,
  async () => ['--config', await writeConfigFile({ models: { m: { versions: { '1': { backend: { kind: 'http', url: 'http://127.0.0.1:1' } } } } } })],
  1,
  /models\.m\.versions\.1\.backend\.kind: serve-model serves ONNX models in-process/,
);

/** What ONNX Runtime itself computes for these rows: the oracle for the runtime's answers. */
async function onnxOutputs(file: string, rows: number[][]): Promise<{ probabilities: number[]; label: number[] }> {
  const session = await ort.InferenceSession.create(file);
  try {
    const out = await session.run({ input: new ort.Tensor('float32', Float32Array.from(rows.flat()), [rows.length, 4]) });
    return { probabilities: [...(out.probabilities!.data as Float32Array)], label: [...(out.label!.data as BigInt64Array)].map(Number) };
  } finally {
    await session.release();
  }
}

test('serve-model --config serves the config’s in-process ONNX versions and ignores its auth section (the runtime has no auth)', async (t) => {
  // The auth section is a real one (a remote JWKS and a per-model scope), so that a runtime applying it would be seen:
  // requests without a token would get 401, and the JWKS server would be fetched at start.
  const idp = await countingServer({ keys: [ecKey('k1').jwk] });
  t.teardown(() => idp.close());
  const file = await writeConfigFile({
    server: { host: '127.0.0.1', port: 9, grpc: { port: 0 } }, // overridden by --port
    logging: { level: 'warn' },
    auth: { issuers: [{ issuer: 'https://idp.example', audiences: ['model-gateway'], algorithms: ['ES256'], jwks: { url: idp.url } }] },
    models: {
      flowers: {
        auth: { infer: { scopes: ['flowers:infer'] } },
        versions: {
          a: { backend: { kind: 'onnx', path: path.join(MODELS, 'iris-v1.onnx') } },
          b: { backend: { kind: 'onnx', path: path.join(MODELS, 'iris-v2.onnx') } },
        },
      },
    },
  });
  const proc = await runtime(t, ['--config', file]);
  t.regex(proc.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  t.not(proc.port, 9, '--port wins over server.port of the file');
  t.regex(proc.stderr(), /model flowers: versions a, b/);

  t.like(await getJson(`${proc.url}/v2/health/ready`), { status: 200 });
  for (const version of ['a', 'b']) {
    t.like(await getJson(`${proc.url}/v2/models/flowers/versions/${version}/ready`), { status: 200, body: { name: 'flowers', version, ready: true } });
  }

  // Rows where iris-v1 and iris-v2 disagree: each version must answer with its own file's outputs.
  const rows = irisDisagreementRows().map((i) => IRIS_ROWS[i]!);
  for (const [version, model, headers] of [
    ['a', 'iris-v1.onnx', {}],
    ['b', 'iris-v2.onnx', {}],
    ['b', 'iris-v2.onnx', { authorization: 'Bearer not.a.token' }], // not even looked at
  ] as const) {
    const expected = await onnxOutputs(path.join(MODELS, model), rows);
    const res = await postJson(`${proc.url}/v2/models/flowers/versions/${version}/infer`, irisRequest(rows), headers);
    t.is(res.status, 200, JSON.stringify(res.body));
    t.is(res.headers.get('www-authenticate'), null);
    t.like(res.body, { model_name: 'flowers', model_version: version });
    const outputs = outputsOf(res.body);
    const label = outputs.find((o) => o.name === 'label')!;
    const probabilities = outputs.find((o) => o.name === 'probabilities')!;
    t.like(label, { datatype: 'INT64', shape: [rows.length] });
    t.deepEqual(label.data, expected.label, `version ${version} answers with ${model}`);
    t.like(probabilities, { datatype: 'FP32', shape: [rows.length, 3] });
    t.is(probabilities.data.length, expected.probabilities.length);
    probabilities.data.forEach((p, i) => t.true(Math.abs(p - expected.probabilities[i]!) < 1e-6, `probability ${i}: ${p} vs ${expected.probabilities[i]}`));
  }
  const labels = await Promise.all(['iris-v1.onnx', 'iris-v2.onnx'].map(async (m) => (await onnxOutputs(path.join(MODELS, m), rows)).label));
  t.notDeepEqual(labels[0], labels[1], 'the rows tell the two versions apart');
  t.is(idp.hits(), 0, 'the runtime never built a token verifier (no JWKS fetch)');
  t.is(await proc.stop('SIGTERM'), 0);
});

test('a remote version answers as the gateway’s model and version, with the runtime’s own outputs; metadata and readiness come from the remote', async (t) => {
  const proc = await runtime(t);
  const gw = await startTestGateway(
    gatewayConfig({
      models: {
        flowers: {
          versions: {
            remote: { backend: { kind: 'http', url: proc.url, model: 'iris', version: '2' } },
            checked: { backend: { kind: 'http', url: proc.url, model: 'iris', version: '2', validate: 'gateway' } },
          },
        },
      },
    }),
  );
  t.teardown(() => gw.stop());
  const request = irisRequest(IRIS_ROWS.slice(0, 5), { id: 'req-42' });
  const direct = await postJson(`${proc.url}/v2/models/iris/versions/2/infer`, request);
  const viaGateway = await postJson(`${gw.url}/v2/models/flowers/versions/remote/infer`, request);
  t.is(viaGateway.status, 200);
  t.is(viaGateway.headers.get('x-model-version'), 'remote');
  t.deepEqual(viaGateway.body, { ...direct.body, model_name: 'flowers', model_version: 'remote' });
  t.is(viaGateway.body.id, 'req-42');

  t.like(await getJson(`${gw.url}/v2/models/flowers/versions/remote`), {
    status: 200,
    body: { name: 'flowers', versions: ['checked', 'remote'], inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 4] }] },
  });
  t.like(await getJson(`${gw.url}/v2/models/flowers/versions/remote/ready`), { status: 200, body: { name: 'flowers', version: 'remote', ready: true } });
  t.like(await getJson(`${gw.url}/v2/health/ready`), { status: 200 });

  // Who validated is visible in the message: the remote knows the model as 'iris', the gateway as 'flowers'.
  const unknownInput = { inputs: [{ name: 'nope', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] };
  const passed = await postJson(`${gw.url}/v2/models/flowers/versions/remote/infer`, unknownInput);
  t.is(passed.status, 400);
  t.regex(String(passed.body.error), /model 'iris' has no such input/, 'validate: remote → the runtime validated the undecoded body');
  const checked = await postJson(`${gw.url}/v2/models/flowers/versions/checked/infer`, unknownInput);
  t.is(checked.status, 400);
  t.regex(String(checked.body.error), /model 'flowers' has no such input/, 'validate: gateway → rejected before the remote');
  const notJson = await postJson(`${gw.url}/v2/models/flowers/versions/remote/infer`, '{"inputs": [');
  t.is(notJson.status, 400);
  t.regex(String(notJson.body.error), /request body is not valid JSON/);
  t.like(await postJson(`${gw.url}/v2/models/flowers/versions/checked/infer`, request), {
    status: 200,
    body: { model_name: 'flowers', model_version: 'checked' },
  });
});

test('split: version 1 in-process and version 2 remote both answer by version path, and weighted traffic reaches both', async (t) => {
  const proc = await runtime(t, ['--model-dir', await mixedRepository()]);
  let flip = 0;
  const gw = await startTestGateway(
    gatewayConfig({
      models: {
        iris: {
          weights: { '1': 1, '2': 1 },
          versions: {
            '1': { backend: { kind: 'onnx', path: path.join(MODELS, 'iris-v1.onnx') } },
            '2': { backend: { kind: 'http', url: proc.url, version: '2' } },
          },
        },
      },
    }),
    { rng: () => (flip++ % 2 === 0 ? 0.25 : 0.75) },
  );
  t.teardown(() => gw.stop());
  // Rows where the two versions disagree prove that each path really reaches its own version.
  const rows = irisDisagreementRows().map((i) => IRIS_ROWS[i]!);
  const local = await postJson(`${gw.url}/v2/models/iris/versions/1/infer`, irisRequest(rows));
  const remote = await postJson(`${gw.url}/v2/models/iris/versions/2/infer`, irisRequest(rows));
  const runtimeV1 = await postJson(`${proc.url}/v2/models/iris/versions/1/infer`, irisRequest(rows));
  const runtimeV2 = await postJson(`${proc.url}/v2/models/iris/versions/2/infer`, irisRequest(rows));
  t.is(local.status, 200);
  t.is(remote.status, 200);
  t.deepEqual(outputsOf(local.body), outputsOf(runtimeV1.body));
  t.deepEqual(outputsOf(remote.body), outputsOf(runtimeV2.body));
  t.like(remote.body, { model_name: 'iris', model_version: '2' });
  const labels = (b: Body) => outputsOf(b).find((o) => o.name === 'label')!.data;
  t.notDeepEqual(labels(local.body), labels(remote.body));

  const seen = new Set<string>();
  for (let i = 0; i < 6; i++) {
    const res = await postJson(`${gw.url}/v2/models/iris/infer`, irisRequest());
    t.is(res.status, 200);
    seen.add(res.headers.get('x-model-version')!);
    t.is(res.body.model_version, res.headers.get('x-model-version'));
  }
  t.deepEqual([...seen].sort(), ['1', '2']);
});

test('the gateway CLI process proxies to a serve-model process', async (t) => {
  const proc = await runtime(t);
  const file = await writeConfigFile({
    server: { host: '127.0.0.1', port: 0, grpc: { port: 0 } },
    admin: { enabled: false },
    logging: { level: 'warn' },
    models: { iris: { versions: { '2': { backend: { kind: 'http', url: proc.url, version: '2' } } } } },
  });
  const gw = await spawnGateway(file);
  t.teardown(() => gw.stop('SIGKILL'));
  t.regex(gw.stderr(), /curl -s .*\/v2\/models\/iris\/infer/, 'the remote version was ready in time for the banner');
  const res = await postJson(`${gw.url}/v2/models/iris/infer`, irisRequest());
  t.like(res, { status: 200, body: { model_name: 'iris', model_version: '2' } });
  t.is(await gw.stop('SIGTERM'), 0);
});
