// End to end over gRPC: a real gateway process and a real `serve-model --grpc-port` process, driven by a client built
// from the vendored proto. Every RPC, every backend kind (in-process ONNX, `grpc`, `http`), both ways across protocols,
// and the answers equal REST's bit for bit.

import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { IRIS_ROWS } from '../helpers/iris.js';
import { MODELS, gatewayConfig, getJson, postJson, spawnGateway, writeConfigFile, type GatewayProcess } from '../helpers/gateway.js';
import { fromRawFp32, grpcAddressFrom, oipGrpcClient, rawFp32, type Message, type OipGrpcClient } from '../helpers/oip-grpc-client.js';
import { spawnServeModel, type ServeModelProcess } from '../helpers/serve-model.js';

type Output = { name: string; datatype: string; shape: string[]; contents: Record<string, unknown[]> | null };

interface Setup {
  gateway: GatewayProcess;
  runtime: ServeModelProcess;
  /** Through the gateway. */
  client: OipGrpcClient;
  /** Straight to serve-model's gRPC port. */
  direct: OipGrpcClient;
}

// One gateway and one runtime for the whole file: each test only reads.
let setup: Promise<Setup> | undefined;
function shared(_t: import('ava').ExecutionContext): Promise<Setup> {
  setup ??= (async () => {
    const runtime = await spawnServeModel(['--model-dir', MODELS, '--port', '0', '--grpc-port', '0', '--log-level', 'warn']);
    const remote = grpcAddressFrom(runtime.stderr());
    const file = await writeConfigFile(
      gatewayConfig({
        models: {
          iris: {
            defaultVersion: '1',
            versions: {
              '1': { backend: { kind: 'onnx', path: `${MODELS}/iris-v1.onnx` } },
              '2': { backend: { kind: 'grpc', target: remote, version: '2' } },
              '3': { backend: { kind: 'http', url: runtime.url, version: '2' } },
            },
          },
        },
      }),
    );
    const gateway = await spawnGateway(file);
    return { gateway, runtime, client: oipGrpcClient(grpcAddressFrom(gateway.stderr())), direct: oipGrpcClient(remote) };
  })();
  return setup;
}
test.after.always(async () => {
  if (!setup) return;
  const s = await setup;
  s.client.close();
  s.direct.close();
  await Promise.all([s.gateway.stop('SIGKILL'), s.runtime.stop('SIGKILL')]);
});

const ROWS = IRIS_ROWS.map((row) => row.map(Math.fround));
const rawRequest = (version: string): Message => ({
  model_name: 'iris',
  model_version: version,
  id: `rows-${version}`,
  inputs: [{ name: 'input', datatype: 'FP32', shape: [ROWS.length, 4] }],
  raw_input_contents: [rawFp32(ROWS.flat())],
});
const typedRequest = (version: string): Message => ({
  model_name: 'iris',
  model_version: version,
  inputs: [{ name: 'input', datatype: 'FP32', shape: [ROWS.length, 4], contents: { fp32_contents: ROWS.flat() } }],
});

/** The probabilities' bytes and the labels of a gRPC answer, raw or typed. */
function answerOf(response: Message): { probabilities: Buffer; labels: string[] } {
  const outputs = response.outputs as Output[];
  const raw = response.raw_output_contents as Buffer[];
  const at = (name: string) => outputs.findIndex((o) => o.name === name);
  if (raw.length > 0) {
    const labels = new BigInt64Array(Uint8Array.from(raw[at('label')]!).buffer);
    return { probabilities: Buffer.from(raw[at('probabilities')]!), labels: [...labels].map(String) };
  }
  return {
    probabilities: Buffer.from(new Float32Array(outputs[at('probabilities')]!.contents!.fp32_contents as number[]).buffer),
    labels: outputs[at('label')]!.contents!.int64_contents as string[],
  };
}

/** The same from a REST JSON answer: JSON numbers of FP32 values read back as FP32 are the same bits. */
function restAnswerOf(body: Record<string, unknown>): { probabilities: Buffer; labels: string[] } {
  const outputs = body.outputs as { name: string; data: number[] }[];
  const data = (name: string) => outputs.find((o) => o.name === name)!.data;
  return { probabilities: Buffer.from(new Float32Array(data('probabilities')).buffer), labels: data('label').map(String) };
}

test('server RPCs: live, ready and metadata, through the gateway and from serve-model itself', async (t) => {
  const { client, direct } = await shared(t);
  for (const c of [client, direct]) {
    t.like(await c.call('ServerLive', {}), { code: grpc.status.OK, response: { live: true } });
    t.like(await c.call('ServerReady', {}), { code: grpc.status.OK, response: { ready: true } });
    t.like(await c.call('ServerMetadata', {}), { code: grpc.status.OK, response: { name: 'model-gateway', extensions: [] } });
  }
});

test('ModelReady and ModelMetadata of every version, whichever kind serves it; an unknown version is NOT_FOUND', async (t) => {
  const { client } = await shared(t);
  for (const version of ['', '1', '2', '3']) t.like(await client.call('ModelReady', { name: 'iris', version }), { code: 0, response: { ready: true } });
  for (const version of ['', '2', '3']) {
    const meta = await client.call('ModelMetadata', { name: 'iris', version });
    t.is(meta.code, 0, meta.details);
    t.like(meta.response, { name: 'iris', versions: ['1', '2', '3'] });
    // 64-bit shapes arrive as exact decimal strings; -1 is the batch dimension read from the ONNX model.
    t.deepEqual(meta.response!.inputs, [{ name: 'input', datatype: 'FP32', shape: ['-1', '4'] }]);
    t.deepEqual((meta.response!.outputs as { name: string }[]).map((o) => o.name).sort(), ['label', 'probabilities']);
  }
  const missing = await client.call('ModelReady', { name: 'iris', version: '9' });
  t.is(missing.code, grpc.status.NOT_FOUND);
  t.is(missing.details, "model 'iris' has no version '9' (versions: 1, 2, 3)");
  t.is((await client.call('ModelMetadata', { name: 'nope', version: '' })).code, grpc.status.NOT_FOUND);
});

