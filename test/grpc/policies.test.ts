// The gateway's policies over gRPC, through the same chain as REST: auth from the authorization metadata, rate limits
// with retry information, sticky routing and x-model-version, shadow comparison across backend kinds, breakers with
// fallback, and the protocol label on metrics.

import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { irisDisagreementRows, IRIS_ROWS } from '../helpers/iris.js';
import { MODELS, gatewayConfig, irisModels, postJson, startTestGateway } from '../helpers/gateway.js';
import { ecKey, tokenFor } from '../helpers/jwt.js';
import { grpcAddressFrom, oipGrpcClient, rawFp32, type Message, type OipGrpcClient } from '../helpers/oip-grpc-client.js';
import { spawnServeModel } from '../helpers/serve-model.js';
import type { RunningGateway } from '../../src/app/gateway.js';

const infer = (row: readonly number[] = IRIS_ROWS[0]!, model = 'iris'): Message => ({
  model_name: model,
  inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4] }],
  raw_input_contents: [rawFp32(row)],
});

async function clientOf(t: import('ava').ExecutionContext, gw: RunningGateway): Promise<OipGrpcClient> {
  t.teardown(() => gw.stop());
  const client = oipGrpcClient(gw.grpc!.address);
  t.teardown(() => client.close());
  return client;
}

const ISSUER = 'https://issuer.test';
const key = ecKey('k1');
const now = Math.floor(Date.now() / 1000);
const token = (scope: string) => tokenFor(key, { iss: ISSUER, aud: 'model-gateway', sub: 'alice', scope, iat: now, exp: now + 600 });

test('auth from the authorization metadata: none or a bad token UNAUTHENTICATED with the challenge, a missing scope PERMISSION_DENIED', async (t) => {
  const gw = await startTestGateway({
    ...gatewayConfig({ models: irisModels() }),
    auth: { realm: 'grpc-test', issuers: [{ issuer: ISSUER, audiences: ['model-gateway'], algorithms: ['ES256'], jwks: { keys: [key.jwk] } }] },
  });
  // Model auth on top of the issuer: inference needs iris:infer.
  const client = await clientOf(t, gw);
  const none = await client.call('ModelInfer', infer());
  t.is(none.code, grpc.status.UNAUTHENTICATED);
  t.is(none.details, "model 'iris' needs a bearer token");
  t.is(none.trailers.get('www-authenticate')[0], 'Bearer realm="grpc-test"');
  const bad = await client.call('ModelInfer', infer(), { metadata: { authorization: 'Bearer not.a.jwt' } });
  t.is(bad.code, grpc.status.UNAUTHENTICATED);
  t.regex(String(bad.trailers.get('www-authenticate')[0]), /error="invalid_token"/);
  // Two credentials in one entry (Node's HTTP/2 cannot even send two authorization entries: a single-value header).
  const twice = await client.call('ModelInfer', infer(), { metadata: { authorization: `Bearer ${token('x')}, Bearer ${token('x')}` } });
  t.is(twice.code, grpc.status.UNAUTHENTICATED, 'two credentials are refused as over REST');
  t.regex(String(twice.trailers.get('www-authenticate')[0]), /error="invalid_request"/);
  const ok = await client.call('ModelInfer', infer(), { metadata: { authorization: `Bearer ${token('anything')}` } });
  t.is(ok.code, grpc.status.OK, ok.details);
  // Health and server RPCs need no token, as REST's health endpoints.
  t.like(await client.call('ServerReady', {}), { code: 0, response: { ready: true } });
});

test('a model scope missing from the token is PERMISSION_DENIED; metadata reads follow the metadata policy', async (t) => {
  const gw = await startTestGateway({
    ...gatewayConfig({
      models: { iris: { ...(irisModels().iris as object), auth: { infer: { scopes: ['iris:infer'] }, metadata: { scopes: ['iris:read'] } } } },
    }),
    auth: { realm: 'grpc-test', issuers: [{ issuer: ISSUER, audiences: ['model-gateway'], algorithms: ['ES256'], jwks: { keys: [key.jwk] } }] },
  });
  const client = await clientOf(t, gw);
  const denied = await client.call('ModelInfer', infer(), { metadata: { authorization: `Bearer ${token('iris:read')}` } });
  t.is(denied.code, grpc.status.PERMISSION_DENIED);
  t.regex(String(denied.trailers.get('www-authenticate')[0]), /error="insufficient_scope", scope="iris:infer"/);
  t.is(
    (await client.call('ModelMetadata', { name: 'iris' }, { metadata: { authorization: `Bearer ${token('iris:infer')}` } })).code,
    grpc.status.PERMISSION_DENIED,
  );
  t.is((await client.call('ModelMetadata', { name: 'iris' }, { metadata: { authorization: `Bearer ${token('iris:read')}` } })).code, grpc.status.OK);
  t.is((await client.call('ModelInfer', infer(), { metadata: { authorization: `Bearer ${token('iris:infer')}` } })).code, grpc.status.OK);
});

