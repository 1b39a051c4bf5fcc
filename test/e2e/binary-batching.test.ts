// End to end: `serve-model --max-batch-size` batches concurrent binary requests and answers each with its own rows,
// equal to an unbatched serve-model's answers; the batching config is validated like every other key.

import test from 'ava';
import { copyFile, mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/config/load.js';
import { MODELS, runCli } from '../helpers/gateway.js';
import { spawnServeModel } from '../helpers/serve-model.js';

async function mlpDirectory(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'mg-batch-repo-'));
  await copyFile(path.join(MODELS, 'mlp-large.onnx'), path.join(dir, 'mlp-large.onnx'));
  return dir;
}

/** A binary request of `rows` rows and its answer's logits. */
async function logits(url: string, rows: number, seed: number): Promise<Float32Array> {
  const data = new Float32Array(rows * 512);
  for (let i = 0; i < data.length; i++) data[i] = (((i + seed * 97) * 7919) % 2000) / 1000 - 1;
  const raw = Buffer.from(data.buffer);
  const head = Buffer.from(
    JSON.stringify({
      inputs: [{ name: 'input', datatype: 'FP32', shape: [rows, 512], parameters: { binary_data_size: raw.length } }],
      parameters: { binary_data_output: true },
    }),
  );
  const res = await fetch(`${url}/v2/models/mlp-large/versions/1/infer`, {
    method: 'POST',
    body: Buffer.concat([head, raw]),
    headers: { 'inference-header-content-length': String(head.length), 'content-type': 'application/octet-stream' },
  });
  const bytes = Buffer.from(await res.arrayBuffer());
  if (res.status !== 200) throw new Error(`status ${res.status}: ${bytes.toString()}`);
  const jsonLength = Number(res.headers.get('inference-header-content-length'));
  const json = JSON.parse(bytes.subarray(0, jsonLength).toString()) as { outputs: { shape: number[] }[] };
  if (json.outputs[0]!.shape[0] !== rows) throw new Error(`expected ${rows} rows, got shape ${JSON.stringify(json.outputs[0]!.shape)}`);
  const out = bytes.subarray(jsonLength);
  return new Float32Array(out.buffer.slice(out.byteOffset, out.byteOffset + out.length));
}

test('serve-model with --max-batch-size: concurrent binary calls get the unbatched answers (float tolerance)', async (t) => {
  const dir = await mlpDirectory();
  const [plain, batched] = await Promise.all([
    spawnServeModel(['--model-dir', dir, '--port', '0', '--log-level', 'warn']),
    spawnServeModel(['--model-dir', dir, '--port', '0', '--log-level', 'warn', '--max-batch-size', '16', '--max-queue-delay-us', '2000']),
  ]);
  t.teardown(async () => {
    await plain.stop('SIGKILL');
    await batched.stop('SIGKILL');
  });
  const calls = Array.from({ length: 16 }, (_, i) => ({ rows: 1 + (i % 3), seed: i }));
  const expected = await Promise.all(calls.map((c) => logits(plain.url, c.rows, c.seed)));
  const got = await Promise.all(calls.map((c) => logits(batched.url, c.rows, c.seed)));
  for (let i = 0; i < calls.length; i++) {
    t.is(got[i]!.length, expected[i]!.length);
    let worst = 0;
    for (let k = 0; k < expected[i]!.length; k++) {
      const want = expected[i]![k] as number;
      worst = Math.max(worst, Math.abs((got[i]![k] as number) - want) / Math.max(1, Math.abs(want)));
    }
    t.true(worst < 1e-5, `call ${i}: relative difference ${worst}`);
  }
});

const flagFails = test.macro(async (t, args: string[], message: RegExp) => {
  const result = await runCli(['serve-model', '--model-dir', await mlpDirectory(), '--port', '0', ...args]);
  t.not(result.code, 0);
  t.regex(result.stderr, message);
});
test('--max-batch-size below 2 is refused', flagFails, ['--max-batch-size', '1'], /--max-batch-size: '1' is not an integer from 2/);
test('--max-queue-delay-us alone is refused', flagFails, ['--max-queue-delay-us', '100'], /only with --max-batch-size/);

const configCase = test.macro(async (t, batching: unknown, ok: boolean) => {
  const raw = { models: { m: { versions: { '1': { backend: { kind: 'onnx', path: path.join(MODELS, 'mlp-large.onnx'), batching } } } } } };
  if (ok) {
    const config = await parseConfig(raw, { baseDir: MODELS, source: 'test' });
    const backend = config.models.m!.versions['1']!.backend;
    t.like(backend, { kind: 'onnx', batching: { maxBatchSize: 8, maxQueueDelayUs: 500 } });
  } else {
    await t.throwsAsync(parseConfig(raw, { baseDir: MODELS, source: 'test' }), { instanceOf: ConfigError });
  }
});
test('batching: the delay defaults to 500 µs', configCase, { maxBatchSize: 8 }, true);
test('batching: maxBatchSize is required', configCase, { maxQueueDelayUs: 10 }, false);
test('batching: unknown keys are rejected', configCase, { maxBatchSize: 8, preferred: [4] }, false);
test('batching: a negative delay is rejected', configCase, { maxBatchSize: 8, maxQueueDelayUs: -1 }, false);
