// Who is to blame, end to end with a real serve-model process: valid requests whose answers JSON cannot carry (NaN
// from a huge FP32 input) are the request's outcome, so fifty of them leave the breaker closed and the next valid
// request is served; a caller's own short gRPC-style deadline is not the backend's failure either.

import test from 'ava';
import { gatewayConfig, irisRequest, MODELS, postJson, startTestGateway } from '../helpers/gateway.js';
import { spawnServeModel } from '../helpers/serve-model.js';

/** A valid FP32 input whose softmax overflows to NaN in the model (every feature near FP32's maximum). */
const overflowing = () => irisRequest([[3e38, 3e38, -3e38, 3e38]]);

test('50 NaN-producing valid requests: each a 422 naming the output, the breaker stays closed, the next valid request is served', async (t) => {
  const runtime = await spawnServeModel(['--model-dir', MODELS, '--port', '0', '--log-level', 'silent']);
  t.teardown(() => runtime.stop('SIGKILL'));
  const breaker = { volumeThreshold: 5, errorThresholdPercent: 10, windowMs: 10_000, resetTimeoutMs: 60_000 };
  const gw = await startTestGateway(
    gatewayConfig({
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
  t.teardown(() => gw.stop());
  for (const version of ['1', 'local']) {
    const url = `${gw.url}/v2/models/iris/versions/${version}/infer`;
    const answers = await Promise.all(Array.from({ length: 50 }, () => postJson(url, overflowing())));
    t.deepEqual([...new Set(answers.map((a) => a.status))], [422], version);
    t.regex(String(answers[0]!.body.error), /output 'probabilities' element 0 is NaN, which JSON cannot carry; ask for binary tensor data/);
    t.like(gw.guards.get('iris', version)!.snapshot().breaker, { state: 'closed', opened: 0, window: { failures: 0 } }, version);
    const next = await postJson(url, irisRequest());
    t.is(next.status, 200, version);
  }
});
