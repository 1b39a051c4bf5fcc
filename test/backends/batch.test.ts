// Dynamic batching: the planner's decisions on an injected clock, stacking/splitting, and real ONNX workers serving
// batched calls (results equal to unbatched ones, mixed shapes, a poisoned member, aborted members).

import test from 'ava';
import { setMaxListeners } from 'node:events';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { GraphBuilder } from '../../scripts/onnx-graph.js';
import { batchKey, planRun, splitOutputs, stackInputs, type Batchable, type BatchingOptions } from '../../src/backends/batcher.js';
import { OnnxBackend } from '../../src/backends/onnx.js';
import { GatewayError } from '../../src/errors/gateway-error.js';
import type { InferenceRequest, InferenceResult, Tensor } from '../../src/protocol/oip.js';
import { createLogger } from '../../src/telemetry/log.js';
import { MODELS } from '../helpers/gateway.js';

const log = createLogger('silent');
const never = new AbortController().signal;
// Many calls share this never-aborted signal; each adds one listener while it is queued.
setMaxListeners(0, never);

// ---------------------------------------------------------------------------------------------------------------
// The planner, on an injected clock (µs).

interface Call extends Batchable {
  id: string;
}
const call = (id: string, key: string | undefined, rows: number, queuedAtUs: number): Call => ({ id, key, rows, queuedAtUs });
const OPTS: BatchingOptions = { maxBatchSize: 8, maxQueueDelayUs: 1000 };

const plans = test.macro((t, queue: Call[], nowUs: number, opts: BatchingOptions, expected: { run?: string[]; waitUntilUs?: number; left: string[] }) => {
  const q = [...queue];
  const plan = planRun(q, nowUs, opts);
  if (expected.run) t.deepEqual(plan && 'run' in plan ? plan.run.map((c) => c.id) : plan, expected.run);
  else t.deepEqual(plan, { waitUntilUs: expected.waitUntilUs! });
  t.deepEqual(
    q.map((c) => c.id),
    expected.left,
  );
});
test('a lone call waits, at most until its own delay is over', plans, [call('a', 'k', 1, 100)], 100, OPTS, { waitUntilUs: 1100, left: ['a'] });
test('half-way through the delay it still waits for the same deadline', plans, [call('a', 'k', 1, 100)], 600, OPTS, { waitUntilUs: 1100, left: ['a'] });
test('at the deadline it runs with what has joined', plans, [call('a', 'k', 1, 100), call('b', 'k', 2, 900)], 1100, OPTS, { run: ['a', 'b'], left: [] });
test('a full batch runs at once, before the deadline', plans, [call('a', 'k', 4, 0), call('b', 'k', 4, 10), call('c', 'k', 1, 20)], 30, OPTS, {
  run: ['a', 'b'],
  left: ['c'],
});
test('a compatible call that does not fit means the batch cannot grow: run now', plans, [call('a', 'k', 5, 0), call('b', 'k', 4, 10)], 20, OPTS, {
  run: ['a'],
  left: ['b'],
});
test(
  'incompatible calls are skipped and keep their order',
  plans,
  [call('a', 'k', 1, 0), call('x', 'other', 1, 1), call('b', 'k', 1, 2), call('y', 'other', 1, 3)],
  1000,
  OPTS,
  { run: ['a', 'b'], left: ['x', 'y'] },
);
test('an unbatchable head runs alone at once', plans, [call('a', undefined, 1, 0), call('b', 'k', 1, 0)], 0, OPTS, { run: ['a'], left: ['b'] });
test('a head as large as the batch limit runs alone at once', plans, [call('a', 'k', 8, 0), call('b', 'k', 1, 0)], 0, OPTS, { run: ['a'], left: ['b'] });
test(
  'delay 0: only what is already queued is batched, nothing waits',
  plans,
  [call('a', 'k', 1, 50), call('b', 'k', 1, 50)],
  50,
  { maxBatchSize: 8, maxQueueDelayUs: 0 },
  { run: ['a', 'b'], left: [] },
);

