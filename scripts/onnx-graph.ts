// Tiny typed ONNX graph builder over onnx-proto, so tests and scripts can create real models without Python or an ONNX toolchain.
import onnxProto from 'onnx-proto';
import type { onnx as OnnxTypes } from 'onnx-proto';

const { onnx } = onnxProto;

/** ONNX TensorProto.DataType enum (FLOAT = 1, UINT8 = 2, ... BFLOAT16 = 16). */
export const ElemType = onnx.TensorProto.DataType;
export type ElemType = OnnxTypes.TensorProto.DataType;

// Several naming schemes meet in this project (ONNX, Open Inference Protocol, onnxruntime-js),
// so callers may use whichever they already hold instead of translating by hand.
const ELEM_TYPE_NAMES = {
  // ONNX TensorProto names
  FLOAT: ElemType.FLOAT,
  DOUBLE: ElemType.DOUBLE,
  FLOAT16: ElemType.FLOAT16,
  BFLOAT16: ElemType.BFLOAT16,
  INT8: ElemType.INT8,
  INT16: ElemType.INT16,
  INT32: ElemType.INT32,
  INT64: ElemType.INT64,
  UINT8: ElemType.UINT8,
  UINT16: ElemType.UINT16,
  UINT32: ElemType.UINT32,
  UINT64: ElemType.UINT64,
  BOOL: ElemType.BOOL,
  STRING: ElemType.STRING,
  // Open Inference Protocol datatypes (the rest coincide with the ONNX names)
  FP32: ElemType.FLOAT,
  FP64: ElemType.DOUBLE,
  FP16: ElemType.FLOAT16,
  BF16: ElemType.BFLOAT16,
  BYTES: ElemType.STRING,
  // onnxruntime-js Tensor.Type names
  float32: ElemType.FLOAT,
  float64: ElemType.DOUBLE,
  float16: ElemType.FLOAT16,
  int8: ElemType.INT8,
  int16: ElemType.INT16,
  int32: ElemType.INT32,
  int64: ElemType.INT64,
  uint8: ElemType.UINT8,
  uint16: ElemType.UINT16,
  uint32: ElemType.UINT32,
  uint64: ElemType.UINT64,
  bool: ElemType.BOOL,
  string: ElemType.STRING,
  // ONNX type-string spellings, e.g. "tensor(float)"
  float: ElemType.FLOAT,
  double: ElemType.DOUBLE,
} as const satisfies Record<string, ElemType>;

export type ElemTypeName = keyof typeof ELEM_TYPE_NAMES;
export type ElemTypeLike = ElemType | ElemTypeName;

/** A dimension: a fixed size, -1 for an anonymous variable dim, or a symbolic name such as 'batch'. */
export type Dim = number | string;

export interface ValueSpec {
  name: string;
  elemType: ElemTypeLike;
  shape: readonly Dim[];
}

/** Resolves any accepted spelling (case-insensitively for strings) to the ONNX enum value. */
export function elemTypeOf(t: ElemTypeLike | string): ElemType {
  if (typeof t === 'number') {
    if (ElemType[t] === undefined) throw new Error(`unknown ONNX elem type ${t}`);
    return t;
  }
  const table: Readonly<Record<string, ElemType>> = ELEM_TYPE_NAMES;
  const found = table[t] ?? table[t.toUpperCase()];
  if (found === undefined) throw new Error(`unknown elem type name '${t}'`);
  return found;
}

export type Attr =
  | { kind: 'int'; value: number }
  | { kind: 'ints'; value: readonly number[] }
  | { kind: 'float'; value: number }
  | { kind: 'floats'; value: readonly number[] }
  | { kind: 'string'; value: string };

// Explicit tags because a JS number cannot tell an INT attribute from a FLOAT one, and ORT rejects the wrong kind.
export const attr = {
  int: (value: number): Attr => ({ kind: 'int', value }),
  ints: (value: readonly number[]): Attr => ({ kind: 'ints', value }),
  float: (value: number): Attr => ({ kind: 'float', value }),
  floats: (value: readonly number[]): Attr => ({ kind: 'floats', value }),
  string: (value: string): Attr => ({ kind: 'string', value }),
};

export type InitializerData = Float32Array | Float64Array | Int32Array | BigInt64Array;

export interface ModelOptions {
  irVersion?: number;
  opsetVersion?: number;
  producerName?: string;
  producerVersion?: string;
  docString?: string;
  /** Stored as metadata_props; ORT exposes them as custom metadata. */
  metadata?: Readonly<Record<string, string>>;
}

const AttributeType = onnx.AttributeProto.AttributeType;
const utf8 = new TextEncoder();

function toAttributeProto(name: string, a: Attr): OnnxTypes.IAttributeProto {
  switch (a.kind) {
    case 'int':
      return { name, type: AttributeType.INT, i: a.value };
    case 'ints':
      return { name, type: AttributeType.INTS, ints: [...a.value] };
    case 'float':
      return { name, type: AttributeType.FLOAT, f: a.value };
    case 'floats':
      return { name, type: AttributeType.FLOATS, floats: [...a.value] };
    case 'string':
      return { name, type: AttributeType.STRING, s: utf8.encode(a.value) };
  }
}

