// The ext_authz gRPC service: envoy.service.auth.v3.Authorization/Check, answered by the same decision as the HTTP service.

import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { GatewayError } from '../errors/gateway-error.js';
import type { Logger } from '../telemetry/log.js';
import { deny, type CheckRequest, type CheckResult, type ExtAuthzDecider } from './decide.js';
import { dialAddress } from '../http/address.js';

export const EXTERNAL_AUTH_PROTO = 'envoy/service/auth/v3/external_auth.proto';

/** google.rpc.Code values Envoy reads from CheckResponse.status (only OK allows; the rest is for logs). */
const RPC_CODE = {
  OK: 0,
  INVALID_ARGUMENT: 3,
  NOT_FOUND: 5,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

/**
 * The vendored Envoy protos (protos/, copied from @grpc/grpc-js-xds by `npm run protos:vendor`): that package is a
 * devDependency, so production installs do not have it. Found from src/ (ts) and from dist/src/ (compiled).
 */
export function vendoredProtoDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, '..', '..', 'protos'), join(here, '..', '..', '..', 'protos')];
  const found = candidates.find((dir) => existsSync(join(dir, EXTERNAL_AUTH_PROTO)));
  if (found === undefined) throw new Error(`the Envoy ext_authz protos are missing (looked in ${candidates.join(', ')}); run npm run protos:vendor`);
  return found;
}

/** proto-loader options: proto field names (snake_case) as Envoy's docs spell them, enums as names, 64-bit as strings. */
export const PROTO_LOADER_OPTIONS: protoLoader.Options = { keepCase: true, longs: String, enums: String, defaults: false, oneofs: true };

const loadedServices = new Map<string, grpc.ServiceDefinition>();

/** Parsed once per proto directory: a restart of the services (tests, reloads of the process) reuses it. */
export function loadAuthorizationService(protoDir: string = vendoredProtoDir()): grpc.ServiceDefinition {
  const cached = loadedServices.get(protoDir);
  if (cached !== undefined) return cached;
  const definition = protoLoader.loadSync(EXTERNAL_AUTH_PROTO, { ...PROTO_LOADER_OPTIONS, includeDirs: [protoDir] });
  const loaded = grpc.loadPackageDefinition(definition);
  const service = lookup(loaded, ['envoy', 'service', 'auth', 'v3', 'Authorization']);
  if (typeof service !== 'function' || !('service' in service)) throw new Error('envoy.service.auth.v3.Authorization is not in the loaded protos');
  const loadedService = (service as grpc.ServiceClientConstructor).service;
  loadedServices.set(protoDir, loadedService);
  return loadedService;
}

function lookup(root: unknown, path: readonly string[]): unknown {
  let node = root;
  for (const part of path) node = typeof node === 'object' || typeof node === 'function' ? (node as Record<string, unknown> | null)?.[part] : undefined;
  return node;
}

interface HeaderValueOption {
  header: { key: string; value: string };
  append_action: 'OVERWRITE_IF_EXISTS_OR_ADD';
}

/** The parts of envoy.service.auth.v3.CheckResponse the gateway sets. */
export interface CheckResponseMessage {
  status: { code: number; message: string };
  ok_response?: { headers: HeaderValueOption[]; headers_to_remove: string[]; response_headers_to_add: HeaderValueOption[] };
  denied_response?: { status: { code: number }; headers: HeaderValueOption[]; body: string };
}

