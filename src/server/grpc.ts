// The gRPC data plane: inference.GRPCInferenceService and grpc.health.v1.Health on their own port. Model calls run the
// generation's chain like REST (grpc-calls.ts); health and server metadata are answered here, as data-plane.ts does.

import * as grpc from '@grpc/grpc-js';
import type { ServerConfig } from '../config/schema.js';
import { GATEWAY_NAME, GATEWAY_VERSION } from '../core/version.js';
import { GatewayError } from '../errors/gateway-error.js';
import type { GatewayState } from '../pipeline/generation.js';
import type { Reply } from '../pipeline/stage.js';
import {
  grpcServices,
  type ModelInferRequestMessage,
  type ModelInferResponseMessage,
  type ModelMetadataResponseMessage,
  type ModelRequestMessage,
  type ServerMetadataResponseMessage,
} from '../protocol/grpc-protos.js';
import { inferResponseMessage, parseInferRequest } from '../protocol/grpc-tensors.js';
import type { InferenceResult, ModelMetadataBody } from '../protocol/oip.js';
import type { Logger } from '../telemetry/log.js';
import type { Overload } from './overload.js';
import type { DataPlaneTelemetry } from './data-plane.js';
import { modelCalls, type ModelCall } from './grpc-calls.js';
import { GrpcHealth } from './grpc-health.js';
import { errorStatus } from './grpc-status.js';
import { toGrpcStatus } from '../errors/to-grpc-status.js';
import { dialAddress } from '../http/address.js';

/**
 * OIP extensions over gRPC: none. `binary_tensor_data` is REST's way to send raw tensors; gRPC has raw contents in the
 * protocol itself.
 */
const GRPC_EXTENSIONS: readonly string[] = [];

/** A request message grpc-js could not decode: kept as a value so the call is answered INVALID_ARGUMENT, with the reason. */
class MalformedMessage {
  constructor(readonly reason: string) {}
}

/**
 * The service with each method's request decoder made total: grpc-js answers a decoder's exception with INTERNAL and
 * no reason, blaming the server for the client's bytes.
 */
function tolerantService(service: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(service)) {
    out[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return method.requestDeserialize(bytes) as unknown;
        } catch (err) {
          return new MalformedMessage((err as Error).message);
        }
      },
    };
  }
  return out;
}

export interface RunningGrpcDataPlane {
  /** host:port for a client. */
  readonly address: string;
  readonly port: number;
  readonly health: GrpcHealth;
  /** The gateway started draining: Watch streams hear NOT_SERVING now, not at their next poll. */
  draining(): void;
  /** Stops taking calls (listeners closed, GOAWAY on every connection) and resolves when the calls in flight have ended. */
  shutdown(): Promise<void>;
  /** Cuts every call still open (the drain deadline). */
  forceShutdown(): void;
}

