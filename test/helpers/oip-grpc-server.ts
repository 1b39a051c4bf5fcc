// Test helper: a small OIP gRPC server built from the vendored proto (none of the gateway's code): one model `echo`
// (FP32 [-1,4] in, the same out), answering after a chosen delay and recording each call's metadata and deadline.

import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ROOT } from './gateway.js';

const definition = protoLoader.loadSync('inference/open_inference_grpc.proto', {
  includeDirs: [path.join(ROOT, 'protos')],
  keepCase: true,
  longs: String,
  defaults: true,
  oneofs: true,
});
const service = (grpc.loadPackageDefinition(definition) as unknown as { inference: { GRPCInferenceService: grpc.ServiceClientConstructor } }).inference
  .GRPCInferenceService.service;

export interface RecordedCall {
  metadata: Record<string, string>;
  /** ms between the call's arrival and its deadline; undefined without one. */
  deadlineInMs: number | undefined;
  cancelled: boolean;
}

export interface EchoServer {
  address: string;
  calls: RecordedCall[];
  /** How long ModelInfer waits before answering, ms. */
  delayMs: number;
  close(): Promise<void>;
}

type Req = { inputs: { name: string; datatype: string; shape: string[] }[]; raw_input_contents: Buffer[]; id: string; model_name: string };

export async function startEchoServer(delayMs = 0): Promise<EchoServer> {
  const server = new grpc.Server();
  const calls: RecordedCall[] = [];
  const echo: EchoServer = { address: '', calls, delayMs, close: async () => undefined };
  const tensor = { name: 'input', datatype: 'FP32', shape: [-1, 4] };
  server.addService(service, {
    ServerLive: (_c: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, { live: true }),
    ServerReady: (_c: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, { ready: true }),
    ServerMetadata: (_c: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, { name: 'echo-server', version: '1', extensions: [] }),
    ModelReady: (_c: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, { ready: true }),
    ModelMetadata: (_c: unknown, cb: grpc.sendUnaryData<unknown>) =>
      cb(null, { name: 'echo', versions: ['1'], platform: 'test', inputs: [tensor], outputs: [{ ...tensor, name: 'output' }] }),
    ModelInfer: (call: grpc.ServerUnaryCall<Req, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      const deadline = call.getDeadline();
      const at = deadline instanceof Date ? deadline.getTime() : deadline;
      const record: RecordedCall = {
        metadata: Object.fromEntries(Object.entries(call.metadata.getMap()).map(([k, v]) => [k, String(v)])),
        deadlineInMs: Number.isFinite(at) ? at - Date.now() : undefined,
        cancelled: false,
      };
      calls.push(record);
      call.on('cancelled', () => (record.cancelled = true));
      const input = call.request.inputs[0]!;
      setTimeout(() => {
        if (record.cancelled) return;
        cb(null, {
          model_name: call.request.model_name,
          model_version: '1',
          id: call.request.id,
          outputs: [{ name: 'output', datatype: 'FP32', shape: input.shape }],
          raw_output_contents: [call.request.raw_input_contents[0]],
        });
      }, echo.delayMs);
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  echo.address = `127.0.0.1:${port}`;
  echo.close = () => new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
  return echo;
}

/** The echo model as a gateway version backed by this server. */
export const echoVersion = (address: string, extra: Record<string, unknown> = {}) => ({ backend: { kind: 'grpc', target: address, model: 'echo', ...extra } });
