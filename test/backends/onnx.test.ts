// The in-process ONNX backend: real sessions in worker threads, metadata from the model, bounded queue, aborts, and a free event loop.

import test from 'ava';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import os from 'node:os';
import ort from 'onnxruntime-node';
import { completedAtUs, deliverInCompletionOrder } from '../../src/backends/completion-order.js';
import { OnnxBackend } from '../../src/backends/onnx.js';
import { markShadow } from '../../src/protocol/shadow-mark.js';
import { GatewayError } from '../../src/errors/gateway-error.js';
import type { InferenceRequest } from '../../src/protocol/oip.js';
import { createLogger } from '../../src/telemetry/log.js';
import { MODELS } from '../helpers/gateway.js';

const log = createLogger('silent');

function backend(file: string, opts: Partial<{ workers: number; maxQueue: number }> = {}): OnnxBackend {
  return new OnnxBackend({ path: file, workers: opts.workers ?? 1, intraOpThreads: 1, maxQueue: opts.maxQueue ?? 256, label: 'test model', log });
}

/** A deterministic batch for mlp-large: rows × 512 values in [-1, 1). */
function largeBatch(rows: number): InferenceRequest {
  const data = new Float32Array(rows * 512);
  for (let i = 0; i < data.length; i++) data[i] = ((i * 7919) % 2000) / 1000 - 1;
  return { inputs: [{ name: 'input', datatype: 'FP32', shape: [rows, 512], data }] };
}

const never = new AbortController().signal;

test('metadata is read from the ONNX model itself and the backend is ready only after start', async (t) => {
  const b = backend(path.join(MODELS, 'iris-v1.onnx'));
  t.teardown(() => b.close());
  t.false(b.ready());
  t.throws(() => b.metadata(), { instanceOf: GatewayError });
  await b.start();
  t.true(b.ready());
  t.deepEqual(b.metadata(), {
    platform: 'onnxruntime_onnx',
    inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 4] }],
    outputs: [
      { name: 'probabilities', datatype: 'FP32', shape: [-1, 3] },
      { name: 'label', datatype: 'INT64', shape: [-1] },
    ],
  });
});

test('results equal a direct onnxruntime-node session run, and the output filter is honoured', async (t) => {
  const file = path.join(MODELS, 'mlp-large.onnx');
  const b = backend(file, { workers: 2 });
  t.teardown(() => b.close());
  await b.start();
  const request = largeBatch(3);
  const { outputs } = await b.infer({ ...request, outputs: ['logits'] }, never);
  const session = await ort.InferenceSession.create(file);
  const direct = await session.run({ input: new ort.Tensor('float32', request.inputs[0]!.data as Float32Array, [3, 512]) });
  t.is(outputs.length, 1);
  t.deepEqual(outputs[0]!.shape, [3, 16]);
  t.deepEqual(Array.from(outputs[0]!.data as Float32Array), Array.from(direct.logits!.data as Float32Array));
});

test('a file that is not an ONNX model fails start() with a clear message', async (t) => {
  const file = path.join(os.tmpdir(), `not-a-model-${process.pid}.onnx`);
  await writeFile(file, 'this is not protobuf');
  const b = backend(file);
  const err = await t.throwsAsync(b.start());
  t.regex(err!.message, /^cannot load .*not-a-model-\d+\.onnx: /);
  t.false(b.ready());
});

test('a queued call is dropped when its signal aborts; running calls still finish', async (t) => {
  const b = backend(path.join(MODELS, 'mlp-large.onnx'));
  t.teardown(() => b.close());
  await b.start();
  const running = b.infer(largeBatch(256), never);
  const aborter = new AbortController();
  const queued = b.infer(largeBatch(1), aborter.signal);
  aborter.abort(new GatewayError('GW_ERR_CLIENT_CLOSED'));
  const err = await t.throwsAsync(queued, { instanceOf: GatewayError });
  t.is(err!.code, 'GW_ERR_CLIENT_CLOSED');
  t.deepEqual((await running).outputs[0]!.shape, [256, 16]);
});

test('beyond maxQueue a call is rejected at once with 503 and Retry-After', async (t) => {
  const b = backend(path.join(MODELS, 'mlp-large.onnx'), { maxQueue: 1 });
  t.teardown(() => b.close());
  await b.start();
  const first = b.infer(largeBatch(256), never); // running
  const second = b.infer(largeBatch(1), never); // queued (1 of 1)
  const err = await t.throwsAsync(b.infer(largeBatch(1), never), { instanceOf: GatewayError });
  t.is(err!.code, 'GW_ERR_BACKEND_UNAVAILABLE');
  t.is(err!.status, 503);
  t.is(err!.headers['retry-after'], '1');
  await Promise.all([first, second]);
});

