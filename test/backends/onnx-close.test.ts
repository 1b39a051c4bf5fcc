// Closing the ONNX backend while an abandoned run is still executing: workers end themselves after the run, because
// terminating a thread inside session.run() makes onnxruntime-node abort the whole process (this file would die).

import test from 'ava';
import path from 'node:path';
import { OnnxBackend } from '../../src/backends/onnx.js';
import { GatewayError } from '../../src/errors/gateway-error.js';
import { createLogger } from '../../src/telemetry/log.js';
import { MODELS } from '../helpers/gateway.js';

test('close() during a running inference: the call is refused at once, the worker finishes and exits, the process lives', async (t) => {
  const b = new OnnxBackend({
    path: path.join(MODELS, 'mlp-large.onnx'),
    workers: 1,
    intraOpThreads: 1,
    maxQueue: 4,
    label: 'model mlp version 1',
    log: createLogger('silent'),
  });
  await b.start();
  const rows = 2048; // ~2 GMAC: still running when close() is called
  const aborter = new AbortController();
  const call = b.infer({ inputs: [{ name: 'input', datatype: 'FP32', shape: [rows, 512], data: new Float32Array(rows * 512).fill(0.25) }] }, aborter.signal);
  // The deadline passes: the caller is answered, the run goes on in its worker (abandoned).
  aborter.abort(new GatewayError('GW_ERR_DEADLINE_EXCEEDED'));
  const err = await t.throwsAsync(call, { instanceOf: GatewayError });
  t.is(err!.code, 'GW_ERR_DEADLINE_EXCEEDED');
  await b.close();
  t.false(b.ready());
  const after = await t.throwsAsync(b.infer({ inputs: [] }, new AbortController().signal), { instanceOf: GatewayError });
  t.is(after!.code, 'GW_ERR_SHUTTING_DOWN');
});
