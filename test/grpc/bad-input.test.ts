// Bad input over gRPC: each gets the right status with a clear message and the gateway keeps serving — malformed
// protobuf, unknown model, wrong datatype, raw contents of the wrong length, raw and typed together, an oversized
// message; and deadlines: the caller's when it comes first (sent on to a grpc remote), else the model's.

import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { gatewayConfig, irisModels, startTestGateway } from '../helpers/gateway.js';
import { oipGrpcClient, rawFp32, type Message } from '../helpers/oip-grpc-client.js';
import { echoVersion, startEchoServer } from '../helpers/oip-grpc-server.js';

const ROW = [5.1, 3.5, 1.4, 0.2];
const iris = (extra: Message = {}): Message => ({
  model_name: 'iris',
  inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4] }],
  raw_input_contents: [rawFp32(ROW)],
  ...extra,
});

const shared = (async () => {
  const echo = await startEchoServer(300);
  const gw = await startTestGateway(
    gatewayConfig({
      server: { maxBodyBytes: 64 * 1024, grpc: { port: 0 } },
      models: {
        ...irisModels(),
        echo: { timeoutMs: 150, versions: { '1': echoVersion(echo.address) } },
        slow: { versions: { '1': echoVersion(echo.address) } },
      },
    }),
  );
  return { gw, echo, client: oipGrpcClient(gw.grpc!.address) };
})();
test.after.always(async () => {
  const { gw, echo, client } = await shared;
  client.close();
  await gw.stop();
  await echo.close();
});

const refused = test.macro(async (t, request: Message, code: grpc.status, message: RegExp) => {
  const { client } = await shared;
  const res = await client.call('ModelInfer', request);
  t.is(res.code, code, res.details);
  t.regex(res.details, message);
  // The process keeps serving: a good call right after.
  t.is((await client.call('ModelInfer', iris())).code, grpc.status.OK);
});

test('unknown model: NOT_FOUND', refused, iris({ model_name: 'nope' }), grpc.status.NOT_FOUND, /^unknown model 'nope'$/);
test('unknown version: NOT_FOUND', refused, iris({ model_version: '7' }), grpc.status.NOT_FOUND, /^model 'iris' has no version '7' \(versions: 1, 2\)$/);
test(
  'wrong datatype: INVALID_ARGUMENT naming the input and both datatypes',
  refused,
  iris({ inputs: [{ name: 'input', datatype: 'FP64', shape: [1, 4] }], raw_input_contents: [Buffer.alloc(32)] }),
  grpc.status.INVALID_ARGUMENT,
  /^input 'input': datatype FP64 does not match the model's FP32$/,
);
test(
  'raw_input_contents of the wrong byte length: INVALID_ARGUMENT with the sizes',
  refused,
  iris({ raw_input_contents: [Buffer.alloc(12)] }),
  grpc.status.INVALID_ARGUMENT,
  /^input 'input': raw_input_contents\[0\] has 12 bytes, expected 16 \(4 elements of shape \[1,4\] × 4 bytes for FP32\)$/,
);
test(
  'contents and raw_input_contents together: INVALID_ARGUMENT',
  refused,
  iris({ inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: ROW } }] }),
  grpc.status.INVALID_ARGUMENT,
  /^input 'input' has contents while raw_input_contents is used; send every input one way or the other$/,
);
test(
  'typed contents with the wrong element count: INVALID_ARGUMENT',
  refused,
  { model_name: 'iris', inputs: [{ name: 'input', datatype: 'FP32', shape: [2, 4], contents: { fp32_contents: ROW } }] },
  grpc.status.INVALID_ARGUMENT,
  /contents.fp32_contents has 4 elements, expected 8/,
);
test(
  'an unknown requested output: INVALID_ARGUMENT',
  refused,
  iris({ outputs: [{ name: 'logits' }] }),
  grpc.status.INVALID_ARGUMENT,
  /^output 'logits': model 'iris' has no such output/,
);
test(
  'an oversized message: RESOURCE_EXHAUSTED naming server.maxBodyBytes',
  refused,
  iris({ raw_input_contents: [Buffer.alloc(70 * 1024)] }),
  grpc.status.RESOURCE_EXHAUSTED,
  /^Received message larger than max \(\d+ vs 65536\)$/,
);

