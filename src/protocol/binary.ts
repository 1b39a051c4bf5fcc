// Triton's binary tensor data extension: splits a binary request body, decodes raw tensors, encodes binary outputs.

import { GatewayError } from '../errors/gateway-error.js';
import type { Datatype, InferenceRequest, Parameters, Tensor, TensorData, TensorMetadata } from './oip.js';
import { oipMessageJson } from './json-wire.js';
import { elementCount, formatShape, isTensorDataFor } from './tensor.js';

/** The header naming how many leading body bytes are the JSON part; the rest are raw tensors. */
export const BINARY_HEADER = 'inference-header-content-length';

function invalid(message: string): GatewayError {
  return new GatewayError('GW_ERR_INVALID_REQUEST', message);
}

/** Bytes per element; BYTES has none (each element is a 4-byte length and its bytes). */
export const ELEMENT_BYTES: Record<Exclude<Datatype, 'BYTES'>, number> = {
  BOOL: 1,
  UINT8: 1,
  INT8: 1,
  UINT16: 2,
  INT16: 2,
  FP16: 2,
  UINT32: 4,
  INT32: 4,
  FP32: 4,
  UINT64: 8,
  INT64: 8,
  FP64: 8,
};

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * A reply body that is already bytes (binary tensor responses): transports write the chunks in order, uncopied, with
 * the reply's own `content-type` (default application/octet-stream) instead of JSON-encoding the body.
 */
export class RawBody {
  readonly byteLength: number;
  constructor(readonly chunks: readonly Uint8Array[]) {
    let n = 0;
    for (const c of chunks) n += c.byteLength;
    this.byteLength = n;
  }
}

/** A binary request body split at the header's length. */
export interface SplitBody {
  /** The JSON part, parsed. */
  json: unknown;
  /** Everything after the JSON part: the raw tensors, a view of the body (no copy). */
  binary: Buffer;
}

/**
 * Reads `Inference-Header-Content-Length` (undefined when absent: a plain JSON body). Only a plain decimal integer is
 * accepted: `Number()` would also take `0x10`, `1e3` or ` 12 `, none of which a client means.
 */
export function binaryHeaderLength(value: string | string[] | undefined): number | undefined {
  if (value === undefined) return undefined;
  const text = Array.isArray(value) ? value.join(',') : value;
  if (!/^\d{1,15}$/.test(text)) throw invalid(`${BINARY_HEADER} must be a non-negative integer byte count, got ${JSON.stringify(text.slice(0, 32))}`);
  return Number(text);
}

/** Splits a body at `jsonLength` bytes and parses the JSON part (400 when the length is beyond the body or the JSON is bad). */
export function splitBinaryBody(body: Buffer, jsonLength: number): SplitBody {
  if (jsonLength > body.length) throw invalid(`${BINARY_HEADER} is ${jsonLength}, but the body has only ${body.length} bytes`);
  if (jsonLength === 0) throw new GatewayError('GW_ERR_BAD_JSON', `${BINARY_HEADER} is 0; the JSON part of the body is empty`);
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8', 0, jsonLength));
  } catch (err) {
    throw new GatewayError('GW_ERR_BAD_JSON', `the JSON part of the body (first ${jsonLength} bytes) is not valid JSON: ${(err as Error).message}`);
  }
  return { json, binary: body.subarray(jsonLength) };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `obj.parameters[key]`, own properties only. */
export function parameterOf(obj: Record<string, unknown>, key: string): unknown {
  const p = Object.hasOwn(obj, 'parameters') ? obj.parameters : undefined;
  return isObject(p) && Object.hasOwn(p, key) ? p[key] : undefined;
}

/**
 * Assigns each input that carries `parameters.binary_data_size` its slice of the binary part, in the order the inputs
 * are listed. The slices must cover the binary part exactly: missing or trailing bytes are a 400. Inputs are keyed by
 * their index in `inputs`; structural problems of the JSON itself are left to request validation.
 */
