// The gRPC protos of the data plane (protos/inference, protos/grpc/health), loaded once with @grpc/proto-loader:
// the service definitions a server adds and a client is made from, and the message shapes they decode to.

import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ServiceDefinition } from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

export const INFERENCE_PROTO = 'inference/open_inference_grpc.proto';
export const HEALTH_PROTO = 'grpc/health/v1/health.proto';
export const INFERENCE_SERVICE = 'inference.GRPCInferenceService';
export const HEALTH_SERVICE = 'grpc.health.v1.Health';

/**
 * Proto field names as the specification spells them (snake_case); 64-bit integers as decimal strings, so INT64 and
 * UINT64 values, shapes and parameters stay exact (never a JS number above 2^53); enums as names; absent fields with
 * their defaults (empty lists, empty strings, null messages), so a decoder never has to tell "absent" from "empty".
 */
export const GRPC_LOADER_OPTIONS: protoLoader.Options = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

/** protos/ from src/ (ts) and from dist/src/ (compiled); both protos ship in the package. */
export function grpcProtoDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, '..', '..', 'protos'), join(here, '..', '..', '..', 'protos')];
  const found = candidates.find((dir) => existsSync(join(dir, INFERENCE_PROTO)));
  if (found === undefined) throw new Error(`the gRPC protos are missing (looked for ${INFERENCE_PROTO} in ${candidates.join(', ')})`);
  return found;
}

export interface GrpcServices {
  /** inference.GRPCInferenceService, with proto-loader's (de)serializers. */
  readonly inference: ServiceDefinition;
  /** grpc.health.v1.Health. */
  readonly health: ServiceDefinition;
}

let loaded: GrpcServices | undefined;

/** Parsed once per process: servers and every backend channel share the definitions. */
export function grpcServices(): GrpcServices {
  if (loaded) return loaded;
  const definition = protoLoader.loadSync([INFERENCE_PROTO, HEALTH_PROTO], { ...GRPC_LOADER_OPTIONS, includeDirs: [grpcProtoDir()] });
  const service = (name: string): ServiceDefinition => {
    const found = definition[name];
    if (found === undefined || 'format' in found) throw new Error(`${name} is not a service of the loaded protos`);
    return found as ServiceDefinition;
  };
  loaded = { inference: service(INFERENCE_SERVICE), health: service(HEALTH_SERVICE) };
  return loaded;
}

// ---------------------------------------------------------------------------------------------------------------
// The messages as proto-loader decodes them with GRPC_LOADER_OPTIONS (and accepts them to encode: 64-bit fields as
// decimal strings or numbers, bytes as Buffers).

/** 64-bit integers: decimal strings when decoded; numbers are accepted when encoding. */
export type Int64 = string | number;

export interface InferParameterMessage {
  bool_param?: boolean;
  int64_param?: Int64;
  string_param?: string;
  double_param?: number;
  uint64_param?: Int64;
  /** Which member of the oneof is set (decoded messages only). */
  parameter_choice?: 'bool_param' | 'int64_param' | 'string_param' | 'double_param' | 'uint64_param';
}

export type ParameterMap = Record<string, InferParameterMessage>;

export interface TensorContentsMessage {
  bool_contents?: boolean[];
  int_contents?: number[];
  int64_contents?: Int64[];
  uint_contents?: number[];
  uint64_contents?: Int64[];
  fp32_contents?: number[];
  fp64_contents?: number[];
  bytes_contents?: Uint8Array[];
}

export interface InferInputTensorMessage {
  name: string;
  datatype: string;
  shape: Int64[];
  parameters?: ParameterMap;
  contents?: TensorContentsMessage | null;
}

export interface ModelInferRequestMessage {
  model_name: string;
  model_version?: string;
  id?: string;
  parameters?: ParameterMap;
  inputs: InferInputTensorMessage[];
  outputs?: { name: string; parameters?: ParameterMap }[];
  raw_input_contents?: Uint8Array[];
}

export interface InferOutputTensorMessage {
  name: string;
  datatype: string;
  shape: Int64[];
  parameters?: ParameterMap;
  contents?: TensorContentsMessage | null;
}

export interface ModelInferResponseMessage {
  model_name: string;
  model_version: string;
  id: string;
  parameters?: ParameterMap;
  outputs: InferOutputTensorMessage[];
  raw_output_contents?: Uint8Array[];
}

export interface TensorMetadataMessage {
  name: string;
  datatype: string;
  shape: Int64[];
}

export interface ModelMetadataResponseMessage {
  name: string;
  versions: string[];
  platform: string;
  inputs: TensorMetadataMessage[];
  outputs: TensorMetadataMessage[];
  properties?: Record<string, string>;
}

export interface ModelRequestMessage {
  name: string;
  version: string;
}

export interface ServerMetadataResponseMessage {
  name: string;
  version: string;
  extensions: string[];
}

export type ServingStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';