function toValueInfo(spec: ValueSpec): OnnxTypes.IValueInfoProto {
  const dim = spec.shape.map((d): OnnxTypes.TensorShapeProto.IDimension => {
    if (typeof d === 'string') return { dimParam: d };
    if (d === -1) return {};
    if (!Number.isInteger(d) || d < 0) throw new Error(`invalid dim ${d} for '${spec.name}'`);
    return { dimValue: d };
  });
  return { name: spec.name, type: { tensorType: { elemType: elemTypeOf(spec.elemType), shape: { dim } } } };
}

// raw_data is always little-endian per the ONNX spec; DataView keeps that true on any host.
function rawLittleEndian(data: InitializerData): { dataType: ElemType; raw: Uint8Array } {
  const raw = new Uint8Array(data.length * data.BYTES_PER_ELEMENT);
  const view = new DataView(raw.buffer);
  if (data instanceof Float32Array) {
    data.forEach((v, i) => view.setFloat32(i * 4, v, true));
    return { dataType: ElemType.FLOAT, raw };
  }
  if (data instanceof Float64Array) {
    data.forEach((v, i) => view.setFloat64(i * 8, v, true));
    return { dataType: ElemType.DOUBLE, raw };
  }
  if (data instanceof Int32Array) {
    data.forEach((v, i) => view.setInt32(i * 4, v, true));
    return { dataType: ElemType.INT32, raw };
  }
  data.forEach((v, i) => view.setBigInt64(i * 8, v, true));
  return { dataType: ElemType.INT64, raw };
}

export class GraphBuilder {
  private readonly inputs: OnnxTypes.IValueInfoProto[] = [];
  private readonly outputs: OnnxTypes.IValueInfoProto[] = [];
  private readonly initializers: OnnxTypes.ITensorProto[] = [];
  private readonly nodes: OnnxTypes.INodeProto[] = [];

  constructor(private readonly name = 'graph') {}

  input(name: string, elemType: ElemTypeLike, shape: readonly Dim[]): this {
    this.inputs.push(toValueInfo({ name, elemType, shape }));
    return this;
  }

  output(name: string, elemType: ElemTypeLike, shape: readonly Dim[]): this {
    this.outputs.push(toValueInfo({ name, elemType, shape }));
    return this;
  }

  /** Adds a constant tensor; the element type follows the typed array. Returns the name for use as a node input. */
  initializer(name: string, data: InitializerData, dims: readonly number[] = [data.length]): string {
    const count = dims.reduce((a, b) => a * b, 1);
    if (count !== data.length) throw new Error(`initializer '${name}': dims [${dims.join(',')}] need ${count} values, got ${data.length}`);
    const { dataType, raw } = rawLittleEndian(data);
    this.initializers.push({ name, dataType, dims: [...dims], rawData: raw });
    return name;
  }

  node(opType: string, inputs: readonly string[], outputs: readonly string[], attributes: Readonly<Record<string, Attr>> = {}, name?: string): this {
    this.nodes.push({
      // Index-based default names keep the serialised bytes stable between runs.
      name: name ?? `${opType}_${this.nodes.length}`,
      opType,
      input: [...inputs],
      output: [...outputs],
      attribute: Object.entries(attributes).map(([k, v]) => toAttributeProto(k, v)),
    });
    return this;
  }

  toModel(opts: ModelOptions = {}): OnnxTypes.ModelProto {
    return onnx.ModelProto.create({
      irVersion: opts.irVersion ?? 8,
      opsetImport: [{ domain: '', version: opts.opsetVersion ?? 17 }],
      producerName: opts.producerName ?? 'model-gateway',
      producerVersion: opts.producerVersion ?? '',
      docString: opts.docString ?? '',
      metadataProps: Object.entries(opts.metadata ?? {}).map(([key, value]) => ({ key, value })),
      graph: {
        name: this.name,
        input: this.inputs,
        output: this.outputs,
        initializer: this.initializers,
        node: this.nodes,
      },
    });
  }

  serialize(opts: ModelOptions = {}): Uint8Array {
    return onnx.ModelProto.encode(this.toModel(opts)).finish();
  }
}

export interface IdentityInput extends ValueSpec {
  /** Defaults to `${name}_out`: ONNX forbids a graph input from also being a node output. */
  outputName?: string;
}

/** One Identity node per input, so every datatype ORT supports can be round-tripped through a real session. */
export function buildIdentityModel(inputs: readonly IdentityInput[], opts: ModelOptions = {}): Uint8Array {
  const g = new GraphBuilder('identity');
  for (const spec of inputs) {
    const out = spec.outputName ?? `${spec.name}_out`;
    g.input(spec.name, spec.elemType, spec.shape);
    g.output(out, spec.elemType, spec.shape);
    g.node('Identity', [spec.name], [out]);
  }
  return g.serialize(opts);
}

/** Every tensor type the gateway supports, as Open Inference Protocol datatype names. */
export const IDENTITY_DATATYPES = [
  'FP32',
  'FP64',
  'FP16',
  'INT8',
  'INT16',
  'INT32',
  'INT64',
  'UINT8',
  'UINT16',
  'UINT32',
  'UINT64',
  'BOOL',
  'BYTES',
] as const satisfies readonly ElemTypeName[];

/** One identity input per supported datatype: `input_<DATATYPE>` is echoed as `output_<DATATYPE>`. */
export function allDatatypeIdentityInputs(shape: readonly Dim[] = ['batch', -1]): IdentityInput[] {
  return IDENTITY_DATATYPES.map((dt) => ({ name: `input_${dt}`, outputName: `output_${dt}`, elemType: dt, shape }));
}
