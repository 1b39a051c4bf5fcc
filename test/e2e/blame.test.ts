// Who is to blame, end to end with a real serve-model process: valid requests whose answers JSON cannot carry (NaN
// from a huge FP32 input) are the request's outcome, so fifty of them leave the breaker closed and the next valid
// request is served; a caller's own short gRPC-style deadline is not the backend's failure either.

import test from 'ava';
import { gatewayConfig, irisRequest, MODELS, postJson, spawnGateway, startTestGateway, writeConfigFile } from '../helpers/gateway.js';
import { spawnServeModel } from '../helpers/serve-model.js';

/** A valid FP32 input whose softmax overflows to NaN in the model (every feature near FP32's maximum). */
const overflowing = () => irisRequest([[3e38, 3e38, -3e38, 3e38]]);

test('50 NaN-producing valid requests through a real gateway process: each a 422 naming the output, the breaker stays closed, the next valid request is served', async (t) => {
  const runtime = await spawnServeModel(['--model-dir', MODELS, '--port', '0', '--log-level', 'silent']);
  t.teardown(() => runtime.stop('SIGKILL'));
  const breaker = { volumeThreshold: 5, errorThresholdPercent: 10, windowMs: 10_000, resetTimeoutMs: 60_000 };
  const token = 'blame-admin-token-0123456789';
  const file = await writeConfigFile(
    gatewayConfig({
      admin: { port: 0, token },
      models: {
        iris: {
          versions: {
            // The runtime decodes and answers; the gateway validates first and passes the answer's bytes on.
            '1': { backend: { kind: 'http', url: runtime.url, model: 'iris', version: '1', validate: 'gateway' }, breaker },
            // In process: the same answer is encoded by the gateway itself.
            local: { backend: { kind: 'onnx', path: `${MODELS}/iris-v1.onnx` }, breaker },
          },
        },
      },
    }),
  );
  const gw = await spawnGateway(file);
  t.teardown(() => gw.stop('SIGKILL'));
  const admin = /admin API on (\S+)/.exec(gw.stderr())![1]!;
  for (const version of ['1', 'local']) {
    const url = `${gw.url}/v2/models/iris/versions/${version}/infer`;
    const answers = await Promise.all(Array.from({ length: 50 }, () => postJson(url, overflowing())));
    t.deepEqual([...new Set(answers.map((a) => a.status))], [422], version);
    t.regex(String(answers[0]!.body.error), /output 'probabilities' element 0 is NaN, which JSON cannot carry; ask for binary tensor data/);
    const view = (await (await fetch(`${admin}/admin/models`, { headers: { authorization: `Bearer ${token}` } })).json()) as {
      resilience: Record<string, Record<string, { breaker: { state: string; opened: number; window: { failures: number } } }>>;
    };
    t.like(view.resilience.iris![version]!.breaker, { state: 'closed', opened: 0, window: { failures: 0 } }, version);
    t.is((await postJson(url, irisRequest())).status, 200, version);
  }
});

test('shadow copies of NaN-producing requests to a remote candidate: the candidate answers 422 too, which is no error of the shadow', async (t) => {
  const runtime = await spawnServeModel(['--model-dir', MODELS, '--port', '0', '--log-level', 'silent']);
  t.teardown(() => runtime.stop('SIGKILL'));
  const gw = await startTestGateway(
    gatewayConfig({
      models: {
        iris: {
          versions: {
            '1': { backend: { kind: 'onnx', path: `${MODELS}/iris-v1.onnx` } },
            '2': { backend: { kind: 'http', url: runtime.url, model: 'iris', version: '2' } },
          },
          defaultVersion: '1',
          shadow: { targets: [{ version: '2', percent: 100 }], timeoutMs: 5_000 },
        },
      },
    }),
  );
  t.teardown(() => gw.stop());
  for (let i = 0; i < 20; i++) t.is((await postJson(`${gw.url}/v2/models/iris/infer`, overflowing())).status, 422);
  t.is((await postJson(`${gw.url}/v2/models/iris/infer`, irisRequest())).status, 200);
  let pair;
  for (let i = 0; i < 100; i++) {
    pair = gw.controller.shadowStats('iris').pairs[0];
    if (pair && pair.compared + pair.errors.shadow >= 1) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  t.like(pair, { mirrored: 21, compared: 1, errors: { shadow: 0 } });
});
