// Validates a JSON OIP inference request against a model's metadata and decodes it; encodes JSON inference responses.

import { GatewayError } from '../errors/gateway-error.js';
import { DATATYPES, isDatatype, type Datatype, type TensorData, type InferenceRequest, type Parameters, type Tensor, type TensorMetadata } from './oip.js';
import { RawBody } from './binary.js';
import { oipMessageJson } from './json-wire.js';
import { decodeJsonTensor, describeJson, elementCount, formatShape } from './tensor.js';

/** Default cap on the total number of tensor elements in one request (64 Mi): a sanity bound, not a quota. */
export const DEFAULT_MAX_ELEMENTS = 64 * 1024 * 1024;

export interface ValidateOptions {
  /** Largest total element count (summed over all inputs) a request may declare. */
  maxElements?: number;
  /**
   * Data for inputs that do not carry it in JSON `data` (the binary tensor extension): called with the input's index
   * in `inputs` once its name, datatype and shape are checked; undefined → the input's JSON `data` is used.
   */
  externalData?: (index: number, input: { datatype: Datatype; shape: number[]; where: string }) => TensorData | undefined;
}

/**
 * An inference request its transport has already parsed (gRPC): the request in the JSON body's shape without tensor
 * data (id, parameters, inputs with name, datatype, shape and parameters, outputs), and each input's data decoded on
 * demand once validation has checked its datatype and shape. Validated by validateInferRequest like a JSON body.
 */
export interface ParsedInferRequest {
  readonly body: unknown;
  readonly inputData: NonNullable<ValidateOptions['externalData']>;
}

/** What validation needs to know about the model. */
export interface ModelSignature {
  name: string;
  inputs: TensorMetadata[];
  outputs: TensorMetadata[];
}

function invalid(message: string): GatewayError {
  return new GatewayError('GW_ERR_INVALID_REQUEST', message);
}

type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Own property only: a key like `constructor` must never be read off Object.prototype. */
function own(obj: JsonObject, key: string): unknown {
  return Object.hasOwn(obj, key) ? obj[key] : undefined;
}

/** A client-supplied name inside a message: quoted and cut short. */
function quote(name: string): string {
  return `'${name.length > 64 ? `${name.slice(0, 64)}…` : name}'`;
}

function nameList(items: readonly { name: string }[]): string {
  return items.map((m) => quote(m.name)).join(', ');
}

/**
 * `parameters`: an object whose values are strings, finite numbers or booleans — what both halves of the protocol can
 * carry (gRPC's InferParameter is a oneof of bool, int64, double and string). Nested values are refused here, where a
 * request is judged, so no later step (a shadow copy re-encoding the request) fails on a value nobody checked.
 */
function optionalParameters(value: unknown, field: string): Parameters | undefined {
  if (value === undefined) return undefined;
  if (!isObject(value)) throw invalid(`${field} must be an object, got ${describeJson(value)}`);
  for (const [key, v] of Object.entries(value)) {
    if (typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v))) continue;
    throw invalid(`${field}.${key.slice(0, 64)} must be a string, a number or a boolean, got ${describeJson(v)}`);
  }
  return value;
}

function readShape(raw: unknown, where: string): number[] {
  if (!Array.isArray(raw)) throw invalid(`${where}: shape must be an array of non-negative integers, got ${describeJson(raw)}`);
  const shape = new Array<number>(raw.length);
  for (let d = 0; d < raw.length; d++) {
    const v: unknown = raw[d];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
      throw invalid(`${where}: shape dimension ${d} is ${describeJson(v)}, expected a non-negative integer`);
    }
    shape[d] = v === 0 ? 0 : v; // normalise -0
  }
  return shape;
}

/** The request's shape must have the model's rank and agree on every dimension the model fixes (≠ -1). */
function checkShape(shape: number[], model: TensorMetadata, where: string): void {
  const mismatch = `${where}: shape ${formatShape(shape)} does not match the model's ${formatShape(model.shape)}`;
  if (shape.length !== model.shape.length) {
    throw invalid(`${mismatch} (rank ${shape.length}, expected rank ${model.shape.length})`);
  }
  for (let d = 0; d < shape.length; d++) {
    const want = model.shape[d] as number;
    if (want !== -1 && shape[d] !== want) throw invalid(`${mismatch} (dimension ${d} must be ${want})`);
  }
}

/**
 * Checks an OIP JSON inference request against the model and decodes its tensors. Every problem is a 400
 * (GW_ERR_INVALID_REQUEST) naming the field or input and what was expected.
 *
 * Unknown keys, at the top level and inside inputs/outputs, are ignored rather than rejected: OIP and its extensions
 * (Triton's, KServe's) add optional fields over time, and a gateway in front of a model server must not break
 * clients that send them. Every model input is required (ONNX has no optional graph inputs). Inputs come back in the
 * model's declared order, so backends see a stable order whatever order the client used; `outputs` keeps the
 * client's order. Each input's `parameters` are validated as an object but not carried on the decoded Tensor.
 */