export function binaryInputSlices(json: unknown, binary: Buffer): Map<number, Buffer> {
  const slices = new Map<number, Buffer>();
  const inputs = isObject(json) && Object.hasOwn(json, 'inputs') ? json.inputs : undefined;
  let offset = 0;
  if (Array.isArray(inputs)) {
    for (let i = 0; i < inputs.length; i++) {
      const input: unknown = inputs[i];
      if (!isObject(input)) continue;
      const size = parameterOf(input, 'binary_data_size');
      if (size === undefined) continue;
      const name = typeof input.name === 'string' ? `input '${input.name.slice(0, 64)}'` : `inputs[${i}]`;
      if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
        throw invalid(`${name}: parameters.binary_data_size must be a non-negative integer, got ${JSON.stringify(size)?.slice(0, 32)}`);
      }
      if (Object.hasOwn(input, 'data')) throw invalid(`${name}: has both data and parameters.binary_data_size; send one`);
      if (offset + size > binary.length) {
        throw invalid(`${name}: parameters.binary_data_size is ${size}, but only ${binary.length - offset} bytes of binary data are left after the JSON part`);
      }
      slices.set(i, binary.subarray(offset, offset + size));
      offset += size;
    }
  }
  if (offset !== binary.length) {
    throw invalid(`the body has ${binary.length - offset} bytes after the JSON part that no input's parameters.binary_data_size accounts for`);
  }
  return slices;
}

type NumericCtor =
  | Uint8ArrayConstructor
  | Int8ArrayConstructor
  | Uint16ArrayConstructor
  | Int16ArrayConstructor
  | Uint32ArrayConstructor
  | Int32ArrayConstructor
  | Float32ArrayConstructor
  | Float64ArrayConstructor
  | BigInt64ArrayConstructor
  | BigUint64ArrayConstructor;

const CTOR: Record<Exclude<Datatype, 'BYTES'>, NumericCtor> = {
  BOOL: Uint8Array,
  UINT8: Uint8Array,
  INT8: Int8Array,
  UINT16: Uint16Array,
  INT16: Int16Array,
  FP16: Uint16Array,
  UINT32: Uint32Array,
  INT32: Int32Array,
  FP32: Float32Array,
  UINT64: BigUint64Array,
  INT64: BigInt64Array,
  FP64: Float64Array,
};

/**
 * Raw little-endian bytes → a typed array. A view of `bytes` when its offset is aligned for the element size (no
 * copy); otherwise, or on a big-endian host, a copy — typed arrays cannot be unaligned or foreign-endian.
 */
function numericView(datatype: Exclude<Datatype, 'BYTES'>, bytes: Buffer, n: number): TensorData {
  const Ctor = CTOR[datatype];
  const width = ELEMENT_BYTES[datatype];
  if (width === 1 || (LITTLE_ENDIAN && bytes.byteOffset % width === 0)) return new Ctor(bytes.buffer as ArrayBuffer, bytes.byteOffset, n);
  const copy = new Uint8Array(bytes.byteLength);
  if (LITTLE_ENDIAN) copy.set(bytes);
  else for (let i = 0; i < n; i++) for (let b = 0; b < width; b++) copy[i * width + b] = bytes[i * width + width - 1 - b] as number;
  return new Ctor(copy.buffer, 0, n);
}

/** BYTES elements: each a 4-byte little-endian length followed by that many bytes (UTF-8 text). */
function decodeBytesElements(bytes: Buffer, n: number, where: string): string[] {
  const out = new Array<string>(n);
  let at = 0;
  for (let i = 0; i < n; i++) {
    if (at + 4 > bytes.length) throw invalid(`${where}: binary data ends inside the length of element ${i} (expected ${n} BYTES elements)`);
    const len = bytes.readUInt32LE(at);
    at += 4;
    if (at + len > bytes.length) throw invalid(`${where}: BYTES element ${i} declares ${len} bytes, but only ${bytes.length - at} remain`);
    out[i] = bytes.toString('utf8', at, at + len);
    at += len;
  }
  if (at !== bytes.length)
    throw invalid(`${where}: ${bytes.length - at} bytes of binary data remain after the ${n} BYTES elements of shape ${formatShape([n])}`);
  return out;
}

