// OIP tensors ↔ the gRPC messages of inference.GRPCInferenceService: typed `contents` and raw contents both ways (raw is
// little-endian, row-major; BYTES a 4-byte length + bytes; FP16 raw only), requests, responses and parameters.

import { GatewayError } from '../errors/gateway-error.js';
import { decodeBinaryData, ELEMENT_BYTES, tensorBytes } from './binary.js';
import type {
  InferInputTensorMessage,
  Int64,
  ModelInferRequestMessage,
  ModelInferResponseMessage,
  ParameterMap,
  TensorContentsMessage,
} from './grpc-protos.js';
import type { Datatype, InferenceRequest, Parameters, Tensor, TensorData } from './oip.js';
import { elementCount, formatShape, isTensorDataFor } from './tensor.js';
import type { ParsedInferRequest } from './validate.js';

/** Builds the error for a message that does not hold what it should (a client's: 400; a backend's: 502). */
export type Fail = (message: string) => GatewayError;

const invalidRequest: Fail = (message) => new GatewayError('GW_ERR_INVALID_REQUEST', message);

/** The field of InferTensorContents each datatype's elements travel in; FP16 has none (raw only). */
const CONTENTS_FIELD: Record<Datatype, keyof TensorContentsMessage | undefined> = {
  BOOL: 'bool_contents',
  INT8: 'int_contents',
  INT16: 'int_contents',
  INT32: 'int_contents',
  INT64: 'int64_contents',
  UINT8: 'uint_contents',
  UINT16: 'uint_contents',
  UINT32: 'uint_contents',
  UINT64: 'uint64_contents',
  FP16: undefined,
  FP32: 'fp32_contents',
  FP64: 'fp64_contents',
  BYTES: 'bytes_contents',
};

/** Integer ranges of the datatypes that share a wider field (int_contents is int32, uint_contents uint32). */
const NARROW_RANGE: Partial<Record<Datatype, [number, number]>> = {
  INT8: [-0x80, 0x7f],
  INT16: [-0x8000, 0x7fff],
  UINT8: [0, 0xff],
  UINT16: [0, 0xffff],
};

/** A 64-bit field, decoded as a decimal string (or given as a number), as an exact BigInt. */
function bigIntOf(value: Int64, fail: Fail, where: string): bigint {
  try {
    if (typeof value === 'number' && !Number.isSafeInteger(value)) throw new RangeError('not a safe integer');
    return BigInt(value);
  } catch {
    throw fail(`${where}: ${String(value).slice(0, 32)} is not a 64-bit integer`);
  }
}

/** A shape of 64-bit dimensions as numbers; a dimension beyond 2^53 can never fit in memory and is refused. */
export function shapeOf(dims: readonly Int64[], fail: Fail, where: string): number[] {
  return dims.map((d, i) => {
    const n = Number(d);
    if (!Number.isSafeInteger(n)) throw fail(`${where}: shape dimension ${i} is ${String(d).slice(0, 32)}, expected a non-negative integer`);
    return n;
  });
}

/** Typed `contents` → the datatype's in-memory data (see TensorData in oip.ts); every element checked. */
export function contentsToData(datatype: Datatype, contents: TensorContentsMessage, shape: readonly number[], fail: Fail, where: string): TensorData {
  const field = CONTENTS_FIELD[datatype];
  if (field === undefined) throw fail(`${where}: ${datatype} has no typed contents field; send it in raw contents`);
  for (const [other, values] of Object.entries(contents) as [keyof TensorContentsMessage, unknown[] | undefined][]) {
    if (other !== field && values !== undefined && values.length > 0)
      throw fail(`${where}: ${datatype} data belongs in contents.${field}, not contents.${other}`);
  }
  const values = (contents[field] ?? []) as unknown[];
  const n = elementCount(shape);
  if (values.length !== n) {
    throw fail(`${where}: contents.${field} has ${values.length} elements, expected ${n} (the element count of shape ${formatShape(shape)})`);
  }
  switch (datatype) {
    case 'BOOL':
      return Uint8Array.from(values as boolean[], (v) => (v ? 1 : 0));
    case 'INT8':
    case 'INT16':
    case 'INT32':
    case 'UINT8':
    case 'UINT16':
    case 'UINT32': {
      const range = NARROW_RANGE[datatype];
      if (range) {
        const [min, max] = range;
        const bad = (values as number[]).findIndex((v) => v < min || v > max);
        if (bad >= 0) throw fail(`${where}: element ${bad} is ${String(values[bad])}, expected an integer from ${min} to ${max} (${datatype})`);
      }
      const Ctor = { INT8: Int8Array, INT16: Int16Array, INT32: Int32Array, UINT8: Uint8Array, UINT16: Uint16Array, UINT32: Uint32Array }[datatype];
      return Ctor.from(values as number[]);
    }
    case 'INT64':
    case 'UINT64': {
      const out = datatype === 'INT64' ? new BigInt64Array(n) : new BigUint64Array(n);
      for (let i = 0; i < n; i++) out[i] = bigIntOf(values[i] as Int64, fail, `${where}: element ${i}`);
      return out;
    }
    case 'FP32':
      return Float32Array.from(values as number[]);
    case 'FP64':
      return Float64Array.from(values as number[]);
    case 'BYTES':
      return (values as Uint8Array[]).map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('utf8'));
    case 'FP16':
      throw fail(`${where}: FP16 has no typed contents field`); // unreachable: no field above
  }
}