export function validateInferRequest(body: unknown, meta: ModelSignature, options: ValidateOptions = {}): InferenceRequest {
  const maxElements = options.maxElements ?? DEFAULT_MAX_ELEMENTS;
  if (!isObject(body)) throw invalid(`request body must be a JSON object, got ${describeJson(body)}`);

  const id = own(body, 'id');
  if (id !== undefined && typeof id !== 'string') throw invalid(`'id' must be a string, got ${describeJson(id)}`);
  const parameters = optionalParameters(own(body, 'parameters'), "'parameters'");

  const rawInputs = own(body, 'inputs');
  if (!Array.isArray(rawInputs) || rawInputs.length === 0) {
    throw invalid(`'inputs' must be a non-empty array, got ${rawInputs === undefined ? 'nothing' : describeJson(rawInputs)}`);
  }

  const modelInputs = new Map(meta.inputs.map((m) => [m.name, m] as const));
  const decoded = new Map<string, Tensor>();
  let totalElements = 0;
  for (let i = 0; i < rawInputs.length; i++) {
    const input: unknown = rawInputs[i];
    if (!isObject(input)) throw invalid(`inputs[${i}] must be an object, got ${describeJson(input)}`);
    const name = own(input, 'name');
    if (typeof name !== 'string') throw invalid(`inputs[${i}].name must be a string, got ${describeJson(name)}`);
    const where = `input ${quote(name)}`;
    const model = modelInputs.get(name);
    if (model === undefined) throw invalid(`${where}: model ${quote(meta.name)} has no such input (its inputs: ${nameList(meta.inputs)})`);
    if (decoded.has(name)) throw invalid(`${where} appears more than once`);

    const datatype = own(input, 'datatype');
    if (!isDatatype(datatype)) {
      throw invalid(`${where}: unknown datatype ${describeJson(datatype)} (expected one of ${DATATYPES.join(', ')})`);
    }
    if (datatype !== model.datatype) throw invalid(`${where}: datatype ${datatype} does not match the model's ${model.datatype}`);

    const shape = readShape(own(input, 'shape'), where);
    checkShape(shape, model, where);
    // Checked before flattening/decoding so an absurd declared shape never allocates anything.
    const n = elementCount(shape);
    totalElements += n;
    if (n > maxElements) throw invalid(`${where}: shape ${formatShape(shape)} has ${n} elements, above the limit of ${maxElements}`);
    if (totalElements > maxElements) {
      throw invalid(`${where}: the request's inputs total ${totalElements} elements, above the limit of ${maxElements}`);
    }

    optionalParameters(own(input, 'parameters'), `${where}: parameters`);
    const external = options.externalData?.(i, { datatype, shape, where });
    if (external !== undefined) {
      decoded.set(name, { name, datatype, shape, data: external });
      continue;
    }
    if (!Object.hasOwn(input, 'data')) throw invalid(`${where}: data is missing`);
    decoded.set(name, { name, datatype, shape, data: decodeJsonTensor(datatype, own(input, 'data'), shape, where) });
  }

  const inputs: Tensor[] = [];
  for (const m of meta.inputs) {
    const t = decoded.get(m.name);
    if (t === undefined) throw invalid(`missing input ${quote(m.name)} (model ${quote(meta.name)} requires: ${nameList(meta.inputs)})`);
    inputs.push(t);
  }

  const request: InferenceRequest = { inputs };
  if (id !== undefined) request.id = id;
  if (parameters !== undefined) request.parameters = parameters;
  const outputs = readOutputs(own(body, 'outputs'), meta);
  if (outputs !== undefined) request.outputs = outputs;
  return request;
}

/**
 * `outputs` → requested output names. Absent → undefined, i.e. all outputs. `[]` is read the same way (no
 * preference) rather than as "return nothing", which no client can usefully mean.
 */
function readOutputs(raw: unknown, meta: ModelSignature): string[] | undefined {
  if (raw === undefined) return undefined;
  if (!Array.isArray(raw)) throw invalid(`'outputs' must be an array of {"name": ...} objects, got ${describeJson(raw)}`);
  if (raw.length === 0) return undefined;
  const known = new Set(meta.outputs.map((m) => m.name));
  const names: string[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < raw.length; i++) {
    const out: unknown = raw[i];
    if (!isObject(out)) throw invalid(`outputs[${i}] must be an object, got ${describeJson(out)}`);
    const name = own(out, 'name');
    if (typeof name !== 'string') throw invalid(`outputs[${i}].name must be a string, got ${describeJson(name)}`);
    const where = `output ${quote(name)}`;
    if (!known.has(name)) throw invalid(`${where}: model ${quote(meta.name)} has no such output (its outputs: ${nameList(meta.outputs)})`);
    if (seen.has(name)) throw invalid(`${where} is requested more than once`);
    optionalParameters(own(out, 'parameters'), `${where}: parameters`);
    seen.add(name);
    names.push(name);
  }
  return names;
}

/**
 * Decoded output tensors → the OIP JSON response body, as exact JSON text (see json-wire.ts: 64-bit integers keep
 * every digit; NaN/±Infinity are refused with 422). `id` is echoed only when the request carried one.
 */
export function encodeInferResponse(args: { modelName: string; modelVersion: string; id?: string; outputs: Tensor[] }): RawBody {
  const head = { model_name: args.modelName, model_version: args.modelVersion, ...(args.id !== undefined ? { id: args.id } : {}) };
  const entries = args.outputs.map((t) => ({ fields: { name: t.name, datatype: t.datatype, shape: [...t.shape] }, data: t }));
  return new RawBody([Buffer.from(oipMessageJson(head, 'outputs', entries))]);
}
