// Test helper: an OIP gRPC client built here from the vendored protos with @grpc/proto-loader — none of the gateway's
// gRPC code — so a test sees what any client generated from the upstream proto sees.

import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ROOT } from './gateway.js';

const definition = protoLoader.loadSync(['inference/open_inference_grpc.proto', 'grpc/health/v1/health.proto'], {
  includeDirs: [path.join(ROOT, 'protos')],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const loaded = grpc.loadPackageDefinition(definition) as unknown as {
  inference: { GRPCInferenceService: grpc.ServiceClientConstructor };
  grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
};

export type Message = Record<string, unknown>;

/** What a unary call brought back: the response or the status, with both metadata sets. */
export interface CallResult {
  /** Present when the call succeeded. */
  response?: Message;
  /** Set when it failed (grpc.status). */
  code: number;
  details: string;
  /** Response headers (initial metadata). */
  headers: grpc.Metadata;
  /** Trailing metadata (with the status). */
  trailers: grpc.Metadata;
}

export interface CallOptions {
  metadata?: Record<string, string | string[]>;
  /** ms from now. */
  deadlineMs?: number;
}

export interface OipGrpcClient {
  call(method: string, request: Message, options?: CallOptions): Promise<CallResult>;
  /** grpc.health.v1.Health/Check and List. */
  health(method: 'Check' | 'List', request: Message): Promise<CallResult>;
  /** grpc.health.v1.Health/Watch: the statuses received until `stop`. */
  watch(service: string): { statuses: string[]; ended: Promise<{ code: number }>; stop(): void };
  close(): void;
}

function metadataOf(entries: Record<string, string | string[]> = {}): grpc.Metadata {
  const md = new grpc.Metadata();
  for (const [key, value] of Object.entries(entries)) for (const v of Array.isArray(value) ? value : [value]) md.add(key, v);
  return md;
}

function unary(client: grpc.Client, method: string, request: Message, options: CallOptions = {}): Promise<CallResult> {
  return new Promise((resolve) => {
    let headers = new grpc.Metadata();
    const callOptions: grpc.CallOptions = options.deadlineMs === undefined ? {} : { deadline: Date.now() + options.deadlineMs };
    const fn = (client as unknown as Record<string, (...args: unknown[]) => grpc.ClientUnaryCall>)[method]!.bind(client);
    const call = fn(request, metadataOf(options.metadata), callOptions, (err: grpc.ServiceError | null, response?: Message) => {
      call.on('status', (status: grpc.StatusObject) => {
        resolve({
          ...(err ? {} : { response: response! }),
          code: err ? err.code : grpc.status.OK,
          details: err ? err.details : '',
          headers,
          trailers: status.metadata,
        });
      });
    });
    call.on('metadata', (md: grpc.Metadata) => (headers = md));
  });
}

/** A client of one gateway's gRPC port (`host:port`). */
export function oipGrpcClient(address: string): OipGrpcClient {
  const inference = new loaded.inference.GRPCInferenceService(address, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': -1 });
  const health = new loaded.grpc.health.v1.Health(address, grpc.credentials.createInsecure());
  return {
    call: (method, request, options) => unary(inference, method, request, options),
    health: (method, request) => unary(health, method, request),
    watch(service) {
      const statuses: string[] = [];
      const stream = (health as unknown as { Watch(r: Message): grpc.ClientReadableStream<{ status: string }> }).Watch({ service });
      stream.on('data', (m: { status: string }) => statuses.push(m.status));
      const ended = new Promise<{ code: number }>((resolve) => stream.on('status', (s: grpc.StatusObject) => resolve({ code: s.code })));
      stream.on('error', () => undefined);
      return { statuses, ended, stop: () => stream.cancel() };
    },
    close() {
      inference.close();
      health.close();
    },
  };
}

/** The gRPC address a gateway or serve-model process printed in its banner. */
export function grpcAddressFrom(stderr: string): string {
  const m = /gRPC \([^)]*\) on (\S+)/.exec(stderr);
  if (!m) throw new Error(`no gRPC address in the banner:\n${stderr}`);
  return m[1]!;
}

/** A FP32 tensor's raw contents as the raw_input_contents entry of a request. */
export const rawFp32 = (values: readonly number[]): Buffer => Buffer.from(new Float32Array(values).buffer);

/** Raw FP32 contents → numbers. */
export const fromRawFp32 = (raw: Uint8Array): number[] => [...new Float32Array(Uint8Array.from(raw).buffer)];