export async function startGrpcDataPlane(
  state: GatewayState,
  config: ServerConfig,
  log: Logger,
  telemetry: DataPlaneTelemetry = {},
  overload?: Overload,
): Promise<RunningGrpcDataPlane> {
  const services = grpcServices();
  const settings = config.grpc;
  const server = new grpc.Server({
    // grpc-js refuses a larger message as it arrives, before decoding it: RESOURCE_EXHAUSTED "Received message larger
    // than max (N vs M)". Its status is sent below the interceptors, so that wording is the one clients see.
    'grpc.max_receive_message_length': config.maxBodyBytes,
    'grpc.max_send_message_length': -1,
    'grpc.keepalive_time_ms': settings.keepaliveTimeMs,
    'grpc.keepalive_timeout_ms': settings.keepaliveTimeoutMs,
    'grpc.max_concurrent_streams': settings.maxConcurrentStreams,
    ...(settings.maxConnectionAgeMs > 0 ? { 'grpc.max_connection_age_ms': settings.maxConnectionAgeMs } : {}),
  });
  const health = new GrpcHealth(state);
  const run = modelCalls(state, log, telemetry, overload);

  /** A model call whose message may have failed to decode. */
  function model<Req extends object, Res>(c: Omit<ModelCall<Req, Res>, 'model' | 'version'>, name: (r: Req) => [string, string]): void {
    const request = c.call.request as Req | MalformedMessage;
    if (request instanceof MalformedMessage) {
      const err = new GatewayError('GW_ERR_BAD_PROTOBUF', `the ${c.method}Request message cannot be decoded: ${request.reason}`);
      c.callback(errorStatus(toGrpcStatus(err)));
      return;
    }
    const [model, version] = name(request);
    run({ ...c, model, version }).catch((err: unknown) => {
      log.error({ err }, 'unhandled error while answering a gRPC call');
      if (!c.call.cancelled) c.callback({ code: grpc.status.INTERNAL, details: 'internal gateway error' });
    });
  }

  const readyAnswer = (reply: Reply) => ({ ready: (reply.body as { ready?: unknown }).ready === true });
  const metadataAnswer = (reply: Reply): ModelMetadataResponseMessage => {
    const body = reply.body as ModelMetadataBody;
    return { name: body.name, versions: body.versions, platform: body.platform, inputs: body.inputs, outputs: body.outputs, properties: {} };
  };

  server.addService(tolerantService(services.inference), {
    ServerLive: (_call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<{ live: boolean }>) => callback(null, { live: true }),
    ServerReady: (_call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<{ ready: boolean }>) =>
      callback(null, { ready: !state.draining && state.current.catalog.ready() }),
    ServerMetadata: (_call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<ServerMetadataResponseMessage>) =>
      callback(null, { name: GATEWAY_NAME, version: GATEWAY_VERSION, extensions: [...GRPC_EXTENSIONS] }),
    ModelReady: (call: grpc.ServerUnaryCall<ModelRequestMessage, { ready: boolean }>, callback: grpc.sendUnaryData<{ ready: boolean }>) =>
      model({ method: 'ModelReady', operation: 'model-ready', call, callback, answer: readyAnswer }, (r) => [r.name, r.version]),
    ModelMetadata: (
      call: grpc.ServerUnaryCall<ModelRequestMessage, ModelMetadataResponseMessage>,
      callback: grpc.sendUnaryData<ModelMetadataResponseMessage>,
    ) => model({ method: 'ModelMetadata', operation: 'model-metadata', call, callback, answer: metadataAnswer }, (r) => [r.name, r.version]),
    ModelInfer: (call: grpc.ServerUnaryCall<ModelInferRequestMessage, ModelInferResponseMessage>, callback: grpc.sendUnaryData<ModelInferResponseMessage>) => {
      const request = call.request;
      model(
        {
          method: 'ModelInfer',
          operation: 'infer',
          call,
          callback,
          parsed: () => parseInferRequest(request),
          // The answer comes the way the request came: raw contents for raw, typed for typed.
          answer: (reply, ctx) => {
            const result = reply.body as InferenceResult;
            const raw = (request.raw_input_contents?.length ?? 0) > 0;
            return inferResponseMessage({ model: ctx.modelName, version: ctx.target!.version, id: ctx.inference?.id, outputs: result.outputs, raw });
          },
        },
        (r) => [r.model_name, r.model_version ?? ''],
      );
    },
  });
  server.addService(services.health, health.implementation);

  const bindHost = config.host.includes(':') ? `[${config.host}]` : config.host;
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${bindHost}:${settings.port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound)));
  });
  return {
    address: dialAddress(config.host, port),
    port,
    health,
    draining: () => health.notify(),
    shutdown: () =>
      new Promise<void>((resolve) => {
        // Watch streams never end on their own: they get their last status (NOT_SERVING) and are closed first.
        health.close();
        server.tryShutdown(() => resolve());
      }),
    forceShutdown: () => {
      health.close();
      server.forceShutdown();
    },
  };
}