test('no call waits for a batch beyond its own delay (simulated arrivals, workers always free)', (t) => {
  // Arrivals every 130 µs with mixed keys; the clock only moves to arrival times and to the deadlines the planner names.
  const queue: Call[] = [];
  const waited: number[] = [];
  let now = 0;
  const arrivals = Array.from({ length: 200 }, (_, i) => call(`c${i}`, i % 3 === 0 ? 'k1' : 'k2', 1 + (i % 2), i * 130));
  let next = 0;
  while (next < arrivals.length || queue.length > 0) {
    const plan = planRun(queue, now, OPTS);
    if (plan && 'run' in plan) {
      for (const c of plan.run) waited.push(now - c.queuedAtUs);
      continue;
    }
    const deadline = plan ? plan.waitUntilUs : Infinity;
    const arrival = next < arrivals.length ? arrivals[next]!.queuedAtUs : Infinity;
    now = Math.min(deadline, arrival);
    if (arrival <= now) queue.push(arrivals[next++]!);
  }
  t.is(waited.length, 200);
  t.true(Math.max(...waited) <= OPTS.maxQueueDelayUs, `max wait ${Math.max(...waited)} µs`);
});

// ---------------------------------------------------------------------------------------------------------------
// Stacking and splitting.

const fp32 = (name: string, shape: number[], values: number[]): Tensor => ({ name, datatype: 'FP32', shape, data: new Float32Array(values) });

test('stack then split returns each member its own rows (views, no copy of outputs)', (t) => {
  const a: InferenceRequest = { inputs: [fp32('x', [1, 2], [1, 2]), { name: 's', datatype: 'BYTES', shape: [1], data: ['a'] }] };
  const b: InferenceRequest = { inputs: [fp32('x', [2, 2], [3, 4, 5, 6]), { name: 's', datatype: 'BYTES', shape: [2], data: ['b', 'c'] }] };
  t.is(batchKey(a), batchKey(b));
  const stacked = stackInputs([a, b]);
  t.deepEqual(stacked[0]!.shape, [3, 2]);
  t.deepEqual(Array.from(stacked[0]!.data as Float32Array), [1, 2, 3, 4, 5, 6]);
  t.deepEqual(stacked[1]!.data, ['a', 'b', 'c']);
  const out = fp32('y', [3, 2], [10, 20, 30, 40, 50, 60]);
  const split = splitOutputs([out], [1, 2])!;
  t.deepEqual(
    split.map((m) => Array.from(m[0]!.data as Float32Array)),
    [
      [10, 20],
      [30, 40, 50, 60],
    ],
  );
  t.deepEqual(
    split.map((m) => m[0]!.shape),
    [
      [1, 2],
      [2, 2],
    ],
  );
  t.is((split[1]![0]!.data as Float32Array).buffer, (out.data as Float32Array).buffer);
});

const keys = test.macro((t, a: InferenceRequest, b: InferenceRequest, same: boolean) => {
  t.is(batchKey(a) === batchKey(b), same);
});
test('rows may differ', keys, { inputs: [fp32('x', [1, 2], [1, 2])] }, { inputs: [fp32('x', [2, 2], [1, 2, 3, 4])] }, true);
test('non-batch dims must match', keys, { inputs: [fp32('x', [1, 2], [1, 2])] }, { inputs: [fp32('x', [1, 3], [1, 2, 3])] }, false);
test('requested outputs must match', keys, { inputs: [fp32('x', [1, 2], [1, 2])], outputs: ['y'] }, { inputs: [fp32('x', [1, 2], [1, 2])] }, false);

test('an output whose first dimension is not the batch cannot be split', (t) => {
  t.is(splitOutputs([fp32('y', [1, 2], [1, 2])], [1, 2]), undefined);
});

// ---------------------------------------------------------------------------------------------------------------
// Real workers.

async function modelFile(name: string, build: (g: GraphBuilder) => void): Promise<string> {
  const g = new GraphBuilder(name);
  build(g);
  const file = path.join(await mkdtemp(path.join(os.tmpdir(), 'mg-batch-')), `${name}.onnx`);
  await writeFile(file, g.serialize());
  return file;
}

/** y = x * 2 on FP32 [batch, n]: any width, so calls of different widths cannot share a batch. */
const doubler = () =>
  modelFile('doubler', (g) => {
    g.input('x', 'FP32', ['batch', 'n']);
    g.node('Mul', ['x', g.initializer('two', new Float32Array([2]), [1])], ['y']);
    g.output('y', 'FP32', ['batch', 'n']);
  });

/** Looks rows up in a 4×2 table: an index outside 0..3 makes ONNX Runtime fail the whole run. */
const lookup = () =>
  modelFile('lookup', (g) => {
    g.input('idx', 'INT64', ['batch', 1]);
    g.node('Gather', [g.initializer('table', new Float32Array([0, 1, 10, 11, 20, 21, 30, 31]), [4, 2]), 'idx'], ['y'], {}, 'gather');
    g.output('y', 'FP32', ['batch', 1, 2]);
  });

type OnRun = (rows: number, calls: number) => void;