test('malformed protobuf: INVALID_ARGUMENT with the decoder’s reason, not INTERNAL', async (t) => {
  const { gw, client } = await shared;
  const raw = new grpc.Client(gw.grpc!.address, grpc.credentials.createInsecure());
  t.teardown(() => raw.close());
  const garbage = Buffer.from([0x2a, 0x0a, 0x01]); // field 5 (inputs) declaring 10 bytes, holding 1
  const err = await new Promise<grpc.ServiceError>((resolve) => {
    raw.makeUnaryRequest(
      '/inference.GRPCInferenceService/ModelInfer',
      (b: Buffer) => b,
      (b: Buffer) => b,
      garbage,
      (e) => resolve(e!),
    );
  });
  t.is(err.code, grpc.status.INVALID_ARGUMENT, err.details);
  t.regex(err.details, /^the ModelInferRequest message cannot be decoded: /);
  t.is((await client.call('ServerLive', {})).code, grpc.status.OK);
  // An unknown method is grpc-js's UNIMPLEMENTED.
  const unknown = await new Promise<grpc.ServiceError>((resolve) => {
    raw.makeUnaryRequest(
      '/inference.GRPCInferenceService/RepositoryIndex',
      (b: Buffer) => b,
      (b: Buffer) => b,
      Buffer.alloc(0),
      (e) => resolve(e!),
    );
  });
  t.is(unknown.code, grpc.status.UNIMPLEMENTED);
});

const echoCall = (model: string): Message => ({
  model_name: model,
  inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4] }],
  raw_input_contents: [rawFp32(ROW)],
});

test('no deadline from the caller: the model’s timeoutMs applies (DEADLINE_EXCEEDED), and the remote got it as its deadline', async (t) => {
  const { client, echo } = await shared;
  const started = Date.now();
  const res = await client.call('ModelInfer', echoCall('echo'), { metadata: { 'x-request-id': 'deadline-0' } });
  t.is(res.code, grpc.status.DEADLINE_EXCEEDED);
  t.is(res.details, "model 'echo' did not answer within its deadline of 150 ms");
  t.true(Date.now() - started < 290, 'answered at the model deadline, not when the remote would have');
  const call = echo.calls.find((c) => c.metadata['x-request-id'] === 'deadline-0')!;
  t.truthy(call.deadlineInMs);
  t.true(call.deadlineInMs! <= 150 && call.deadlineInMs! > 50, `the remote's deadline: ${call.deadlineInMs} ms`);
  for (let i = 0; i < 50 && !call.cancelled; i++) await new Promise((r) => setTimeout(r, 10));
  t.true(call.cancelled, 'the remote call was cancelled, not left running');
});

test('the caller’s deadline, when it comes first, is the one applied and sent on; the request id reaches the remote', async (t) => {
  const { client, echo } = await shared;
  const res = await client.call('ModelInfer', echoCall('slow'), { deadlineMs: 100, metadata: { 'x-request-id': 'deadline-1' } });
  t.is(res.code, grpc.status.DEADLINE_EXCEEDED);
  const call = echo.calls.find((c) => c.metadata['x-request-id'] === 'deadline-1')!;
  t.true(call.deadlineInMs! <= 100, `the remote's deadline: ${call.deadlineInMs} ms`);
  t.is(call.metadata['x-request-id'], 'deadline-1');
  // With time enough the slow remote answers.
  t.like(await client.call('ModelInfer', echoCall('slow'), { deadlineMs: 5_000 }), {
    code: grpc.status.OK,
    response: { model_name: 'slow', model_version: '1' },
  });
});

test.serial(
  'a caller’s own deadline is the caller’s: thirty calls that run out of their 50 ms leave the version’s breaker closed for everyone else',
  async (t) => {
    const { gw, client } = await shared;
    const before = gw.guards.get('slow', '1')!.snapshot().breaker;
    // One after another: no concurrency cap is involved, only whether each failure counts (30 > volumeThreshold 20).
    const codes = new Set<number>();
    for (let i = 0; i < 30; i++) codes.add((await client.call('ModelInfer', echoCall('slow'), { deadlineMs: 50 })).code);
    t.deepEqual([...codes], [grpc.status.DEADLINE_EXCEEDED]);
    const after = gw.guards.get('slow', '1')!.snapshot().breaker;
    t.is(after.state, 'closed');
    t.is(after.window.failures, before.window.failures, 'none of them counted as the backend’s failure');
    t.like(await client.call('ModelInfer', echoCall('slow'), { deadlineMs: 5_000 }), { code: grpc.status.OK });
  },
);