/** A tensor's data as typed `contents` (64-bit integers as exact decimal strings); undefined for FP16 (raw only). */
export function dataToContents(t: Tensor): TensorContentsMessage | undefined {
  const field = CONTENTS_FIELD[t.datatype];
  if (field === undefined) return undefined;
  const data = t.data;
  if (!isTensorDataFor(t.datatype, data)) throw new GatewayError('GW_ERR_INTERNAL', `output '${t.name}': ${t.datatype} data held in the wrong representation`);
  if (Array.isArray(data)) return { bytes_contents: data.map((s) => Buffer.from(s, 'utf8')) };
  if (t.datatype === 'BOOL') return { bool_contents: Array.from(data as Uint8Array, (v) => v !== 0) };
  if (data instanceof BigInt64Array || data instanceof BigUint64Array) return { [field]: Array.from(data, (v) => v.toString()) };
  return { [field]: Array.from(data as Exclude<TensorData, string[] | BigInt64Array | BigUint64Array>) };
}

/** Raw contents → the datatype's in-memory data: a view where alignment allows (see decodeBinaryData). */
export function rawToData(datatype: Datatype, raw: Uint8Array, shape: readonly number[], fail: Fail, where: string, field: string): TensorData {
  const bytes = Buffer.isBuffer(raw) ? raw : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  if (datatype !== 'BYTES') {
    const n = elementCount(shape);
    const expected = n * ELEMENT_BYTES[datatype];
    if (bytes.length !== expected) {
      throw fail(
        `${where}: ${field} has ${bytes.length} bytes, expected ${expected} (${n} elements of shape ${formatShape(shape)} × ${ELEMENT_BYTES[datatype]} bytes for ${datatype})`,
      );
    }
  }
  try {
    return decodeBinaryData(datatype, shape, bytes, where);
  } catch (err) {
    // A backend's malformed BYTES or BOOL: the same words, with the caller's status (502 rather than 400).
    throw err instanceof GatewayError ? fail(err.message) : err;
  }
}