function backend(file: string, batching?: BatchingOptions, onRun?: OnRun): OnnxBackend {
  return new OnnxBackend({
    path: file,
    workers: 1,
    intraOpThreads: 1,
    maxQueue: 1024,
    label: 'test model',
    log,
    ...(batching ? { batching } : {}),
    ...(onRun ? { onRun } : {}),
  });
}

async function started(t: import('ava').ExecutionContext, file: string, batching?: BatchingOptions, onRun?: OnRun): Promise<OnnxBackend> {
  const b = backend(file, batching, onRun);
  t.teardown(() => b.close());
  await b.start();
  return b;
}

function mlpRequest(rows: number, seed: number): InferenceRequest {
  const data = new Float32Array(rows * 512);
  for (let i = 0; i < data.length; i++) data[i] = (((i + seed * 131) * 7919) % 2000) / 1000 - 1;
  return { inputs: [{ name: 'input', datatype: 'FP32', shape: [rows, 512], data }] };
}

test('mlp-large: 24 concurrent calls batched give the unbatched results (float tolerance), in fewer runs', async (t) => {
  const file = path.join(MODELS, 'mlp-large.onnx');
  const [plain, batched] = await Promise.all([started(t, file), started(t, file, { maxBatchSize: 32, maxQueueDelayUs: 200_000 })]);
  const requests = Array.from({ length: 24 }, (_, i) => mlpRequest(1 + (i % 3), i));
  const expected: InferenceResult[] = [];
  for (const r of requests) expected.push(await plain.infer(r, never));
  const got = await Promise.all(requests.map((r) => batched.infer(r, never)));
  for (let i = 0; i < requests.length; i++) {
    const want = expected[i]!.outputs[0]!;
    const have = got[i]!.outputs[0]!;
    t.deepEqual(have.shape, want.shape);
    const a = have.data as Float32Array;
    const b = want.data as Float32Array;
    let worst = 0;
    for (let k = 0; k < b.length; k++) worst = Math.max(worst, Math.abs((a[k] as number) - (b[k] as number)) / Math.max(1, Math.abs(b[k] as number)));
    // GEMM kernels may block a 32-row product differently from a 1-row one: equal up to float rounding.
    t.true(worst < 1e-5, `call ${i}: relative difference ${worst}`);
  }
  const stats = batched.batchStats();
  t.true(stats.batchedRuns >= 1, JSON.stringify(stats));
  t.true(stats.runs < requests.length, JSON.stringify(stats));
  t.is(stats.retriedAlone, 0);
});

test('mixed shapes: only compatible calls share a run, and every call gets exactly its own rows', async (t) => {
  const b = await started(t, await doubler(), { maxBatchSize: 64, maxQueueDelayUs: 200_000 });
  const widths = [2, 3, 2, 3, 2, 5, 2];
  const requests = widths.map((w, i) => ({
    inputs: [
      fp32(
        'x',
        [1 + (i % 2), w],
        Array.from({ length: (1 + (i % 2)) * w }, (_, k) => i * 100 + k),
      ),
    ],
  }));
  const results = await Promise.all(requests.map((r) => b.infer(r, never)));
  results.forEach((res, i) => {
    const input = requests[i]!.inputs[0]!;
    t.deepEqual(res.outputs[0]!.shape, input.shape);
    // Bit for bit: ×2 is exact in FP32.
    t.deepEqual(
      Array.from(res.outputs[0]!.data as Float32Array),
      Array.from(input.data as Float32Array, (v) => v * 2),
    );
  });
  const stats = b.batchStats();
  // Three widths → at least three runs; the width-2 and width-3 calls were batched.
  t.true(stats.runs >= 3 && stats.runs < widths.length, JSON.stringify(stats));
});

test('a poisoned member fails alone: the batch is re-run member by member and the others succeed', async (t) => {
  // The batch is full (5 rows) exactly when the fifth call joins, so it runs then: a busy CI machine pausing between
  // two calls cannot split it the way a short delay could.
  const indices = [0, 3, 99, 1, 2];
  const runs: [number, number][] = [];
  const b = await started(t, await lookup(), { maxBatchSize: indices.length, maxQueueDelayUs: 1_000_000 }, (rows, calls) => runs.push([rows, calls]));
  const calls = indices.map((i) => b.infer({ inputs: [{ name: 'idx', datatype: 'INT64', shape: [1, 1], data: new BigInt64Array([BigInt(i)]) }] }, never));
  const settled = await Promise.allSettled(calls);
  settled.forEach((s, k) => {
    const i = indices[k]!;
    if (i === 99) {
      t.is(s.status, 'rejected');
      const err = (s as PromiseRejectedResult).reason as GatewayError;
      t.is(err.code, 'GW_ERR_BACKEND_FAILED');
      return;
    }
    t.is(s.status, 'fulfilled', String((s as PromiseRejectedResult).reason));
    const out = (s as PromiseFulfilledResult<InferenceResult>).value.outputs[0]!;
    t.deepEqual(out.shape, [1, 1, 2]);
    t.deepEqual(Array.from(out.data as Float32Array), [i * 10, i * 10 + 1]);
  });
  const stats = b.batchStats();
  t.is(stats.batchedRuns, 1, JSON.stringify(stats));
  t.is(stats.retriedAlone, indices.length);
  // onRun (the batch-size metric) sees every run: the failed 5-row batch, then each member's 1-row retry.
  t.deepEqual(runs, [
    [5, 5],
    [1, 1],
    [1, 1],
    [1, 1],
    [1, 1],
    [1, 1],
  ]);
});

