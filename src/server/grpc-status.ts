// gRPC answers on the wire: a mapped error as the call's status with trailing metadata (retry pushback and a
// google.rpc.Status carrying RetryInfo when the error says when to retry), and reply headers as metadata.

import { Metadata, type StatusObject } from '@grpc/grpc-js';
import type { GrpcErrorStatus } from '../errors/to-grpc-status.js';

/** Metadata keys: lower-case token characters (HTTP/2 header names); anything else is left out rather than failing the call. */
const METADATA_KEY = /^[0-9a-z_.-]+$/;
/** ASCII metadata values: printable characters only. */
const METADATA_VALUE = /^[\x20-\x7e]*$/;

/** Headers as gRPC metadata (ASCII entries only; `-bin` names are never produced from headers). */
export function metadataOf(...sources: readonly (Readonly<Record<string, string>> | undefined)[]): Metadata {
  const metadata = new Metadata();
  for (const source of sources) {
    if (source === undefined) continue;
    for (const [name, value] of Object.entries(source)) {
      const key = name.toLowerCase();
      if (METADATA_KEY.test(key) && !key.endsWith('-bin') && !key.startsWith('grpc-') && METADATA_VALUE.test(value)) metadata.set(key, value);
    }
  }
  return metadata;
}

// A few protobuf fields by hand: google.rpc.Status, google.protobuf.Any, google.rpc.RetryInfo and
// google.protobuf.Duration are four tiny messages, not worth loading googleapis' protos for.

function varint(n: number | bigint): number[] {
  let v = BigInt(n);
  const out: number[] = [];
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return out;
}

function field(number: number, wireType: 0 | 2, payload: number | bigint | Uint8Array): number[] {
  const tag = varint((number << 3) | wireType);
  if (wireType === 0) return [...tag, ...varint(payload as number | bigint)];
  const bytes = payload as Uint8Array;
  return [...tag, ...varint(bytes.length), ...bytes];
}

export const RETRY_INFO_TYPE_URL = 'type.googleapis.com/google.rpc.RetryInfo';

/** google.rpc.Status{code, message, details: [Any(RetryInfo{retry_delay})]}, as grpc-status-details-bin carries it. */
export function statusDetails(code: number, message: string, retryDelayMs: number): Buffer {
  const seconds = Math.floor(retryDelayMs / 1000);
  const nanos = (retryDelayMs % 1000) * 1_000_000;
  const duration = [...(seconds > 0 ? field(1, 0, seconds) : []), ...(nanos > 0 ? field(2, 0, nanos) : [])];
  const retryInfo = field(1, 2, Uint8Array.from(duration));
  const any = [...field(1, 2, Buffer.from(RETRY_INFO_TYPE_URL)), ...field(2, 2, Uint8Array.from(retryInfo))];
  return Buffer.from([...(code !== 0 ? field(1, 0, code) : []), ...field(2, 2, Buffer.from(message, 'utf8')), ...field(3, 2, Uint8Array.from(any))]);
}

/**
 * A mapped error as the call's status. Trailing metadata: the request's reply headers (request id, version), then the
 * error's own (retry-after, RateLimit, www-authenticate); with a retry delay also `grpc-retry-pushback-ms` (gRPC's
 * retry design, A6) and the rich status with RetryInfo (Google's error model, read by grpcurl and most clients).
 */
export function errorStatus(mapped: GrpcErrorStatus, replyHeaders?: Readonly<Record<string, string>>): Partial<StatusObject> {
  const metadata = metadataOf(replyHeaders, mapped.metadata);
  if (mapped.retryAfterMs !== undefined) {
    metadata.set('grpc-retry-pushback-ms', String(mapped.retryAfterMs));
    metadata.set('grpc-status-details-bin', statusDetails(mapped.code, mapped.details, mapped.retryAfterMs));
  }
  return { code: mapped.code, details: mapped.details, metadata };
}