/** google.rpc.Status with RetryInfo, parsed here from the published message definitions, not the gateway's encoder. */
const richStatus = protobuf.parse(
  `
  syntax = "proto3";
  package google.rpc;
  message Any { string type_url = 1; bytes value = 2; }
  message Status { int32 code = 1; string message = 2; repeated Any details = 3; }
  message Duration { int64 seconds = 1; int32 nanos = 2; }
  message RetryInfo { Duration retry_delay = 1; }
`,
  { keepCase: true },
).root;

test('rate limits: RESOURCE_EXHAUSTED with retry-after, grpc-retry-pushback-ms and a RetryInfo; RateLimit fields in the metadata', async (t) => {
  let clock = 1_700_000_000_000;
  const gw = await startTestGateway(
    { ...gatewayConfig({ models: irisModels() }), rateLimits: { rules: [{ name: 'per-tenant', key: { header: 'x-tenant' }, ratePerSecond: 0.5, burst: 1 }] } },
    { now: () => clock },
  );
  const client = await clientOf(t, gw);
  const first = await client.call('ModelInfer', infer(), { metadata: { 'x-tenant': 'acme' } });
  t.is(first.code, 0, first.details);
  t.is(first.headers.get('ratelimit-policy')[0], '"per-tenant";q=1;w=2');
  const refused = await client.call('ModelInfer', infer(), { metadata: { 'x-tenant': 'acme' } });
  t.is(refused.code, grpc.status.RESOURCE_EXHAUSTED);
  t.regex(refused.details, /rate limit 'per-tenant' exceeded; retry in 2 s/);
  t.is(refused.trailers.get('retry-after')[0], '2');
  t.is(refused.trailers.get('grpc-retry-pushback-ms')[0], '2000');
  const status = richStatus.lookupType('google.rpc.Status').decode(refused.trailers.get('grpc-status-details-bin')[0] as Buffer) as unknown as {
    code: number;
    message: string;
    details: { type_url: string; value: Uint8Array }[];
  };
  t.is(status.code, grpc.status.RESOURCE_EXHAUSTED);
  t.is(status.message, refused.details);
  t.is(status.details[0]!.type_url, 'type.googleapis.com/google.rpc.RetryInfo');
  const retry = richStatus.lookupType('google.rpc.RetryInfo').decode(status.details[0]!.value) as unknown as {
    retry_delay: { seconds: { toNumber(): number } | number };
  };
  t.is(Number(retry.retry_delay.seconds), 2);
  // Another tenant has its own bucket; the refused tenant passes again once the bucket refilled.
  t.is((await client.call('ModelInfer', infer(), { metadata: { 'x-tenant': 'other' } })).code, 0);
  clock += 2_000;
  t.is((await client.call('ModelInfer', infer(), { metadata: { 'x-tenant': 'acme' } })).code, 0);
});

test('sticky routing and x-model-version over metadata: one caller always gets the same version, the same one as over REST', async (t) => {
  const models = { iris: { ...(irisModels().iris as object), weights: { '1': 50, '2': 50 }, sticky: { header: 'x-user' }, override: { enabled: true } } };
  const gw = await startTestGateway(gatewayConfig({ models }));
  const client = await clientOf(t, gw);
  const seen = new Set<string>();
  for (let user = 0; user < 12; user++) {
    const versions = new Set<string>();
    for (let i = 0; i < 3; i++) {
      const res = await client.call('ModelInfer', infer(), { metadata: { 'x-user': `user-${user}` } });
      versions.add(String(res.response!.model_version));
    }
    t.is(versions.size, 1, `user-${user} stays on one version`);
    const rest = await postJson(
      `${gw.url}/v2/models/iris/infer`,
      { inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], data: IRIS_ROWS[0] }] },
      { 'x-user': `user-${user}` },
    );
    t.is(rest.body.model_version, [...versions][0], 'REST and gRPC pick the same version for the same key');
    seen.add([...versions][0]!);
  }
  t.deepEqual([...seen].sort(), ['1', '2'], 'both versions serve someone');
  const pinned = await client.call('ModelInfer', infer(), { metadata: { 'x-user': 'user-0', 'x-model-version': '2' } });
  t.is(pinned.response!.model_version, '2');
  t.is(pinned.headers.get('x-model-version')[0], '2');
  // The message's model_version wins over everything, as a version in the REST path does.
  const named = await client.call('ModelInfer', { ...infer(), model_version: '1' }, { metadata: { 'x-model-version': '2' } });
  t.is(named.response!.model_version, '1');
});