const kinds: [string, string][] = [
  ['1', 'in-process ONNX'],
  ['2', 'a grpc remote (serve-model --grpc-port)'],
  ['3', 'an http remote (gRPC in, REST out)'],
];
for (const [version, kind] of kinds) {
  test(`ModelInfer on ${kind}: raw and typed contents answer alike, and equal the REST answer bit for bit`, async (t) => {
    const { client, gateway } = await shared(t);
    const raw = await client.call('ModelInfer', rawRequest(version));
    t.is(raw.code, 0, raw.details);
    t.like(raw.response, { model_name: 'iris', model_version: version, id: `rows-${version}` });
    t.is(raw.headers.get('x-model-version')[0], version, 'the answering version is in the response metadata too');
    t.regex(String(raw.headers.get('x-request-id')[0]), /^[0-9a-f-]{36}$/);
    // Raw in, raw out; typed in, typed out.
    t.is((raw.response!.raw_output_contents as Buffer[]).length, 2);
    const typed = await client.call('ModelInfer', typedRequest(version));
    t.is(typed.code, 0, typed.details);
    t.deepEqual(typed.response!.raw_output_contents, []);
    const rest = await postJson(`${gateway.url}/v2/models/iris/versions/${version}/infer`, {
      inputs: [{ name: 'input', datatype: 'FP32', shape: [ROWS.length, 4], data: ROWS }],
    });
    t.is(rest.status, 200);
    const expected = restAnswerOf(rest.body);
    for (const answer of [answerOf(raw.response!), answerOf(typed.response!)]) {
      t.true(answer.probabilities.equals(expected.probabilities), 'the same float bits');
      t.deepEqual(answer.labels, expected.labels);
    }
    t.is(expected.labels.length, 150);
  });
}

test('the same 150 rows give the same bits straight from serve-model over gRPC and REST, and through the gateway from REST to a grpc version', async (t) => {
  const { client, direct, runtime, gateway } = await shared(t);
  const straight = await direct.call('ModelInfer', rawRequest('2'));
  t.is(straight.code, 0, straight.details);
  const through = await client.call('ModelInfer', rawRequest('2'));
  const restDirect = await postJson(`${runtime.url}/v2/models/iris/versions/2/infer`, {
    inputs: [{ name: 'input', datatype: 'FP32', shape: [150, 4], data: ROWS }],
  });
  // REST in, gRPC out: the gateway decodes the JSON, the grpc backend sends raw contents.
  const restToGrpc = await postJson(`${gateway.url}/v2/models/iris/versions/2/infer`, {
    id: 'j',
    inputs: [{ name: 'input', datatype: 'FP32', shape: [150, 4], data: ROWS }],
  });
  t.is(restToGrpc.status, 200);
  t.like(restToGrpc.body, { model_name: 'iris', model_version: '2', id: 'j' });
  t.is(restToGrpc.headers.get('x-model-version'), '2');
  const reference = answerOf(straight.response!);
  for (const other of [answerOf(through.response!), restAnswerOf(restDirect.body), restAnswerOf(restToGrpc.body)]) {
    t.true(other.probabilities.equals(reference.probabilities));
    t.deepEqual(other.labels, reference.labels);
  }
  t.deepEqual(fromRawFp32((straight.response!.raw_output_contents as Buffer[])[0]!).length, 450);
  // The REST view of the grpc version is the gateway's own: its metadata came over ModelMetadata.
  t.like(await getJson(`${gateway.url}/v2/models/iris/versions/2`), { status: 200, body: { inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 4] }] } });
});

test('grpc.health.v1.Health: the server, each model and each version; unknown names NOT_FOUND for Check, SERVICE_UNKNOWN for Watch', async (t) => {
  const { client } = await shared(t);
  for (const service of ['', 'inference.GRPCInferenceService', 'iris', 'iris/1', 'iris/2', 'iris/3']) {
    t.like(await client.health('Check', { service }), { code: 0, response: { status: 'SERVING' } }, service);
  }
  const unknown = await client.health('Check', { service: 'nope' });
  t.is(unknown.code, grpc.status.NOT_FOUND);
  t.is((await client.health('Check', { service: 'iris/9' })).code, grpc.status.NOT_FOUND);
  const list = await client.health('List', {});
  t.deepEqual(Object.keys(list.response!.statuses as object).sort(), ['', 'inference.GRPCInferenceService', 'iris', 'iris/1', 'iris/2', 'iris/3']);
  const watched = client.watch('iris/2');
  const missing = client.watch('nope');
  for (let i = 0; i < 100 && (watched.statuses.length === 0 || missing.statuses.length === 0); i++) await new Promise((r) => setTimeout(r, 10));
  t.deepEqual(watched.statuses, ['SERVING']);
  t.deepEqual(missing.statuses, ['SERVICE_UNKNOWN']);
  watched.stop();
  missing.stop();
  t.is((await watched.ended).code, grpc.status.CANCELLED);
});