test('after close() calls are refused and the backend is not ready', async (t) => {
  const b = backend(path.join(MODELS, 'iris-v1.onnx'));
  await b.start();
  await b.close();
  t.false(b.ready());
  const err = await t.throwsAsync(b.infer({ inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], data: new Float32Array(4) }] }, never), {
    instanceOf: GatewayError,
  });
  t.is(err!.code, 'GW_ERR_SHUTTING_DOWN');
});

test('inference does not block the event loop (measured event-loop delay vs. the same run on the main thread)', async (t) => {
  const file = path.join(MODELS, 'mlp-large.onnx');
  const b = backend(file);
  t.teardown(() => b.close());
  await b.start();
  const request = largeBatch(2048);

  // How long one run takes when it blocks: run it synchronously-in-effect on this thread's session.
  const session = await ort.InferenceSession.create(file, { intraOpNumThreads: 1 });
  const feeds = { input: new ort.Tensor('float32', request.inputs[0]!.data as Float32Array, [2048, 512]) };
  await session.run(feeds); // warm
  // Each side is compared with its own runs, timed in the same window (the machine's load varies between windows).
  const timed = async (run: () => Promise<unknown>) => {
    const start = performance.now();
    await run();
    return performance.now() - start;
  };
  const onMain = monitorEventLoopDelay({ resolution: 1 });
  onMain.enable();
  const mainRuns: number[] = [];
  for (let i = 0; i < 5; i++) {
    mainRuns.push(await timed(() => session.run(feeds)));
    await new Promise((r) => setTimeout(r, 5));
  }
  onMain.disable();

  // Through the backend: keep its worker busy for several runs while timers tick on the event loop.
  const offMain = monitorEventLoopDelay({ resolution: 1 });
  offMain.enable();
  const workerRuns: number[] = [];
  for (let i = 0; i < 5; i++) workerRuns.push(await timed(() => b.infer(request, never)));
  offMain.disable();

  const shortestMainRunMs = Math.min(...mainRuns);
  const medianWorkerRunMs = [...workerRuns].sort((a, c) => a - c)[2]!;
  const mainMaxMs = onMain.max / 1e6;
  const workerMaxMs = offMain.max / 1e6;
  const workerP99Ms = offMain.percentile(99) / 1e6;
  t.log(
    `runs ≈ ${shortestMainRunMs.toFixed(1)} ms (main) / ${medianWorkerRunMs.toFixed(1)} ms (worker); event-loop delay max: ${mainMaxMs.toFixed(1)} ms on the main thread vs ${workerMaxMs.toFixed(1)} ms (p99 ${workerP99Ms.toFixed(1)} ms) through the worker backend`,
  );
  // The measurement can see blocking: a run on the main thread stalls the loop for about a whole run.
  t.true(mainMaxMs > shortestMainRunMs * 0.5, `main-thread run should block the loop (max delay ${mainMaxMs} ms, shortest run ${shortestMainRunMs} ms)`);
  // Through the worker pool the loop stays free: stalls stay far below one run.
  t.true(workerMaxMs < medianWorkerRunMs * 0.4, `worker backend blocked the loop: max delay ${workerMaxMs} ms vs run ${medianWorkerRunMs} ms`);
});

test('a real call is served before mirrored copies queued ahead of it; copies keep their own order', async (t) => {
  const b = backend(path.join(MODELS, 'iris-v1.onnx'));
  t.teardown(() => b.close());
  await b.start();
  const order: string[] = [];
  const call = (name: string, request: InferenceRequest) => b.infer(request, never).then(() => void order.push(name));
  const row: InferenceRequest = { inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], data: new Float32Array([5.1, 3.5, 1.4, 0.2]) }] };
  // The first call takes the only worker; the rest queue behind it, in the same turn of the event loop.
  await Promise.all([call('copy 1', markShadow(row)), call('copy 2', markShadow(row)), call('copy 3', markShadow(row)), call('real', row)]);
  t.deepEqual(order, ['copy 1', 'real', 'copy 2', 'copy 3']);
});

test('answers of worker threads reach their callers in the order the workers finished them', async (t) => {
  const delivered: string[] = [];
  await new Promise<void>((resolve) => {
    // Handed over in the same turn in the order the event loop serviced the workers: later-finished first.
    deliverInCompletionOrder(3_000, () => delivered.push('finished at 3 ms'));
    deliverInCompletionOrder(1_000, () => delivered.push('finished at 1 ms'));
    deliverInCompletionOrder(2_000, () => {
      delivered.push('finished at 2 ms');
    });
    setImmediate(() => setImmediate(resolve));
  });
  t.deepEqual(delivered, ['finished at 1 ms', 'finished at 2 ms', 'finished at 3 ms']);
  t.true(completedAtUs() > 0);
});
