// One call to one version's backend, shaped as the OIP reply: forwarded as received to a remote, or run in-process.

import { clientHeaders, decodeOutputs, gatewayHeaders, replyFromRemote } from '../backends/http-oip.js';
import type { ForwardingBackend } from '../backends/backend.js';
import { GatewayError, isGatewayError } from '../errors/gateway-error.js';
import type { ServedVersion } from '../models/catalog.js';
import type { Context, Reply } from '../pipeline/stage.js';
import { BINARY_HEADER, encodeBinaryResponse, RawBody } from '../protocol/binary.js';
import type { Tensor } from '../protocol/oip.js';
import { encodeInferResponse } from '../protocol/validate.js';

/**
 * A remote version: the client's body goes upstream as received (never re-encoded); the remote's answer comes back
 * with the gateway's model name and version, or with the remote's own status and error message.
 * Headers: the client's end-to-end ones (`clientHeaders`), then the gateway's own (`gatewayHeaders`: request id,
 * identity). A client's `x-shadow` is in neither: it only kept the shadow stage from mirroring this request, and the
 * primary call is never marked as a mirror (mirrored copies are marked by the backend's `infer`, not here).
 */
async function forwardToRemote(ctx: Context, target: ServedVersion, remote: ForwardingBackend): Promise<Reply> {
  const label = `model ${target.model} version ${target.version}`;
  // Small or already-received bodies go as one buffer; a large one still arriving is streamed as it arrives.
  const body = await ctx.body.forwardable();
  const res = await remote.forward({
    body,
    headers: clientHeaders(ctx.headers, ctx.clientAddress),
    gatewayHeaders: gatewayHeaders(ctx.requestId, ctx.upstreamHeaders),
    signal: ctx.signal,
  });
  // The answer's tensors are decoded only when an earlier stage needed the request decoded (a shadow compares
  // outputs); otherwise its bytes pass through with the gateway's names spliced in.
  const decode = ctx.inference !== undefined;
  const reply = replyFromRemote(res, { model: target.model, version: target.version }, label, { parse: decode });
  if (decode && reply.status < 300 && reply.json) {
    // The client gets the remote's bytes (as without a shadow) whatever happens here; outputs the gateway cannot
    // decode exactly (64-bit values beyond 2^53, which a JSON parse has rounded) or at all leave ctx.result unset:
    // no comparison rather than a wrong one, and never a failed request for the sake of a comparison.
    try {
      ctx.result = { outputs: decodeOutputs(reply.json, label, reply.binary) };
    } catch (err) {
      if (!isGatewayError(err)) throw err;
    }
  }
  return { status: reply.status, body: reply.body, headers: reply.headers };
}

/** An in-process result as a binary tensor response: the JSON part, then the asked-for outputs' bytes uncopied. */
function binaryReply(target: ServedVersion, id: string | undefined, outputs: Tensor[], binary: 'all' | ReadonlySet<string>): Reply {
  const head = { model_name: target.model, model_version: target.version, ...(id !== undefined ? { id } : {}) };
  const encoded = encodeBinaryResponse(head, outputs, binary);
  return {
    status: 200,
    body: new RawBody(encoded.chunks),
    headers: { 'content-type': 'application/octet-stream', [BINARY_HEADER]: String(encoded.jsonLength) },
  };
}

/** Runs the request's inference on `target`: the decoded request in-process, or the client's body on a remote. */
export async function inferOn(ctx: Context, target: ServedVersion): Promise<Reply> {
  const backend = target.backend;
  // A remote always gets the client's body as received (validated here first only with `validate: gateway`); a request
  // its transport parsed (gRPC) has no body: its tensors go, and its answer is the structured result.
  if (backend.forward !== undefined && ctx.parsed === undefined) return forwardToRemote(ctx, target, backend as ForwardingBackend);
  const request = ctx.inference;
  if (!request) throw new GatewayError('GW_ERR_INTERNAL', undefined, { cause: new Error('upstream ran before validate') });
  // A remote gets what it would get with a forwarded body: the gateway's own headers and the deadline.
  const call = backend.remote ? { ...request, gatewayHeaders: gatewayHeaders(ctx.requestId, ctx.upstreamHeaders), deadline: ctx.deadline } : request;
  const result = await backend.infer(call, ctx.signal);
  ctx.result = result;
  if (ctx.parsed !== undefined) return { status: 200, body: result };
  if (request.binaryOutputs !== undefined) return binaryReply(target, request.id, result.outputs, request.binaryOutputs);
  return {
    status: 200,
    body: encodeInferResponse({ modelName: target.model, modelVersion: target.version, id: request.id, outputs: result.outputs }),
    headers: { 'content-type': 'application/json' },
  };
}