/**
 * One input's raw bytes → its in-memory tensor data (see TensorData in oip.ts). The size must be exactly the shape's
 * element count × the datatype's width. BOOL bytes must be 0 or 1; floats are taken as sent (NaN and ±Infinity
 * included: unlike JSON, the binary form represents them exactly).
 */
export function decodeBinaryData(datatype: Datatype, shape: readonly number[], bytes: Buffer, where: string): TensorData {
  const n = elementCount(shape);
  if (datatype === 'BYTES') return decodeBytesElements(bytes, n, where);
  const expected = n * ELEMENT_BYTES[datatype];
  if (bytes.length !== expected) {
    throw invalid(
      `${where}: parameters.binary_data_size is ${bytes.length}, expected ${expected} (${n} elements of shape ${formatShape(shape)} × ${ELEMENT_BYTES[datatype]} bytes for ${datatype})`,
    );
  }
  const data = numericView(datatype, bytes, n);
  if (datatype === 'BOOL') {
    const b = data as Uint8Array;
    for (let i = 0; i < n; i++) if ((b[i] as number) > 1) throw invalid(`${where}: BOOL element ${i} is byte ${b[i]}, expected 0 or 1`);
  }
  return data;
}

/**
 * Triton's raw binary request (`Inference-Header-Content-Length: 0`): the whole body is the data of the model's only
 * input, its shape deduced from the byte count, every output answered as binary — as the equivalent JSON header and
 * binary part, so the request is then validated like any other. The input may have at most one variable dimension
 * besides a variable first (batch) dimension, which is then 1 (Triton: "treated as a batch-1 request"); a BYTES
 * input must have shape [1] (or [-1]) and the body is its one element. Anything else is a 400 saying why.
 */
export function rawBinaryRequest(inputs: readonly TensorMetadata[], body: Buffer): SplitBody {
  const raw = `a raw binary request (${BINARY_HEADER}: 0)`;
  if (inputs.length !== 1) throw invalid(`${raw} needs a model with exactly one input; this one has ${inputs.length}: send a JSON header`);
  const input = inputs[0]!;
  let shape: number[];
  let binary = body;
  if (input.datatype === 'BYTES') {
    if (input.shape.length !== 1 || (input.shape[0] !== 1 && input.shape[0] !== -1))
      throw invalid(`${raw} with a BYTES input needs its shape to be [1]; input '${input.name}' has ${formatShape(input.shape)}`);
    shape = [1];
    // The body is the one element: framed as the binary BYTES encoding (4-byte little-endian length, then the bytes).
    const length = Buffer.alloc(4);
    length.writeUInt32LE(body.length);
    binary = Buffer.concat([length, body]);
  } else {
    shape = [...input.shape];
    const variable = shape.flatMap((d, i) => (d < 0 ? [i] : []));
    // A variable first dimension next to another variable one is the batch: a raw request is one item.
    if (variable.length === 2 && variable[0] === 0) {
      shape[0] = 1;
      variable.shift();
    }
    if (variable.length > 1)
      throw invalid(
        `${raw} cannot deduce the shape ${formatShape(input.shape)} of input '${input.name}' (more than one variable dimension): send a JSON header`,
      );
    const width = ELEMENT_BYTES[input.datatype];
    const fixed = shape.reduce((n, d) => (d < 0 ? n : n * d), 1) * width;
    if (variable.length === 1) {
      if (fixed === 0 || body.length % fixed !== 0)
        throw invalid(`${raw}: ${body.length} bytes is not a whole number of ${formatShape(input.shape)} ${input.datatype} elements for input '${input.name}'`);
      shape[variable[0]!] = body.length / fixed;
    } else if (body.length !== fixed) {
      throw invalid(`${raw}: input '${input.name}' of shape ${formatShape(input.shape)} ${input.datatype} needs ${fixed} bytes, the body has ${body.length}`);
    }
  }
  const json = {
    inputs: [{ name: input.name, datatype: input.datatype, shape, parameters: { binary_data_size: binary.length } }],
    parameters: { binary_data_output: true },
  };
  return { json, binary };
}