test('shadow comparison across kinds: gRPC calls served by an http version, mirrored to a grpc version; the admin statistics count them', async (t) => {
  const runtime = await spawnServeModel(['--model-dir', MODELS, '--port', '0', '--grpc-port', '0', '--log-level', 'warn']);
  t.teardown(() => runtime.stop('SIGKILL'));
  const gw = await startTestGateway(
    gatewayConfig({
      admin: { token: 'admin-token-for-grpc-tests' },
      models: {
        iris: {
          defaultVersion: '1',
          versions: {
            '1': { backend: { kind: 'http', url: runtime.url, version: '1' } },
            '2': { backend: { kind: 'grpc', target: grpcAddressFrom(runtime.stderr()), version: '2' } },
          },
          shadow: { targets: [{ version: '2', percent: 100 }], compare: { probabilities: { mode: 'classification' } } },
        },
      },
    }),
  );
  const client = await clientOf(t, gw);
  const rows = Array.from({ length: 20 }, (_, i) => 65 + i); // rows 65–84 hold two on which v1 and v2 disagree
  for (const row of rows) {
    const res = await client.call('ModelInfer', infer(IRIS_ROWS[row]!));
    t.is(res.response!.model_version, '1');
  }
  const disagreeing = rows.filter((r) => irisDisagreementRows().includes(r)).length;
  t.true(disagreeing > 0);
  type Pair = { compared: number; agreed: number; mirrored: number; errors: { shadow: number } };
  let pair: Pair | undefined;
  for (let i = 0; i < 200 && (pair?.compared ?? 0) < rows.length; i++) {
    const res = await fetch(`${gw.admin!.url}/admin/models/iris/shadow`, { headers: { authorization: 'Bearer admin-token-for-grpc-tests' } });
    pair = ((await res.json()) as { pairs: Pair[] }).pairs[0];
    await new Promise((r) => setTimeout(r, 10));
  }
  t.like(pair, { mirrored: rows.length, compared: rows.length, agreed: rows.length - disagreeing, errors: { shadow: 0 } });
});

test('breaker and fallback: when the grpc remote dies its breaker opens and the fallback version answers, named in the metadata', async (t) => {
  const runtime = await spawnServeModel(['--model-dir', MODELS, '--port', '0', '--grpc-port', '0', '--log-level', 'warn']);
  t.teardown(() => runtime.stop('SIGKILL'));
  const gw = await startTestGateway(
    gatewayConfig({
      models: {
        iris: {
          defaultVersion: '2',
          fallback: '1',
          versions: {
            '1': { backend: { kind: 'onnx', path: `${MODELS}/iris-v1.onnx` } },
            '2': {
              backend: { kind: 'grpc', target: grpcAddressFrom(runtime.stderr()), version: '2' },
              breaker: { volumeThreshold: 2, errorThresholdPercent: 50, resetTimeoutMs: 60_000 },
            },
          },
        },
      },
    }),
  );
  const client = await clientOf(t, gw);
  t.is((await client.call('ModelInfer', infer())).response!.model_version, '2');
  await runtime.stop('SIGKILL');
  const codes: number[] = [];
  let answered: Awaited<ReturnType<OipGrpcClient['call']>> | undefined;
  for (let i = 0; i < 10 && answered === undefined; i++) {
    const res = await client.call('ModelInfer', infer());
    codes.push(res.code);
    if (res.code === 0) answered = res;
  }
  t.true(
    codes.slice(0, -1).every((c) => c === grpc.status.UNAVAILABLE),
    `failures before the breaker opened are UNAVAILABLE: ${codes.join(',')}`,
  );
  t.truthy(answered, `the fallback answered: ${codes.join(',')}`);
  t.is(answered!.response!.model_version, '1');
  t.is(answered!.headers.get('x-model-fallback')[0], '2');
  t.is(answered!.headers.get('x-model-version')[0], '1');
});

test('metrics count gRPC calls under protocol="grpc", with the status class of the same answer over HTTP', async (t) => {
  const gw = await startTestGateway(gatewayConfig());
  const client = await clientOf(t, gw);
  await client.call('ModelInfer', infer());
  await client.call('ModelInfer', infer());
  await client.call('ModelInfer', { ...infer(), inputs: [{ name: 'input', datatype: 'FP64', shape: [1, 4] }] });
  const text = await (await fetch(`${gw.admin!.url}/metrics`)).text();
  t.regex(text, /^model_gateway_requests_total\{model="iris",version="1",operation="infer",status_class="2xx",protocol="grpc"\} 2$/m);
  t.regex(text, /^model_gateway_requests_total\{model="iris",version="1",operation="infer",status_class="4xx",protocol="grpc"\} 1$/m);
  t.notRegex(text, /protocol="http"\} [1-9]/);
});
