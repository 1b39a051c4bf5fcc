// Open Inference Protocol (KServe v2) types: the JSON wire shapes and the decoded tensors backends work with.

/** The OIP tensor datatypes. */
export const DATATYPES = ['BOOL', 'UINT8', 'UINT16', 'UINT32', 'UINT64', 'INT8', 'INT16', 'INT32', 'INT64', 'FP16', 'FP32', 'FP64', 'BYTES'] as const;
export type Datatype = (typeof DATATYPES)[number];

export function isDatatype(value: unknown): value is Datatype {
  return typeof value === 'string' && (DATATYPES as readonly string[]).includes(value);
}

/** The model-aware operations of the protocol (health and server metadata are not about one model). */
export type Operation = 'infer' | 'model-metadata' | 'model-ready';

/** One input or output as a model declares it. `-1` marks a variable dimension. */
export interface TensorMetadata {
  name: string;
  datatype: Datatype;
  shape: number[];
}

/** What a backend knows about the model it serves (the OIP model-metadata body, minus name/versions). */
export interface BackendMetadata {
  platform: string;
  inputs: TensorMetadata[];
  outputs: TensorMetadata[];
}

/** `GET /v2/models/{m}[/versions/{v}]` response body. */
export interface ModelMetadataBody extends BackendMetadata {
  name: string;
  versions: string[];
}

export type Parameters = Record<string, unknown>;

/** One input of an inference request as it arrives on the wire (not yet validated). */
export interface RequestInputBody {
  name: string;
  shape: number[];
  datatype: string;
  parameters?: Parameters;
  data: unknown;
}

/** `POST .../infer` request body as it arrives on the wire (not yet validated). */
export interface InferRequestBody {
  id?: string;
  parameters?: Parameters;
  inputs: RequestInputBody[];
  outputs?: { name: string; parameters?: Parameters }[];
}

/** One output of an inference response on the wire. */
export interface ResponseOutputBody {
  name: string;
  shape: number[];
  datatype: Datatype;
  parameters?: Parameters;
  data: (number | boolean | string)[];
}

/** `POST .../infer` response body. */
export interface InferResponseBody {
  model_name: string;
  model_version?: string;
  id?: string;
  parameters?: Parameters;
  outputs: ResponseOutputBody[];
}

/**
 * Tensor contents, row-major, in the representation each datatype has in memory:
 * BOOL → Uint8Array (0/1), FP16 → Uint16Array (IEEE 754 half bits), INT64/UINT64 → BigInt64Array/BigUint64Array,
 * BYTES → string[] (UTF-8 text; ONNX string tensors).
 */
export type TensorData =
  Uint8Array | Uint16Array | Uint32Array | BigUint64Array | Int8Array | Int16Array | Int32Array | BigInt64Array | Float32Array | Float64Array | string[];

/** A decoded tensor: what backends consume and produce. */
export interface Tensor {
  name: string;
  datatype: Datatype;
  shape: number[];
  data: TensorData;
}

/** A validated inference request, decoded against the model's metadata. */
export interface InferenceRequest {
  id?: string;
  parameters?: Parameters;
  inputs: Tensor[];
  /** Output names the caller asked for; undefined = all outputs. */
  outputs?: string[];
  /** Outputs to answer in binary (binary tensor extension): all of them, these names, or none (undefined). */
  binaryOutputs?: 'all' | ReadonlySet<string>;
  /** When the gateway cuts the call, epoch ms (set for the primary call): a remote that carries deadlines (gRPC) gets it. */
  deadline?: number;
  /**
   * Headers the gateway vouches for (request id, verified identity, a forwarded token), set for the primary call to a
   * remote backend, which sends them last (over its configured ones), as it does for a forwarded body.
   */
  gatewayHeaders?: Readonly<Record<string, string>>;
}

/** What a backend returns: the outputs that were asked for, in the order asked (or model order). */
export interface InferenceResult {
  outputs: Tensor[];
}
