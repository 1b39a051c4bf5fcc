// The registry's gRPC face: every code maps to its gRPC status with the REST message; retry hints become pushback and
// a RetryInfo; header metadata is filtered to what gRPC can carry.

import test from 'ava';
import protobuf from 'protobufjs';
import { ERROR_CODES, GRPC_STATUS, type ErrorCode } from '../../src/errors/codes.js';
import { GatewayError } from '../../src/errors/gateway-error.js';
import { toGrpcStatus } from '../../src/errors/to-grpc-status.js';
import { toResponse } from '../../src/errors/to-response.js';
import { errorStatus, metadataOf, statusDetails } from '../../src/server/grpc-status.js';

test('every registry code maps to its gRPC status, with the message and HTTP status REST would give', (t) => {
  for (const code of Object.keys(ERROR_CODES) as ErrorCode[]) {
    const err = new GatewayError(code);
    const mapped = toGrpcStatus(err);
    t.is(mapped.code, GRPC_STATUS[ERROR_CODES[code].grpc], code);
    t.is(mapped.details, toResponse(err).body.error);
    t.is(mapped.httpStatus, ERROR_CODES[code].status);
    t.is(mapped.errorCode, code);
  }
});

test('the statuses a gRPC client acts on', (t) => {
  const status = (code: ErrorCode) => toGrpcStatus(new GatewayError(code)).name;
  t.is(status('GW_ERR_UNAUTHENTICATED'), 'UNAUTHENTICATED');
  t.is(status('GW_ERR_INSUFFICIENT_SCOPE'), 'PERMISSION_DENIED');
  t.is(status('GW_ERR_RATE_LIMITED'), 'RESOURCE_EXHAUSTED');
  t.is(status('GW_ERR_INVALID_REQUEST'), 'INVALID_ARGUMENT');
  t.is(status('GW_ERR_MODEL_NOT_FOUND'), 'NOT_FOUND');
  t.is(status('GW_ERR_CIRCUIT_OPEN'), 'UNAVAILABLE');
  t.is(status('GW_ERR_DEADLINE_EXCEEDED'), 'DEADLINE_EXCEEDED');
  t.is(status('GW_ERR_CLIENT_CLOSED'), 'CANCELLED');
  t.is(toGrpcStatus(new TypeError('boom')).name, 'INTERNAL');
  t.truthy(toGrpcStatus(new TypeError('boom')).unexpected);
});

test('retry-after becomes grpc-retry-pushback-ms and a google.rpc.Status with RetryInfo; HTTP framing headers stay behind', (t) => {
  const err = new GatewayError('GW_ERR_CIRCUIT_OPEN', 'open', { headers: { 'retry-after': '7', allow: 'POST', 'www-authenticate': 'Bearer realm="x"' } });
  const status = errorStatus(toGrpcStatus(err), { 'x-request-id': 'r1', 'x-model-version': '2' });
  t.is(status.code, GRPC_STATUS.UNAVAILABLE);
  const md = status.metadata!;
  t.is(md.get('retry-after')[0], '7');
  t.is(md.get('grpc-retry-pushback-ms')[0], '7000');
  t.is(md.get('x-request-id')[0], 'r1');
  t.is(md.get('www-authenticate')[0], 'Bearer realm="x"');
  t.deepEqual(md.get('allow'), []);
  const root = protobuf.parse(
    `syntax = "proto3"; package google.rpc;
     message Any { string type_url = 1; bytes value = 2; }
     message Status { int32 code = 1; string message = 2; repeated Any details = 3; }
     message Duration { int64 seconds = 1; int32 nanos = 2; }
     message RetryInfo { Duration retry_delay = 1; }`,
    { keepCase: true },
  ).root;
  const decoded = root.lookupType('google.rpc.Status').toObject(root.lookupType('google.rpc.Status').decode(md.get('grpc-status-details-bin')[0] as Buffer), {
    longs: Number,
  }) as { code: number; message: string; details: { type_url: string; value: Uint8Array }[] };
  t.is(decoded.code, GRPC_STATUS.UNAVAILABLE);
  t.is(decoded.message, 'open');
  t.is(decoded.details[0]!.type_url, 'type.googleapis.com/google.rpc.RetryInfo');
  const retry = root.lookupType('google.rpc.RetryInfo').toObject(root.lookupType('google.rpc.RetryInfo').decode(decoded.details[0]!.value), { longs: Number });
  t.deepEqual(retry, { retry_delay: { seconds: 7 } });
  // Sub-second delays use nanos; an error without retry-after carries neither.
  const half = root.lookupType('google.rpc.Status').decode(statusDetails(14, 'x', 1500)) as unknown as { details: { value: Uint8Array }[] };
  t.deepEqual(root.lookupType('google.rpc.RetryInfo').toObject(root.lookupType('google.rpc.RetryInfo').decode(half.details[0]!.value), { longs: Number }), {
    retry_delay: { seconds: 1, nanos: 500_000_000 },
  });
  t.deepEqual(errorStatus(toGrpcStatus(new GatewayError('GW_ERR_INVALID_REQUEST'))).metadata!.get('grpc-retry-pushback-ms'), []);
});

test('metadata carries only what gRPC can: lower-case token names, printable ASCII values, no reserved names', (t) => {
  const md = metadataOf({ 'X-Model-Version': '2', 'bad name': 'x', 'x-bin': 'y', 'grpc-status': '0', 'x-ok': 'caf\u00e9' });
  t.deepEqual(md.getMap(), { 'x-model-version': '2' });
});