/** A tensor's data as raw contents: a Buffer view of its typed array (no copy), or length-prefixed BYTES. */
export function dataToRaw(t: Tensor): Buffer {
  const bytes = tensorBytes(t);
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

// ---------------------------------------------------------------------------------------------------------------
// Parameters. Values keep their type; a 64-bit parameter is a number when exact, else its decimal string.

export function parametersFromMessage(map: ParameterMap | undefined): Parameters | undefined {
  if (map === undefined) return undefined;
  const keys = Object.keys(map);
  if (keys.length === 0) return undefined;
  const out: Parameters = {};
  for (const key of keys) {
    const p = map[key]!;
    switch (p.parameter_choice) {
      case 'bool_param':
        out[key] = p.bool_param === true;
        break;
      case 'string_param':
        out[key] = p.string_param ?? '';
        break;
      case 'double_param':
        out[key] = p.double_param ?? 0;
        break;
      case 'int64_param':
      case 'uint64_param': {
        const raw = p[p.parameter_choice] ?? '0';
        const n = Number(raw);
        out[key] = Number.isSafeInteger(n) ? n : String(raw);
        break;
      }
      default:
        out[key] = null; // no member set: the name alone
    }
  }
  return out;
}

/** Plain parameters → InferParameter messages; values of other types (objects, arrays) have no proto form and are left out. */
export function parametersToMessage(parameters: Parameters | undefined): ParameterMap {
  const out: ParameterMap = {};
  for (const [key, value] of Object.entries(parameters ?? {})) {
    if (typeof value === 'boolean') out[key] = { bool_param: value };
    else if (typeof value === 'string') out[key] = { string_param: value };
    else if (typeof value === 'bigint') out[key] = value < 0n ? { int64_param: value.toString() } : { uint64_param: value.toString() };
    else if (typeof value === 'number') out[key] = Number.isSafeInteger(value) ? { int64_param: value } : { double_param: value };
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Requests.

/**
 * A decoded ModelInferRequest as the validate stage reads a JSON body: names, datatypes, shapes and requested outputs
 * are checked there against the model's metadata, exactly as for REST; each input's data is decoded on demand from
 * its raw contents or typed contents. Structural rules of the gRPC form are checked here: raw and typed contents are
 * never mixed, and raw contents come one per input.
 */
export function parseInferRequest(message: ModelInferRequestMessage): ParsedInferRequest {
  const raw = message.raw_input_contents ?? [];
  const inputs = message.inputs ?? [];
  const hasRaw = raw.length > 0;
  if (hasRaw) {
    const typed = inputs.findIndex((i) => i.contents !== null && i.contents !== undefined && hasAnyContents(i.contents));
    if (typed >= 0) {
      throw invalidRequest(`input '${clip(inputs[typed]!.name)}' has contents while raw_input_contents is used; send every input one way or the other`);
    }
    if (raw.length !== inputs.length) {
      throw invalidRequest(`raw_input_contents has ${raw.length} entries for ${inputs.length} inputs; it needs one per input, in the order of inputs`);
    }
  }
  const parameters = parametersFromMessage(message.parameters);
  const outputs = (message.outputs ?? []).map((o) => {
    const p = parametersFromMessage(o.parameters);
    return p ? { name: o.name, parameters: p } : { name: o.name };
  });
  const body = {
    ...(message.id ? { id: message.id } : {}),
    ...(parameters ? { parameters } : {}),
    inputs: inputs.map((input, i) => inputBody(input, i)),
    ...(outputs.length > 0 ? { outputs } : {}),
  };
  return {
    body,
    inputData: (index, { datatype, shape, where }) => {
      if (hasRaw) return rawToData(datatype, raw[index]!, shape, invalidRequest, where, `raw_input_contents[${index}]`);
      const contents = inputs[index]?.contents;
      if (contents === null || contents === undefined || !hasAnyContents(contents)) {
        // An empty tensor has no elements to send: its (empty) contents may be omitted altogether.
        if (elementCount(shape) === 0) return contentsToData(datatype, {}, shape, invalidRequest, where);
        throw invalidRequest(`${where}: no data; set its contents or send raw_input_contents`);
      }
      return contentsToData(datatype, contents, shape, invalidRequest, where);
    },
  };
}

function hasAnyContents(c: TensorContentsMessage): boolean {
  for (const values of Object.values(c) as (unknown[] | undefined)[]) if (values !== undefined && values.length > 0) return true;
  return false;
}

const clip = (name: string) => (name.length > 64 ? `${name.slice(0, 64)}…` : name);

/** One input as the JSON body's `inputs[i]` (no data): the shape as numbers for validation's own checks. */
function inputBody(input: InferInputTensorMessage, i: number): Record<string, unknown> {
  const where = `input '${clip(input.name)}'`;
  const parameters = parametersFromMessage(input.parameters);
  return {
    name: input.name,
    datatype: input.datatype,
    shape: shapeOf(input.shape ?? [], invalidRequest, where || `inputs[${i}]`),
    ...(parameters ? { parameters } : {}),
  };
}

/** A validated request as a ModelInferRequest for a remote: raw contents (exact and cheapest), the deadline left to the call. */
export function inferRequestMessage(request: InferenceRequest, model: string, version: string | undefined): ModelInferRequestMessage {
  return {
    model_name: model,
    model_version: version ?? '',
    id: request.id ?? '',
    parameters: parametersToMessage(request.parameters),
    inputs: request.inputs.map((t) => ({ name: t.name, datatype: t.datatype, shape: t.shape, parameters: {} })),
    outputs: (request.outputs ?? []).map((name) => ({ name, parameters: {} })),
    raw_input_contents: request.inputs.map(dataToRaw),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Responses.

export interface InferAnswer {
  model: string;
  version: string;
  id: string | undefined;
  outputs: readonly Tensor[];
  /** Raw contents (as a request that sent raw asks for), else typed contents; FP16 outputs force raw for all. */
  raw: boolean;
}

/** The gateway's answer as a ModelInferResponse. */
export function inferResponseMessage(answer: InferAnswer): ModelInferResponseMessage {
  const raw = answer.raw || answer.outputs.some((t) => CONTENTS_FIELD[t.datatype] === undefined);
  const outputs = answer.outputs.map((t) => ({
    name: t.name,
    datatype: t.datatype,
    shape: t.shape,
    parameters: {},
    contents: raw ? null : (dataToContents(t) ?? null),
  }));
  return {
    model_name: answer.model,
    model_version: answer.version,
    id: answer.id ?? '',
    parameters: {},
    outputs,
    raw_output_contents: raw ? answer.outputs.map(dataToRaw) : [],
  };
}

/** A remote's ModelInferResponse → tensors, raw or typed; anything malformed is the backend's fault (`fail`). */
export function outputsFromResponse(message: ModelInferResponseMessage, fail: Fail): Tensor[] {
  const raw = message.raw_output_contents ?? [];
  const outputs = message.outputs ?? [];
  if (raw.length > 0 && raw.length !== outputs.length) throw fail(`raw_output_contents has ${raw.length} entries for ${outputs.length} outputs`);
  return outputs.map((o, i) => {
    const where = `output '${clip(o.name)}'`;
    const datatype = o.datatype as Datatype;
    if (!(datatype in CONTENTS_FIELD)) throw fail(`${where}: unknown datatype ${JSON.stringify(o.datatype.slice(0, 16))}`);
    const shape = shapeOf(o.shape ?? [], fail, where);
    if (shape.some((d) => d < 0)) throw fail(`${where}: shape ${formatShape(shape)} has a negative dimension`);
    const data =
      raw.length > 0
        ? rawToData(datatype, raw[i]!, shape, fail, where, `raw_output_contents[${i}]`)
        : contentsToData(datatype, o.contents ?? {}, shape, fail, where);
    return { name: o.name, datatype, shape, data };
  });
}
