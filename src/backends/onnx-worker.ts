// Worker thread holding one ONNX Runtime session: session.run() blocks its thread, so it must not be the event loop's.

import { parentPort, workerData } from 'node:worker_threads';
import ort from 'onnxruntime-node';
import type { BackendMetadata, Datatype, Tensor, TensorData, TensorMetadata } from '../protocol/oip.js';
import { completedAtUs } from './completion-order.js';
import type { WorkerRequest, WorkerResponse, OnnxWorkerData } from './onnx-messages.js';

const ORT_TO_OIP: Partial<Record<string, Datatype>> = {
  bool: 'BOOL',
  uint8: 'UINT8',
  uint16: 'UINT16',
  uint32: 'UINT32',
  uint64: 'UINT64',
  int8: 'INT8',
  int16: 'INT16',
  int32: 'INT32',
  int64: 'INT64',
  float16: 'FP16',
  float32: 'FP32',
  float64: 'FP64',
  string: 'BYTES',
};

const OIP_TO_ORT: Record<Datatype, ort.Tensor.Type> = {
  BOOL: 'bool',
  UINT8: 'uint8',
  UINT16: 'uint16',
  UINT32: 'uint32',
  UINT64: 'uint64',
  INT8: 'int8',
  INT16: 'int16',
  INT32: 'int32',
  INT64: 'int64',
  FP16: 'float16',
  FP32: 'float32',
  FP64: 'float64',
  BYTES: 'string',
};

function describe(values: readonly ort.InferenceSession.ValueMetadata[], kind: string): TensorMetadata[] {
  return values.map((v) => {
    if (!v.isTensor) throw new Error(`${kind} '${v.name}' is not a tensor; only tensor inputs and outputs are supported`);
    const datatype = ORT_TO_OIP[v.type];
    if (datatype === undefined) throw new Error(`${kind} '${v.name}' has ONNX type ${v.type}, which the gateway does not support`);
    // Symbolic ('batch') and unknown dims are variable: -1 in the OIP metadata.
    const shape = v.shape.map((d) => (typeof d === 'number' && d >= 0 ? d : -1));
    return { name: v.name, datatype, shape };
  });
}

function toOrt(t: Tensor): ort.Tensor {
  // ort.Tensor's constructor overloads do not unify over the union; each pair is valid at run time.
  return new ort.Tensor(OIP_TO_ORT[t.datatype], t.data as ort.Tensor.DataType, t.shape);
}

function fromOrt(name: string, datatype: Datatype, t: ort.Tensor): Tensor {
  return { name, datatype, shape: [...t.dims], data: t.data as TensorData };
}

/** Zero-filled data for warm-up: variable dims become 1. */
function zeros(meta: TensorMetadata): Tensor {
  const shape = meta.shape.map((d) => (d < 0 ? 1 : d));
  const n = shape.reduce((a, b) => a * b, 1);
  const data = ((): TensorData => {
    switch (meta.datatype) {
      case 'BYTES':
        return new Array<string>(n).fill('');
      case 'BOOL':
      case 'UINT8':
        return new Uint8Array(n);
      case 'INT8':
        return new Int8Array(n);
      case 'UINT16':
      case 'FP16':
        return new Uint16Array(n);
      case 'INT16':
        return new Int16Array(n);
      case 'UINT32':
        return new Uint32Array(n);
      case 'INT32':
        return new Int32Array(n);
      case 'UINT64':
        return new BigUint64Array(n);
      case 'INT64':
        return new BigInt64Array(n);
      case 'FP32':
        return new Float32Array(n);
      case 'FP64':
        return new Float64Array(n);
    }
  })();
  return { name: meta.name, datatype: meta.datatype, shape, data };
}

async function main(): Promise<void> {
  const port = parentPort!;
  const config = workerData as OnnxWorkerData;
  const post = (msg: WorkerResponse, transfer: ArrayBuffer[] = []) => port.postMessage(msg, transfer);
  let session: ort.InferenceSession;
  let metadata: BackendMetadata;
  try {
    session = await ort.InferenceSession.create(config.path, {
      intraOpNumThreads: config.intraOpThreads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      // Run failures are returned to the caller and logged by the gateway as JSON; ORT's own stderr copy is noise.
      logSeverityLevel: 4,
    });
    metadata = {
      platform: 'onnxruntime_onnx',
      inputs: describe(session.inputMetadata, 'input'),
      outputs: describe(session.outputMetadata, 'output'),
    };
  } catch (err) {
    post({ type: 'load-error', message: (err as Error).message });
    return;
  }
  const outputTypes = new Map(metadata.outputs.map((o) => [o.name, o.datatype]));

  const run = async (inputs: Tensor[], outputs: string[] | undefined): Promise<Tensor[]> => {
    const feeds: Record<string, ort.Tensor> = {};
    for (const t of inputs) feeds[t.name] = toOrt(t);
    const names = outputs ?? metadata.outputs.map((o) => o.name);
    const result = await session.run(feeds, names);
    return names.map((n) => fromOrt(n, outputTypes.get(n)!, result[n]!));
  };

  // Warm-up: the first run allocates arenas and finalises kernels; do it before reporting ready.
  let warmupError: string | undefined;
  try {
    await run(metadata.inputs.map(zeros), undefined);
  } catch (err) {
    warmupError = (err as Error).message;
  }
  post({ type: 'ready', metadata, warmupError });

  let running: Promise<void> = Promise.resolve();
  port.on('message', (msg: WorkerRequest) => {
    if (msg.type === 'close') {
      // Native work still in flight when a thread is terminated makes onnxruntime-node abort the whole process, so
      // the thread ends itself: after the current run, with the session released and the port closed.
      void running
        .then(() => session.release())
        .catch(() => undefined)
        .finally(() => port.close());
      return;
    }
    running = run(msg.inputs, msg.outputs).then(
      (outputs) => {
        const buffers = new Set<ArrayBuffer>();
        for (const o of outputs) if (!Array.isArray(o.data)) buffers.add(o.data.buffer as ArrayBuffer);
        post({ type: 'result', id: msg.id, outputs, completedAtUs: completedAtUs() }, [...buffers]);
      },
      (err: unknown) => post({ type: 'error', id: msg.id, message: (err as Error).message, completedAtUs: completedAtUs() }),
    );
  });
}

void main();
