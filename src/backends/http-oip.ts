// The Open Inference Protocol as a proxy sees it: remote paths, which headers go upstream, and how a remote's answer
// becomes the gateway's (its names replaced by the gateway's, its errors passed on, its tensors decoded on demand).

import type { IncomingHttpHeaders } from 'node:http';
import { GatewayError } from '../errors/gateway-error.js';
import { isDatatype, type BackendMetadata, type InferenceRequest, type Tensor, type TensorMetadata } from '../protocol/oip.js';
import { oipMessageJson } from '../protocol/json-wire.js';
import { decodeJsonTensor } from '../protocol/tensor.js';
import { BINARY_HEADER, binaryHeaderLength, decodeBinaryData, parameterOf, RawBody } from '../protocol/binary.js';
import { replaceTopLevel, topLevelMembers } from '../protocol/json-splice.js';
import { SHADOW_HEADER } from '../protocol/shadow-mark.js';
import type { ForwardedResponse } from './backend.js';

/** The remote's OIP endpoints for one model (version). */
export class RemoteModelPaths {
  readonly origin: string;
  readonly metadata: string;
  readonly ready: string;
  readonly infer: string;

  constructor(baseUrl: string, model: string, version: string | undefined) {
    const url = new URL(baseUrl);
    this.origin = url.origin;
    const prefix = url.pathname.replace(/\/+$/, '');
    this.metadata = `${prefix}/v2/models/${encodeURIComponent(model)}${version === undefined ? '' : `/versions/${encodeURIComponent(version)}`}`;
    this.ready = `${this.metadata}/ready`;
    this.infer = `${this.metadata}/infer`;
  }
}

/** RFC 9110 §7.6.1: meaningful for one connection only, never forwarded. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/**
 * Not forwarded either: framing the client library recomputes (host, content-length, expect), credentials meant for
 * the gateway (a remote that needs its own gets them from the backend's `headers`), the gateway's routing header
 * (the remote path already names the version), the request id (the gateway's canonical one is set instead) and the
 * shadow mark `x-shadow` (src/shadow/mark.ts): only the gateway marks a mirrored copy, through `gatewayHeaders`. A
 * client's `x-shadow: true` still stops this gateway mirroring the request (the shadow stage reads the incoming
 * headers), but it never reaches a remote, even when the "client" is another gateway mirroring to this one: that
 * copy's mark still reaches the remote as `parameters.shadow` in the body, which is forwarded as received.
 */
const GATEWAY_ONLY = new Set(['host', 'content-length', 'expect', 'authorization', 'cookie', 'x-model-version', 'x-request-id', SHADOW_HEADER]);

/** Names whose underscore look-alikes are dropped too: the ones above, hop-by-hop ones and the X-Forwarded-For the gateway writes. */
const LOOK_ALIKE_TARGETS = new Set([...GATEWAY_ONLY, ...HOP_BY_HOP, 'x-forwarded-for']);

/**
 * The client's end-to-end headers for the remote (so `traceparent`, `tracestate`, `baggage`, the content type and
 * Triton's `inference-header-content-length` pass). Gateway-owned headers (verified identity, request id) travel
 * separately as `gatewayHeaders` and are applied last by the backend.
 */
