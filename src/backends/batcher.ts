// Dynamic batching for in-process models: which queued calls can share one run, when to run them, stacking and splitting.

import type { BackendMetadata, InferenceRequest, Tensor, TensorData } from '../protocol/oip.js';

export interface BatchingOptions {
  /** Most rows (sum of dim 0) one batched run may hold. */
  maxBatchSize: number;
  /** Longest a call waits for others to join its batch while a worker is free, µs (0 = batch only what is queued). */
  maxQueueDelayUs: number;
}

/** What the planner needs to know about a queued call. */
export interface Batchable {
  /** Compatibility key (see batchKey); undefined: this call always runs alone. */
  readonly key: string | undefined;
  /** Its dim-0 size. */
  readonly rows: number;
  /** When it was queued, µs on the planner's clock. */
  readonly queuedAtUs: number;
}

/**
 * True when the model can take stacked requests: every input and output has a variable first dimension. Outputs must
 * too, or a batched result could not be split back by rows.
 */
export function modelIsBatchable(meta: BackendMetadata): boolean {
  const all = [...meta.inputs, ...meta.outputs];
  return all.length > 0 && all.every((t) => t.shape.length >= 1 && t.shape[0] === -1);
}

/**
 * Calls with the same key can be stacked along dim 0: same outputs asked for, and per input (validation has already put
 * inputs in the model's order and checked their names and datatypes) the same datatype and non-batch dims.
 * Binary-output choices are not part of it: encoding happens per call after the split.
 */
export function batchKey(request: InferenceRequest): string {
  let key = request.outputs === undefined ? '*' : request.outputs.join('\u0000');
  for (const t of request.inputs) key += `\u0001${t.datatype}:${t.shape.slice(1).join(',')}`;
  return key;
}

export type Plan<T> = { run: T[] } | { waitUntilUs: number };

/**
 * Picks the next run from the head of `queue` and removes its members. The head is the oldest call, so it decides:
 * it runs now with every compatible call behind it (up to maxBatchSize rows) once the batch is full, once nothing
 * more can fit, or once the head has waited maxQueueDelayUs; before that the answer is when to ask again. Since every
 * call behind the head is younger, no call waits for a batch longer than its own delay.
 */
export function planRun<T extends Batchable>(queue: T[], nowUs: number, opts: BatchingOptions): Plan<T> | undefined {
  const head = queue[0];
  if (head === undefined) return undefined;
  if (head.key === undefined || head.rows >= opts.maxBatchSize) {
    queue.shift();
    return { run: [head] };
  }
  const members = [0];
  let rows = head.rows;
  let overflow = false;
  for (let i = 1; i < queue.length && rows < opts.maxBatchSize; i++) {
    const c = queue[i]!;
    if (c.key !== head.key) continue;
    if (rows + c.rows > opts.maxBatchSize) {
      overflow = true;
      continue;
    }
    members.push(i);
    rows += c.rows;
  }
  const due = head.queuedAtUs + opts.maxQueueDelayUs;
  if (rows < opts.maxBatchSize && !overflow && nowUs < due) return { waitUntilUs: due };
  const run = members.map((i) => queue[i]!);
  for (let k = members.length - 1; k >= 0; k--) queue.splice(members[k]!, 1);
  return { run };
}

type NumericData = Exclude<TensorData, string[]>;

function concatData(parts: readonly TensorData[], total: number): TensorData {
  const first = parts[0]!;
  if (Array.isArray(first)) return (parts as string[][]).flat();
  const Ctor = (first as NumericData).constructor as new (n: number) => NumericData;
  const out = new Ctor(total);
  let at = 0;
  for (const p of parts as NumericData[]) {
    // Same datatype per batch key, so every part has out's array type; set() copies in bulk.
    (out as Float32Array).set(p as Float32Array, at);
    at += p.length;
  }
  return out;
}

/** Stacks compatible requests (same batchKey) along dim 0: one tensor per model input. */
export function stackInputs(requests: readonly InferenceRequest[]): Tensor[] {
  const first = requests[0]!;
  return first.inputs.map((t, k) => {
    let rows = 0;
    let total = 0;
    const parts: TensorData[] = [];
    for (const r of requests) {
      const input = r.inputs[k]!;
      rows += input.shape[0]!;
      total += input.data.length;
      parts.push(input.data);
    }
    return { name: t.name, datatype: t.datatype, shape: [rows, ...t.shape.slice(1)], data: concatData(parts, total) };
  });
}

/**
 * Splits a batched run's outputs back into each member's, by rows (views of the run's buffers, no copy). Undefined when
 * an output's first dimension is not the batch's row count: the model did not keep rows apart, so the members must
 * run alone.
 */
export function splitOutputs(outputs: readonly Tensor[], rows: readonly number[]): Tensor[][] | undefined {
  const total = rows.reduce((a, b) => a + b, 0);
  const per: Tensor[][] = rows.map(() => []);
  for (const o of outputs) {
    if (o.shape[0] !== total || (total > 0 && o.data.length % total !== 0)) return undefined;
    const width = total === 0 ? 0 : o.data.length / total;
    let row = 0;
    for (let m = 0; m < rows.length; m++) {
      const r = rows[m]!;
      const from = row * width;
      const to = (row + r) * width;
      const data: TensorData = Array.isArray(o.data) ? o.data.slice(from, to) : (o.data as NumericData).subarray(from, to);
      per[m]!.push({ name: o.name, datatype: o.datatype, shape: [r, ...o.shape.slice(1)], data });
      row += r;
    }
  }
  return per;
}
