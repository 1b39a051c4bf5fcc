// Test models built in memory with the project's ONNX graph builder and written to a temp dir.

import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { allDatatypeIdentityInputs, buildIdentityModel, GraphBuilder } from '../../scripts/onnx-graph.js';

async function writeModel(name: string, bytes: Uint8Array): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'mg-model-'));
  const file = path.join(dir, name);
  await writeFile(file, bytes);
  return file;
}

/** Inputs `input_<DT>` → outputs `output_<DT>` for every OIP datatype, shape ['batch', -1]. */
export function identityModelFile(): Promise<string> {
  return writeModel('identity.onnx', buildIdentityModel(allDatatypeIdentityInputs()));
}

/** One FP32 input `x` of shape [batch, 3] → `x_out`: a model a raw binary request (no JSON header) can describe. */
export function singleInputModelFile(): Promise<string> {
  return writeModel('single.onnx', buildIdentityModel([{ name: 'x', elemType: 'FP32', shape: ['batch', 3] }]));
}

/** A model that accepts shape [-1, 4] but fails inside ONNX Runtime unless the batch is 1 (Reshape to [1, 4]). */
export function failingModelFile(): Promise<string> {
  const g = new GraphBuilder('fails-unless-batch-1');
  g.input('x', 'FP32', ['batch', 4]);
  const shape = g.initializer('target_shape', new BigInt64Array([1n, 4n]), [2]);
  g.node('Reshape', ['x', shape], ['y']);
  g.output('y', 'FP32', [1, 4]);
  return writeModel('failing.onnx', g.serialize());
}
