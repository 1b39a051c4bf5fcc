// Upstream: the terminal stage; performs the operation on the chosen version's backend and shapes the OIP reply.

import { forwardingBackend, type ForwardingBackend } from '../backends/backend.js';
import { clientHeaders, decodeOutputs, gatewayHeaders, replyFromRemote } from '../backends/http-oip.js';
import { GatewayError } from '../errors/gateway-error.js';
import type { ModelCatalog, ServedVersion } from '../models/catalog.js';
import { RawBody, type Context, type Reply, type Stage } from '../pipeline/stage.js';
import { BINARY_HEADER, encodeBinaryResponse } from '../protocol/binary.js';
import type { ModelMetadataBody, Tensor } from '../protocol/oip.js';
import { encodeJsonData } from '../protocol/tensor.js';
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
  const res = await remote.forward({ body, headers: clientHeaders(ctx.headers, ctx.clientAddress), gatewayHeaders: gatewayHeaders(ctx.requestId, ctx.upstreamHeaders), signal: ctx.signal });
  const reply = replyFromRemote(res, { model: target.model, version: target.version }, label);
  // Tensors are decoded only when an earlier stage needed the request decoded (e.g. a shadow compares outputs).
  if (ctx.inference !== undefined && reply.status < 300) ctx.result = { outputs: decodeOutputs(reply.json, label, reply.binary) };
  return { status: reply.status, body: reply.body, headers: reply.headers };
}

/** An in-process result as a binary tensor response: the JSON part, then the asked-for outputs' bytes uncopied. */
function binaryReply(target: ServedVersion, id: string | undefined, outputs: Tensor[], binary: 'all' | ReadonlySet<string>): Reply {
  const head = { model_name: target.model, model_version: target.version, ...(id !== undefined ? { id } : {}) };
  const encoded = encodeBinaryResponse(head, outputs, binary, encodeJsonData);
  return {
    status: 200,
    body: new RawBody(encoded.chunks),
    headers: { 'content-type': 'application/octet-stream', [BINARY_HEADER]: String(encoded.jsonLength) },
  };
}

export function upstreamStage(catalog: ModelCatalog): Stage {
  return {
    name: 'upstream',
    async handle(ctx: Context): Promise<Reply> {
      const target = ctx.target;
      if (!target) throw new GatewayError('GW_ERR_INTERNAL', undefined, { cause: new Error('upstream ran before route') });
      const backend = target.backend;
      const remote = forwardingBackend(backend);
      switch (ctx.operation) {
        case 'model-ready': {
          // A remote is asked now (its own ready endpoint); an in-process backend knows.
          const ready = remote?.checkReady ? await remote.checkReady(ctx.signal) : backend.ready();
          return { status: ready ? 200 : 503, body: { name: target.model, version: target.version, ready } };
        }
        case 'model-metadata': {
          if (!backend.ready()) {
            throw new GatewayError('GW_ERR_MODEL_NOT_READY', `model '${target.model}' version '${target.version}' is not ready`, { headers: { 'retry-after': '1' } });
          }
          const meta = backend.metadata();
          const versions = [...(catalog.get(target.model)?.versions.keys() ?? [])];
          const body: ModelMetadataBody = { name: target.model, versions, platform: meta.platform, inputs: meta.inputs, outputs: meta.outputs };
          return { status: 200, body };
        }
        case 'infer': {
          if (remote) return forwardToRemote(ctx, target, remote);
          const request = ctx.inference;
          if (!request) throw new GatewayError('GW_ERR_INTERNAL', undefined, { cause: new Error('upstream ran before validate') });
          const result = await backend.infer(request, ctx.signal);
          ctx.result = result;
          if (request.binaryOutputs !== undefined) return binaryReply(target, request.id, result.outputs, request.binaryOutputs);
          return {
            status: 200,
            body: encodeInferResponse({ modelName: target.model, modelVersion: target.version, id: request.id, outputs: result.outputs }),
          };
        }
      }
    },
  };
}