test('an aborted call is dropped from the queue before its batch runs', async (t) => {
  const runs: [number, number][] = [];
  const b = await started(t, path.join(MODELS, 'mlp-large.onnx'), { maxBatchSize: 32, maxQueueDelayUs: 0 }, (rows, calls) => runs.push([rows, calls]));
  // Occupy the only worker, then queue three compatible calls and abort the middle one.
  const busy = b.infer(mlpRequest(512, 1), never);
  const aborter = new AbortController();
  const first = b.infer(mlpRequest(1, 2), never);
  const dropped = b.infer(mlpRequest(1, 3), aborter.signal);
  const last = b.infer(mlpRequest(1, 4), never);
  aborter.abort();
  const err = await t.throwsAsync(dropped, { instanceOf: GatewayError });
  t.is(err!.code, 'GW_ERR_CLIENT_CLOSED');
  await Promise.all([busy, first, last]);
  t.deepEqual(b.batchStats(), { runs: 2, batchedRuns: 1, batchedCalls: 2, retriedAlone: 0 });
  // Rows and calls per run: the 512-row call alone, then the two 1-row calls left after the abort.
  t.deepEqual(runs, [
    [512, 1],
    [2, 2],
  ]);
});

test('with batching on, a lone call is answered without a partner and a model without a batch dim runs unbatched', async (t) => {
  const b = await started(t, path.join(MODELS, 'iris-v1.onnx'), { maxBatchSize: 8, maxQueueDelayUs: 1000 });
  const res = await b.infer({ inputs: [fp32('input', [1, 4], [5.1, 3.5, 1.4, 0.2])] }, never);
  t.deepEqual(res.outputs[1]!.data, new BigInt64Array([0n]));
  t.deepEqual(b.batchStats(), { runs: 1, batchedRuns: 0, batchedCalls: 0, retriedAlone: 0 });
  const fixed = await modelFile('fixed', (g) => {
    g.input('x', 'FP32', [2, 2]);
    g.node('Identity', ['x'], ['y']);
    g.output('y', 'FP32', [2, 2]);
  });
  const f = await started(t, fixed, { maxBatchSize: 8, maxQueueDelayUs: 1000 });
  await Promise.all([1, 2].map((v) => f.infer({ inputs: [fp32('x', [2, 2], [v, v, v, v])] }, never)));
  t.is(f.batchStats().batchedRuns, 0);
});

test("a batch's calls are answered one event-loop turn apart, so their replies never hold the loop all at once", async (t) => {
  const runs: [number, number][] = [];
  const b = await started(t, await doubler(), { maxBatchSize: 4, maxQueueDelayUs: 1_000_000 }, (rows, calls) => runs.push([rows, calls]));
  // Counts event-loop turns (check phases) while the batch is out; each call notes the turn it was answered in.
  let turn = 0;
  let counting = true;
  const tick = (): void => {
    turn++;
    if (counting) setImmediate(tick);
  };
  setImmediate(tick);
  const turns = await Promise.all(
    [1, 2, 3, 4].map((v) =>
      b
        .infer({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1], data: new Float32Array([v]) }] }, never)
        .then((r) => ({ turn, y: Array.from(r.outputs[0]!.data as Float32Array) })),
    ),
  );
  counting = false;
  t.deepEqual(runs, [[4, 4]], 'one batched run');
  t.deepEqual(
    turns.map((r) => r.y),
    [[2], [4], [6], [8]],
  );
  for (let i = 1; i < turns.length; i++)
    t.true(turns[i]!.turn > turns[i - 1]!.turn, `call ${i} answered in turn ${turns[i]!.turn}, call ${i - 1} in ${turns[i - 1]!.turn}`);
});