const option = ([key, value]: [string, string]): HeaderValueOption => ({ header: { key, value }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' });

function rpcCodeFor(status: number): number {
  if (status === 401) return RPC_CODE.UNAUTHENTICATED;
  if (status === 403) return RPC_CODE.PERMISSION_DENIED;
  if (status === 429) return RPC_CODE.RESOURCE_EXHAUSTED;
  if (status === 404) return RPC_CODE.NOT_FOUND;
  if (status === 400 || status === 413) return RPC_CODE.INVALID_ARGUMENT;
  if (status === 503) return RPC_CODE.UNAVAILABLE;
  return status >= 500 ? RPC_CODE.INTERNAL : RPC_CODE.PERMISSION_DENIED;
}

/** A decision as a CheckResponse: OkHttpResponse with identity headers, or DeniedHttpResponse with the client's answer. */
export function checkResponse(result: CheckResult): CheckResponseMessage {
  if (result.allowed) {
    return {
      status: { code: RPC_CODE.OK, message: '' },
      ok_response: {
        headers: Object.entries(result.upstreamHeaders).map(option),
        headers_to_remove: result.removeUpstreamHeaders,
        response_headers_to_add: Object.entries(result.responseHeaders).map(option),
      },
    };
  }
  return {
    status: { code: rpcCodeFor(result.status), message: result.body.error },
    denied_response: {
      status: { code: result.status },
      headers: Object.entries({ ...result.headers, 'content-type': 'application/json' }).map(option),
      body: JSON.stringify(result.body),
    },
  };
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const text = (v: unknown): string => (typeof v === 'string' ? v : '');

/**
 * The check as the decision reads it, from a decoded CheckRequest (proto field names); undefined when it has no
 * `attributes.request.http`. Headers come from `headers` or, with Envoy's `encode_raw_headers`, from `header_map`.
 */
export function checkRequestFrom(message: unknown): CheckRequest | undefined {
  const attributes = isRecord(message) ? message.attributes : undefined;
  const request = isRecord(attributes) ? attributes.request : undefined;
  const httpRequest = isRecord(request) ? request.http : undefined;
  if (!isRecord(httpRequest)) return undefined;
  const pairs: [string, string][] = [];
  if (isRecord(httpRequest.headers)) {
    for (const [key, value] of Object.entries(httpRequest.headers)) pairs.push([key.toLowerCase(), text(value)]);
  }
  const headerMap = isRecord(httpRequest.header_map) ? httpRequest.header_map.headers : undefined;
  if (Array.isArray(headerMap)) {
    for (const entry of headerMap) {
      if (!isRecord(entry)) continue;
      const raw = entry.raw_value;
      const value = raw instanceof Uint8Array && raw.length > 0 ? Buffer.from(raw).toString('latin1') : text(entry.value);
      pairs.push([text(entry.key).toLowerCase(), value]);
    }
  }
  const headers: Record<string, string> = {};
  const rawHeaders: string[] = [];
  for (const [key, value] of pairs) {
    if (key === '' || key.startsWith(':')) continue; // pseudo-headers repeat method, path and authority
    headers[key] = headers[key] === undefined ? value : `${headers[key]}, ${value}`;
    rawHeaders.push(key, value);
  }
  const host = text(httpRequest.host);
  if (headers.host === undefined && host !== '') headers.host = host;
  const source = isRecord(attributes) ? attributes.source : undefined;
  const address = isRecord(source) && isRecord(source.address) ? source.address.socket_address : undefined;
  return {
    method: text(httpRequest.method),
    path: text(httpRequest.path),
    headers,
    rawHeaders,
    clientAddress: isRecord(address) ? text(address.address) : '',
  };
}

export interface ExtAuthzGrpcOptions {
  host: string;
  port: number;
}

export interface RunningExtAuthzGrpc {
  /** host:port for a gRPC client. */
  readonly address: string;
  readonly port: number;
  close(): Promise<void>;
}

export async function startExtAuthzGrpc(decider: ExtAuthzDecider, options: ExtAuthzGrpcOptions, log: Logger, protoDir?: string): Promise<RunningExtAuthzGrpc> {
  const service = loadAuthorizationService(protoDir);
  const server = new grpc.Server();
  server.addService(service, {
    Check(call: grpc.ServerUnaryCall<unknown, CheckResponseMessage>, callback: grpc.sendUnaryData<CheckResponseMessage>) {
      const request = checkRequestFrom(call.request);
      // A definite denial rather than a gRPC error: Envoy would map an error to status_on_error (403) or, with
      // failure_mode_allow, let the request through — neither is right for a check that cannot be read.
      const decided: Promise<CheckResult> =
        request === undefined
          ? Promise.resolve(deny(new GatewayError('GW_ERR_EXT_AUTHZ_BAD_CHECK', 'the check has no attributes.request.http')))
          : decider.check(request);
      decided.then(
        (result) => callback(null, checkResponse(result)),
        (err: unknown) => {
          log.error({ err }, 'unhandled error in an ext_authz gRPC check');
          callback(null, checkResponse(deny(err)));
        },
      );
    },
  });
  const bindHost = options.host.includes(':') ? `[${options.host}]` : options.host;
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${bindHost}:${options.port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound)));
  });
  return {
    address: dialAddress(options.host, port),
    port,
    close: () =>
      new Promise<void>((resolve) => {
        // In-flight checks finish; a stuck client cannot hold shutdown for more than a second.
        const timer = setTimeout(() => server.forceShutdown(), 1000);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}