/** Which outputs the caller wants in binary: all (request-level `binary_data_output`), some by name, or none. */
export type BinaryOutputs = InferenceRequest['binaryOutputs'];

/** Reads `parameters.binary_data_output` and `outputs[i].parameters.binary_data` from a request body. */
export function binaryOutputsOf(json: unknown): BinaryOutputs {
  if (!isObject(json)) return undefined;
  const all = parameterOf(json, 'binary_data_output');
  const named = new Set<string>();
  const outputs = Object.hasOwn(json, 'outputs') ? json.outputs : undefined;
  if (Array.isArray(outputs)) {
    for (const o of outputs as unknown[]) {
      if (!isObject(o) || typeof o.name !== 'string') continue;
      const flag = parameterOf(o, 'binary_data');
      // An explicit per-output `false` overrides the request-level default, as in Triton.
      if (flag === true || (all === true && flag !== false)) named.add(o.name);
    }
    if (all === true && outputs.length > 0) return named.size > 0 ? named : undefined;
  }
  if (all === true) return 'all';
  return named.size > 0 ? named : undefined;
}

/** Raw bytes of one tensor: a view of its typed array (no copy), or length-prefixed UTF-8 for BYTES. */
export function tensorBytes(t: Tensor): Uint8Array {
  const data = t.data;
  if (!isTensorDataFor(t.datatype, data)) {
    throw new GatewayError('GW_ERR_INTERNAL', `output '${t.name}': ${t.datatype} data held in the wrong representation`);
  }
  if (Array.isArray(data)) {
    const parts = data.map((s) => Buffer.from(s, 'utf8'));
    const out = Buffer.allocUnsafe(parts.reduce((n, p) => n + 4 + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.writeUInt32LE(p.length, at);
      p.copy(out, at + 4);
      at += 4 + p.length;
    }
    return out;
  }
  if (LITTLE_ENDIAN) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const width = data.BYTES_PER_ELEMENT;
  const src = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const out = new Uint8Array(src.length);
  for (let i = 0; i < src.length; i += width) for (let b = 0; b < width; b++) out[i + b] = src[i + width - 1 - b] as number;
  return out;
}

/** A JSON inference response body whose binary outputs carry `parameters.binary_data_size` instead of `data`. */
export interface BinaryEncoded {
  /** Chunks to write in order: the JSON part, then each binary output's bytes. */
  chunks: Uint8Array[];
  /** Byte length of the JSON part: the `Inference-Header-Content-Length` value. */
  jsonLength: number;
}

/**
 * Encodes a response whose `outputs` entries are already JSON except for those named in `binary`, which `tensors`
 * supplies. Tensor bytes are not copied: the chunks are views written one after another.
 */
export function encodeBinaryResponse(
  head: { model_name: string; model_version?: string; id?: string; parameters?: Parameters },
  tensors: readonly Tensor[],
  binary: Exclude<BinaryOutputs, undefined>,
): BinaryEncoded {
  const chunks: Uint8Array[] = [];
  const outputs = tensors.map((t) => {
    const fields = { name: t.name, datatype: t.datatype, shape: [...t.shape] };
    // Outputs left in the JSON part are written exactly, as in a JSON answer (json-wire.ts).
    if (binary !== 'all' && !binary.has(t.name)) return { fields, data: t };
    const bytes = tensorBytes(t);
    chunks.push(bytes);
    return { fields: { ...fields, parameters: { binary_data_size: bytes.byteLength } } };
  });
  const json = Buffer.from(oipMessageJson(head, 'outputs', outputs));
  return { chunks: [json, ...chunks], jsonLength: json.length };
}
