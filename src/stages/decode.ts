// Decoding an inference body for one version: JSON or Triton's binary extension, checked against its metadata.

import { GatewayError } from '../errors/gateway-error.js';
import type { ServedVersion } from '../models/catalog.js';
import type { Context } from '../pipeline/stage.js';
import type { InferenceRequest } from '../protocol/oip.js';
import {
  BINARY_HEADER,
  binaryHeaderLength,
  binaryInputSlices,
  binaryOutputsOf,
  decodeBinaryData,
  rawBinaryRequest,
  splitBinaryBody,
} from '../protocol/binary.js';
import { validateInferRequest } from '../protocol/validate.js';

/**
 * False for a remote version with `validate: remote`: its body goes upstream as received, never parsed here. A request
 * its transport parsed (gRPC) has no body to pass through: it is always decoded.
 */
export function needsDecoding(target: ServedVersion, ctx?: Pick<Context, 'parsed'>): boolean {
  return ctx?.parsed !== undefined || !(target.backend.forward !== undefined && target.backend.passThrough === true);
}

/** The request body decoded and validated against `target`'s metadata (400 for any mismatch, 503 if not loaded). */
export async function decodeFor(ctx: Context, target: ServedVersion): Promise<InferenceRequest> {
  if (ctx.parsed !== undefined) {
    const meta = readyMetadata(target);
    return validateInferRequest(ctx.parsed.body, { name: target.model, inputs: meta.inputs, outputs: meta.outputs }, { externalData: ctx.parsed.inputData });
  }
  // Header checked before the body is read: a malformed value is refused without reading a large body.
  const jsonLength = binaryHeaderLength(ctx.headers[BINARY_HEADER]);
  const bytes = jsonLength === undefined ? undefined : await ctx.body.bytes();
  const json = bytes === undefined ? await ctx.body.json() : undefined;
  const meta = readyMetadata(target);
  // Length 0 is Triton's raw binary request: the body is the one input's data, described by the model's metadata.
  const split = bytes === undefined ? undefined : jsonLength === 0 ? rawBinaryRequest(meta.inputs, bytes) : splitBinaryBody(bytes, jsonLength!);
  const body = split === undefined ? json : split.json;
  const signature = { name: target.model, inputs: meta.inputs, outputs: meta.outputs };
  const slices = split === undefined ? undefined : binaryInputSlices(body, split.binary);
  const request = validateInferRequest(
    body,
    signature,
    slices === undefined
      ? {}
      : {
          externalData: (index, input) => {
            const bytes = slices.get(index);
            return bytes === undefined ? undefined : decodeBinaryData(input.datatype, input.shape, bytes, input.where);
          },
        },
  );
  // A plain JSON request may ask for binary outputs too.
  const binaryOutputs = binaryOutputsOf(body);
  if (binaryOutputs !== undefined) request.binaryOutputs = binaryOutputs;
  return request;
}

/** The version's metadata, or 503 while it is not loaded. */
function readyMetadata(target: ServedVersion): ReturnType<ServedVersion['backend']['metadata']> {
  if (!target.backend.ready()) {
    throw new GatewayError('GW_ERR_MODEL_NOT_READY', `model '${target.model}' version '${target.version}' is not ready`, { headers: { 'retry-after': '1' } });
  }
  return target.backend.metadata();
}