export function clientHeaders(incoming: IncomingHttpHeaders, peer?: string): Record<string, string> {
  // Names the client's `Connection:` lists are hop-by-hop too; the usual values (none, keep-alive) list nothing else.
  const connection = incoming.connection;
  const listed =
    connection === undefined || connection === 'keep-alive' || connection === 'close'
      ? undefined
      : new Set(
          String(connection)
            .split(',')
            .map((t) => t.trim().toLowerCase())
            .filter((t) => t !== ''),
        );
  const out: Record<string, string> = {};
  for (const name in incoming) {
    const value = incoming[name];
    if (value === undefined || HOP_BY_HOP.has(name) || GATEWAY_ONLY.has(name) || listed?.has(name)) continue;
    // `x_forwarded_for`, `x_model_version`, ...: stacks that read `_` as `-` would take them for the gateway's own.
    if (name.includes('_') && LOOK_ALIKE_TARGETS.has(name.replaceAll('_', '-'))) continue;
    out[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  // Append, never replace or trust: the remote sees the client's chain plus the peer this gateway saw (as Envoy does
  // with use_remote_address). A copy the client named in `Connection:` was dropped above; the peer is still added.
  if (peer !== undefined && peer !== '') {
    const prior = out['x-forwarded-for']?.trim();
    out['x-forwarded-for'] = prior ? `${prior}, ${peer}` : peer;
  }
  return out;
}

/** Headers only the gateway sets: the stages' gateway-owned headers and the gateway's request id. */
export function gatewayHeaders(requestId: string, gatewayOwned: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(gatewayOwned)) out[name.toLowerCase()] = value;
  out['x-request-id'] = requestId;
  return out;
}

/** What the gateway answers for a remote's answer (structurally a pipeline Reply, plus the parsed JSON part). */
export interface RemoteReply {
  status: number;
  /** JSON body, or for a binary tensor response the rewritten JSON part and the remote's tensor bytes, uncopied. */
  body: Record<string, unknown> | RawBody;
  headers: Record<string, string>;
  /** The JSON body, or the JSON part of a binary response, as the remote wrote it; absent when it was not parsed. */
  json?: Record<string, unknown>;
  /** A binary response's tensor bytes (a view of the remote's body). */
  binary?: Buffer;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
}

function badGateway(label: string, what: string): GatewayError {
  return new GatewayError('GW_ERR_BAD_GATEWAY', `${label}: the backend sent ${what}`);
}

/** The remote's `{"error": "..."}` message, if its body is one. */
export function remoteErrorMessage(body: Buffer): string | undefined {
  const parsed = parseJson(body);
  return isObject(parsed) && typeof parsed.error === 'string' ? parsed.error : undefined;
}

/**
 * A successful remote inference body, parsed. Throws 502 for anything that is not an OIP JSON inference response
 * (binary tensor responses are not passed through).
 */
export function parseInferenceResponse(res: ForwardedResponse, label: string): Record<string, unknown> {
  // Tensor calls (shadow copies) never ask for binary outputs, so a binary answer to one is the remote's mistake.
  if (res.headers[BINARY_HEADER] !== undefined) throw badGateway(label, 'a binary tensor response to a request that asked for JSON');
  return parseResponseJson(res.body, label);
}

function parseResponseJson(bytes: Buffer, label: string): Record<string, unknown> {
  const parsed = parseJson(bytes);
  if (!isObject(parsed) || !Array.isArray(parsed.outputs)) throw badGateway(label, 'a response that is not an OIP inference response');
  return parsed;
}

/**
 * A remote's binary tensor response (Triton's extension, asked for by the client): only the JSON part is parsed and
 * re-encoded with the gateway's names; the tensor bytes are passed on as a view of the remote's body.
 */
function binaryReplyFromRemote(res: ForwardedResponse, header: string, names: { model: string; version: string }, label: string): RemoteReply {
  let jsonLength: number | undefined;
  try {
    jsonLength = binaryHeaderLength(header);
  } catch {
    jsonLength = undefined;
  }
  if (jsonLength === undefined || jsonLength > res.body.length)
    throw badGateway(label, `a binary response with an invalid ${BINARY_HEADER} (${header.slice(0, 32)})`);
  const jsonPart = res.body.subarray(0, jsonLength);
  const json = parseResponseJson(jsonPart, label);
  // The names are spliced into the remote's own JSON bytes, never re-encoded from the parse: a parse rounds 64-bit
  // integers beyond 2^53 in the outputs left in JSON.
  const head = spliceNames(jsonPart, names, label);
  const headLength = head.reduce((n, c) => n + c.byteLength, 0);
  const binary = res.body.subarray(jsonLength);
  const headers = { 'content-type': res.headers['content-type'] ?? 'application/octet-stream', [BINARY_HEADER]: String(headLength) };
  return { status: res.status, body: new RawBody([...head, binary]), headers, json, binary };
}

/** The remote's JSON object with `model_name`/`model_version` replaced by the gateway's, as byte chunks (no copy of the rest). */
function spliceNames(bytes: Buffer, names: { model: string; version: string }, label: string): Buffer[] {
  const members = topLevelMembers(bytes);
  if (!members || !members.some((m) => m.key === 'outputs' && bytes[m.start] === 0x5b))
    throw badGateway(label, 'a response that is not an OIP inference response');
  return replaceTopLevel(bytes, members, { model_name: names.model, model_version: names.version });
}

/**
 * A remote's JSON inference answer with the gateway's names, without parsing its tensors: the two values are spliced
 * into the remote's bytes. Only the object's top level is scanned, so an answer that is not one JSON object with an
 * `outputs` array is still a 502.
 */
function renamedAnswer(res: ForwardedResponse, names: { model: string; version: string }, label: string): RemoteReply {
  return { status: res.status, body: new RawBody(spliceNames(res.body, names, label)), headers: { 'content-type': 'application/json' } };
}

/**
 * The reply for a remote's answer: 2xx → the inference body with `model_name`/`model_version` replaced by the
 * gateway's names (spliced into the remote's bytes, unless `parse` asks for the decoded JSON too, e.g. for a shadow
 * comparison); 4xx/5xx → the remote's status and error message (with its Retry-After). A remote 404 means the
 * backend's model/version is misconfigured, not that the caller asked for something unknown, so it becomes a 502.
 */
export function replyFromRemote(
  res: ForwardedResponse,
  names: { model: string; version: string },
  label: string,
  options: { parse?: boolean } = {},
): RemoteReply {
  if (res.status >= 200 && res.status < 300) {
    // The caller asked the gateway for its model and version; the remote's own names are an implementation detail.
    const header = res.headers[BINARY_HEADER];
    if (header !== undefined) return binaryReplyFromRemote(res, header, names, label);
    const reply = renamedAnswer(res, names, label);
    // Parsed only for the stages that compare tensors; the client still gets the remote's exact bytes.
    return options.parse === true ? { ...reply, json: parseResponseJson(res.body, label) } : reply;
  }
  if (res.status < 400 || res.status > 599) throw badGateway(label, `an unexpected status ${res.status}`);
  const message = remoteErrorMessage(res.body);
  if (res.status === 404) throw badGateway(label, `404 for its configured model${message ? `: ${message}` : ''}`);
  const headers: Record<string, string> = {};
  if (res.headers['retry-after'] !== undefined) headers['retry-after'] = res.headers['retry-after'];
  const body = { error: message ?? `${label}: the backend answered ${res.status}` };
  return { status: res.status, body, headers, json: body };
}

/** The JSON body for a decoded request (used when a backend call starts from tensors, e.g. a shadow copy). */
export function encodeInferRequest(request: InferenceRequest): Buffer {
  const head = { ...(request.id !== undefined ? { id: request.id } : {}), ...(request.parameters !== undefined ? { parameters: request.parameters } : {}) };
  // Exact, as every JSON the gateway writes: 64-bit inputs keep their digits; NaN/±Infinity (possible only from a
  // binary client request) are refused rather than sent as null.
  const inputs = request.inputs.map((t) => ({ fields: { name: t.name, shape: t.shape, datatype: t.datatype }, data: t }));
  const tail = request.outputs !== undefined ? { outputs: request.outputs.map((name) => ({ name })) } : {};
  return Buffer.from(oipMessageJson(head, 'inputs', inputs, tail));
}

/**
 * A remote inference body's outputs as tensors; anything malformed is a 502, since the remote sent it. With `binary`
 * (a binary tensor response), outputs carrying `parameters.binary_data_size` take their bytes from it, in order.
 */
export function decodeOutputs(body: Record<string, unknown>, label: string, binary?: Buffer): Tensor[] {
  const outputs = body.outputs;
  if (!Array.isArray(outputs)) throw badGateway(label, 'a response without outputs');
  let offset = 0;
  const tensors = outputs.map((raw: unknown, i) => {
    if (!isObject(raw) || typeof raw.name !== 'string' || !isDatatype(raw.datatype) || !isShape(raw.shape)) {
      throw badGateway(label, `a malformed output ${i}`);
    }
    const where = `output '${raw.name}'`;
    try {
      const size = binary === undefined ? undefined : parameterOf(raw, 'binary_data_size');
      if (binary !== undefined && size !== undefined) {
        if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0 || offset + size > binary.length) {
          throw badGateway(label, `an invalid ${where}: binary_data_size ${String(size)} does not fit the ${binary.length - offset} bytes left`);
        }
        const data = decodeBinaryData(raw.datatype, raw.shape, binary.subarray(offset, offset + size), where);
        offset += size;
        return { name: raw.name, datatype: raw.datatype, shape: raw.shape, data };
      }
      return { name: raw.name, datatype: raw.datatype, shape: raw.shape, data: decodeJsonTensor(raw.datatype, raw.data, raw.shape, where) };
    } catch (err) {
      if (err instanceof GatewayError && err.code === 'GW_ERR_INVALID_REQUEST') throw badGateway(label, `an invalid ${where}: ${err.message}`);
      throw err;
    }
  });
  if (binary !== undefined && offset !== binary.length) throw badGateway(label, `${binary.length - offset} bytes of binary data no output accounts for`);
  return tensors;
}

function isShape(value: unknown): value is number[] {
  return Array.isArray(value) && value.every((d) => Number.isSafeInteger(d) && (d as number) >= -1);
}

function isTensorMetadata(value: unknown): value is TensorMetadata {
  return isObject(value) && typeof value.name === 'string' && isDatatype(value.datatype) && isShape(value.shape);
}

/** The remote's model metadata body → what the gateway needs (its name and versions are the gateway's own). */
export function parseRemoteMetadata(body: Buffer): BackendMetadata | undefined {
  const parsed = parseJson(body);
  if (!isObject(parsed) || !Array.isArray(parsed.inputs) || !Array.isArray(parsed.outputs)) return undefined;
  if (!parsed.inputs.every(isTensorMetadata) || !parsed.outputs.every(isTensorMetadata)) return undefined;
  return {
    platform: typeof parsed.platform === 'string' ? parsed.platform : '',
    inputs: parsed.inputs.map((t) => ({ name: t.name, datatype: t.datatype, shape: [...t.shape] })),
    outputs: parsed.outputs.map((t) => ({ name: t.name, datatype: t.datatype, shape: [...t.shape] })),
  };
}
