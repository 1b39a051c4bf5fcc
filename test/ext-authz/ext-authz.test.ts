// The ext_authz HTTP and gRPC services, called as Envoy calls them (gRPC messages from the real Envoy protos): allow, deny, malformed.

import test from 'ava';
import http from 'node:http';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { configSchema, type GatewayConfig } from '../../src/config/schema.js';
import { EXTERNAL_AUTH_PROTO, PROTO_LOADER_OPTIONS, type CheckResponseMessage } from '../../src/ext-authz/grpc.js';
import { stripPathPrefix } from '../../src/ext-authz/http.js';
import { startExtAuthz, type RunningExtAuthz } from '../../src/ext-authz/start.js';
import { envoyProtoDirs } from '../helpers/envoy-validate.js';
import { MemoryStore } from '../../src/ratelimit/memory-store.js';
import { createLogger } from '../../src/telemetry/log.js';
import { ecKey, tokenFor } from '../helpers/jwt.js';

const key = ecKey('k1');
const otherKey = ecKey('k1');
const NOW = 1_700_000_000_000;
const ISS = 'https://idp.example';
const claims = (over: Record<string, unknown> = {}) => ({ iss: ISS, aud: 'gw', sub: 'alice', scope: 'iris:infer', exp: NOW / 1000 + 600, ...over });
const bearer = (over: Record<string, unknown> = {}, signer = key) => `Bearer ${tokenFor(signer, claims(over))}`;

function configWith(extra: Record<string, unknown> = {}): GatewayConfig {
  const onnx = { backend: { kind: 'onnx', path: '/m.onnx' } };
  return configSchema.parse({
    auth: { issuers: [{ issuer: ISS, audiences: ['gw'], algorithms: ['ES256'], jwks: { keys: [key.jwk] } }] },
    // One bucket per subject: 2 requests at once, refilled at 1 per second (the clock never moves in these tests).
    rateLimits: { rules: [{ name: 'per-caller', key: { claim: 'sub' }, ratePerSecond: 1, burst: 2 }] },
    models: {
      iris: { versions: { '1': onnx, '2': onnx }, auth: { infer: { scopes: ['iris:infer'] } } },
      // Naming a version needs iris:pin, whether in the path or with the header (one decision, as on the data plane).
      pinned: { versions: { '1': onnx, '2': onnx }, override: { enabled: true, requiredScope: 'iris:pin' } },
      public: { versions: { '1': onnx }, auth: { allowAnonymous: true } },
    },
    extAuthz: { http: { enabled: true, port: 0 }, grpc: { enabled: true, port: 0 } },
    ...extra,
  });
}

// --- Envoy's side of the wire -------------------------------------------------------------------------------------

interface Answer {
  status: number;
  /** Headers for the upstream on allow (HTTP: all 200 headers, Envoy filters them by allowed_upstream_headers). */
  upstream: Record<string, string>;
  /** Headers to remove from the upstream request on allow. */
  remove: string[];
  /** Headers for the client (deny), or to add to the client's response (allow). */
  client: Record<string, string>;
  body: string;
}

/** Envoy's HTTP check: the client's method and path under path_prefix, Host, Authorization and allowed headers, no body. */
function httpCheck(svc: RunningExtAuthz, method: string, path: string, headers: [string, string][]): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${svc.http!.url}/ext-authz${path}`, { method, headers: [['host', 'models.example'], ...headers].flat(), agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const all: Record<string, string> = {};
        for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') all[k] = v;
        const remove = (all['x-envoy-auth-headers-to-remove'] ?? '')
          .split(',')
          .map((s) => s.trim())
          .filter((s) => s !== '');
        resolve({ status: res.statusCode ?? 0, upstream: all, remove, client: all, body: Buffer.concat(chunks).toString('utf8') });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

type CheckClient = grpc.Client & {
  Check(request: unknown, callback: (err: grpc.ServiceError | null, response?: CheckResponseMessage) => void): grpc.ClientUnaryCall;
};

/** A client of envoy.service.auth.v3.Authorization built from the real protos in the devDependency (not the vendored copy). */
const definition = protoLoader.loadSync(EXTERNAL_AUTH_PROTO, { ...PROTO_LOADER_OPTIONS, includeDirs: envoyProtoDirs() });

/** envoy.type.v3.StatusCode, name → number, from the real proto (the client decodes enums as names). */
const STATUS_CODES = new Map(
  (definition['envoy.type.v3.StatusCode'] as { type: { value: { name: string; number: number }[] } }).type.value.map((v) => [v.name, v.number]),
);

function grpcClient(svc: RunningExtAuthz): CheckClient {
  const pkg = grpc.loadPackageDefinition(definition) as unknown as { envoy: { service: { auth: { v3: { Authorization: grpc.ServiceClientConstructor } } } } };
  return new pkg.envoy.service.auth.v3.Authorization(svc.grpc!.address, grpc.credentials.createInsecure()) as unknown as CheckClient;
}

/** A CheckRequest as Envoy builds it: attributes.request.http with lowercase headers (incl. pseudo-headers) and the source. */
function envoyCheckRequest(method: string, path: string, headers: [string, string][]): Record<string, unknown> {
  const map: Record<string, string> = { ':authority': 'models.example', ':method': method, ':path': path };
  for (const [k, v] of headers) map[k] = map[k] === undefined ? v : `${map[k]},${v}`;
  return {
    attributes: {
      source: { address: { socket_address: { address: '10.1.2.3', port_value: 51000 } } },
      destination: { address: { socket_address: { address: '10.1.2.4', port_value: 10000 } } },
      request: {
        time: { seconds: String(NOW / 1000) },
        http: { id: '42', method, path, host: 'models.example', scheme: 'http', protocol: 'HTTP/1.1', headers: map },
      },
    },
  };
}

function fromCheckResponse(res: CheckResponseMessage): Answer {
  const pairs = (list: { header: { key: string; value: string } }[] | undefined) => Object.fromEntries((list ?? []).map((h) => [h.header.key, h.header.value]));
  if (res.ok_response !== undefined) {
    return {
      status: res.status.code === 0 ? 200 : -1,
      upstream: pairs(res.ok_response.headers),
      remove: res.ok_response.headers_to_remove ?? [],
      client: pairs(res.ok_response.response_headers_to_add),
      body: '',
    };
  }
  const denied = res.denied_response!;
  return { status: STATUS_CODES.get(String(denied.status.code)) ?? -1, upstream: {}, remove: [], client: pairs(denied.headers), body: denied.body };
}

async function grpcCheck(client: CheckClient, request: unknown): Promise<Answer & { rpcCode: number; statusCodeName: unknown }> {
  const res = await new Promise<CheckResponseMessage>((resolve, reject) => client.Check(request, (err, r) => (err ? reject(err) : resolve(r!))));
  const denied = res.denied_response as unknown as { status: { code: unknown } } | undefined;
  return { ...fromCheckResponse(res), rpcCode: res.status.code, statusCodeName: denied?.status.code };
}

// --- fixture ------------------------------------------------------------------------------------------------------

async function start(config = configWith()) {
  const store = new MemoryStore(1000, () => NOW);
  const svc = await startExtAuthz(config, { currentConfig: () => config, log: createLogger('silent'), rateLimitStore: store, now: () => NOW });
  const client = svc.grpc ? grpcClient(svc) : undefined;
  return {
    svc,
    store,
    get client(): CheckClient {
      if (client === undefined) throw new Error('the gRPC service is not enabled');
      return client;
    },
    closeClient: () => client?.close(),
  };
}

type Transport = 'http' | 'grpc';

async function check(ctx: Awaited<ReturnType<typeof start>>, transport: Transport, method: string, path: string, headers: [string, string][]): Promise<Answer> {
  return transport === 'http' ? httpCheck(ctx.svc, method, path, headers) : grpcCheck(ctx.client, envoyCheckRequest(method, path, headers));
}

interface Case {
  method?: string;
  path: string;
  headers: [string, string][];
  status: number;
  /** Exact headers expected for the upstream (allow) or the client (deny), besides any others. */
  upstream?: Record<string, string>;
  client?: Record<string, string>;
  remove?: string[];
  error?: RegExp;
  /** Checks to make first (same subject), e.g. to empty a bucket. */
  before?: number;
}

const INFER = '/v2/models/iris/infer';
const CASES: Record<string, Case> = {
  'allows a valid token with the scope, identity headers for the upstream': {
    path: INFER,
    headers: [
      ['authorization', bearer()],
      ['x-auth-subject', 'root'],
    ],
    status: 200,
    upstream: { 'x-auth-subject': 'alice', 'x-auth-issuer': ISS },
    client: { ratelimit: '"per-caller";r=1;t=1', 'ratelimit-policy': '"per-caller";q=2;w=2' },
    remove: [],
  },
  'allows a versioned path with a query string': { path: '/v2/models/iris/versions/2/infer?x=1', headers: [['authorization', bearer()]], status: 200 },
  'denies a missing token with 401 and a bare challenge': {
    path: INFER,
    headers: [],
    status: 401,
    client: { 'www-authenticate': 'Bearer realm="model-gateway"', 'content-type': 'application/json' },
    error: /needs a bearer token/,
  },
  'denies a token signed by another key with 401 invalid_token': {
    path: INFER,
    headers: [['authorization', bearer({}, otherKey)]],
    status: 401,
    client: { 'www-authenticate': 'Bearer realm="model-gateway", error="invalid_token"' },
    error: /signature is invalid/,
  },
  'denies an expired token with 401 invalid_token': {
    path: INFER,
    headers: [['authorization', bearer({ exp: NOW / 1000 - 3600 })]],
    status: 401,
    client: { 'www-authenticate': 'Bearer realm="model-gateway", error="invalid_token"' },
    error: /expired/,
  },
  'denies a token without the scope with 403 insufficient_scope': {
    path: INFER,
    headers: [['authorization', bearer({ scope: 'other' })]],
    status: 403,
    client: { 'www-authenticate': 'Bearer realm="model-gateway", error="insufficient_scope", scope="iris:infer"' },
    error: /needs the scope 'iris:infer'/,
  },
  'denies two Authorization headers with 400 invalid_request': {
    path: INFER,
    headers: [
      ['authorization', bearer()],
      ['authorization', bearer()],
    ],
    status: 400,
    client: { 'www-authenticate': 'Bearer realm="model-gateway", error="invalid_request"' },
  },
  'denies a caller over its rate limit with 429 and Retry-After': {
    path: INFER,
    headers: [['authorization', bearer({ sub: 'bob' })]],
    before: 2,
    status: 429,
    client: { 'retry-after': '1', ratelimit: '"per-caller";r=0;t=1' },
    error: /rate limit 'per-caller' exceeded/,
  },
  'refuses an unknown path with the gateway 404': { path: '/admin/secrets', headers: [['authorization', bearer()]], status: 404, error: /no such endpoint/ },
  'refuses an unknown model with 404, as the data plane would (no name slips past the policy of the model it reaches)': {
    path: '/v2/models/nope/infer',
    headers: [['authorization', bearer()]],
    status: 404,
    error: /unknown model 'nope'/,
  },
  'refuses a case variant of a model name with 404 (names are case-sensitive)': {
    path: '/v2/models/IRIS/infer',
    headers: [['authorization', bearer({ scope: '' })]],
    status: 404,
  },
  'decodes a percent-encoded model name before authorising it: ir%69s is iris and needs its scope': {
    path: '/v2/models/ir%69s/infer',
    headers: [['authorization', bearer({ scope: 'other' })]],
    status: 403,
    error: /needs the scope 'iris:infer'/,
  },
  'refuses a name that cannot be canonicalised (an encoded slash) with 400': {
    path: '/v2/models/iris%2F..%2Fpublic/infer',
    headers: [['authorization', bearer()]],
    status: 400,
    error: /not a valid name/,
  },
  'refuses an unknown version with 404': {
    path: '/v2/models/iris/versions/9/infer',
    headers: [['authorization', bearer()]],
    status: 404,
  },
  'a version in the path needs the override scope, like the header': {
    path: '/v2/models/pinned/versions/2/infer',
    headers: [['authorization', bearer()]],
    status: 403,
    error: /choosing a version of model 'pinned' in the path needs the scope 'iris:pin'/,
  },
  'x-model-version needs the override scope': {
    path: '/v2/models/pinned/infer',
    headers: [
      ['authorization', bearer()],
      ['x-model-version', '2'],
    ],
    status: 403,
    error: /with x-model-version needs the scope 'iris:pin'/,
  },
  'a caller with the override scope may name a version either way': {
    path: '/v2/models/pinned/versions/2/infer',
    headers: [['authorization', bearer({ scope: 'iris:pin' })]],
    status: 200,
  },
  'look-alikes of identity headers (x_auth_subject) are removed by their own names': {
    path: INFER,
    headers: [
      ['authorization', bearer()],
      ['x_auth_subject', 'root'],
      ['X_Auth_Issuer', 'evil'],
    ],
    status: 200,
    upstream: { 'x-auth-subject': 'alice' },
    remove: ['x_auth_subject', 'x_auth_issuer'],
  },
  'denies an unknown model to an anonymous caller': { path: '/v2/models/nope/infer', headers: [], status: 401 },
  'allows health without a token and strips forged identity headers': {
    method: 'GET',
    path: '/v2/health/ready',
    headers: [['x-auth-subject', 'root']],
    status: 200,
    upstream: {},
    remove: ['x-auth-subject', 'x-auth-issuer'],
  },
  'allows an anonymous caller on an allowAnonymous model, forged identity removed': {
    path: '/v2/models/public/infer',
    headers: [['x-auth-subject', 'root']],
    status: 200,
    remove: ['x-auth-subject', 'x-auth-issuer'],
  },
  'checks auth even for a wrong method (the upstream answers 405)': { method: 'GET', path: INFER, headers: [], status: 401 },
};

const decides = test.macro({
  async exec(t, transport: Transport, c: Case) {
    const ctx = await start();
    t.teardown(async () => {
      ctx.closeClient();
      await ctx.svc.close();
    });
    for (let i = 0; i < (c.before ?? 0); i++) t.is((await check(ctx, transport, c.method ?? 'POST', c.path, c.headers)).status, 200, `warm-up check ${i}`);
    const answer = await check(ctx, transport, c.method ?? 'POST', c.path, c.headers);
    t.is(answer.status, c.status, answer.body);
    for (const [k, v] of Object.entries(c.upstream ?? {})) t.is(answer.upstream[k], v, `upstream ${k}`);
    if (c.status === 200 && c.upstream !== undefined && Object.keys(c.upstream).length === 0) {
      t.is(answer.upstream['x-auth-subject'], undefined, 'no identity for an anonymous caller');
    }
    for (const [k, v] of Object.entries(c.client ?? {})) t.is(answer.client[k], v, `client ${k}`);
    if (c.remove !== undefined) t.deepEqual(answer.remove, c.remove);
    if (c.status !== 200) {
      const body = JSON.parse(answer.body) as { error?: unknown };
      t.is(typeof body.error, 'string', 'denials carry {"error": ...}');
      if (c.error) t.regex(String(body.error), c.error);
    }
  },
  title: (_p, transport: Transport, c: Case) => `${transport}: ${Object.entries(CASES).find(([, v]) => v === c)?.[0] ?? ''}`,
});

for (const c of Object.values(CASES)) {
  test(decides, 'http', c);
  test(decides, 'grpc', c);
}

test('grpc: the CheckResponse carries gRPC status codes and the HTTP status enum Envoy reads', async (t) => {
  const ctx = await start();
  t.teardown(async () => {
    ctx.closeClient();
    await ctx.svc.close();
  });
  const denied = await grpcCheck(ctx.client, envoyCheckRequest('POST', INFER, []));
  t.is(denied.rpcCode, 16, 'UNAUTHENTICATED');
  t.is(denied.statusCodeName, 'Unauthorized', 'type.v3.StatusCode name on the wire');
  const limited = await grpcCheck(ctx.client, envoyCheckRequest('POST', INFER, [['authorization', bearer({ scope: 'none' })]]));
  t.is(limited.rpcCode, 7, 'PERMISSION_DENIED');
  const ok = await grpcCheck(ctx.client, envoyCheckRequest('POST', INFER, [['authorization', bearer()]]));
  t.is(ok.rpcCode, 0);
});

const malformedGrpc = test.macro({
  async exec(t, request: unknown, expected: RegExp) {
    const ctx = await start();
    t.teardown(async () => {
      ctx.closeClient();
      await ctx.svc.close();
    });
    const answer = await grpcCheck(ctx.client, request);
    t.is(answer.status, 400);
    t.is(answer.rpcCode, 3, 'INVALID_ARGUMENT');
    t.regex((JSON.parse(answer.body) as { error: string }).error, expected);
    // The service keeps answering.
    t.is((await grpcCheck(ctx.client, envoyCheckRequest('POST', INFER, [['authorization', bearer()]]))).status, 200);
  },
  title: (title) => `grpc: a malformed check is denied with 400 (${title ?? ''})`,
});
test('no attributes', malformedGrpc, {}, /no attributes\.request\.http/);
test('no http request', malformedGrpc, { attributes: { request: {} } }, /no attributes\.request\.http/);
test('no path', malformedGrpc, { attributes: { request: { http: { method: 'POST', headers: {} } } } }, /no request path/);
test('no method', malformedGrpc, { attributes: { request: { http: { path: INFER, headers: {} } } } }, /no valid request method/);

test('grpc: headers sent as header_map (encode_raw_headers) are read too', async (t) => {
  const ctx = await start();
  t.teardown(async () => {
    ctx.closeClient();
    await ctx.svc.close();
  });
  const request = envoyCheckRequest('POST', INFER, []);
  const httpReq = (request.attributes as { request: { http: Record<string, unknown> } }).request.http;
  delete httpReq.headers;
  httpReq.header_map = { headers: [{ key: 'authorization', raw_value: Buffer.from(bearer()) }] };
  const answer = await grpcCheck(ctx.client, request);
  t.is(answer.status, 200);
  t.is(answer.upstream['x-auth-subject'], 'alice');
});

test('http: a check outside the path prefix is a 400, and the service keeps answering', async (t) => {
  const ctx = await start();
  t.teardown(async () => {
    ctx.closeClient();
    await ctx.svc.close();
  });
  const res = await fetch(`${ctx.svc.http!.url}/v2/models/iris/infer`, { method: 'POST' });
  t.is(res.status, 400);
  t.regex(((await res.json()) as { error: string }).error, /path prefix '\/ext-authz'/);
  t.is((await httpCheck(ctx.svc, 'POST', INFER, [['authorization', bearer()]])).status, 200);
});

test('the HTTP and gRPC services charge the same bucket per caller (one store, one policy)', async (t) => {
  const ctx = await start();
  t.teardown(async () => {
    ctx.closeClient();
    await ctx.svc.close();
  });
  const headers: [string, string][] = [['authorization', bearer({ sub: 'carol' })]];
  t.is((await httpCheck(ctx.svc, 'POST', INFER, headers)).status, 200);
  t.is((await grpcCheck(ctx.client, envoyCheckRequest('POST', INFER, headers))).status, 200);
  t.is((await httpCheck(ctx.svc, 'POST', INFER, headers)).status, 429);
  t.is(ctx.store.stats.denied, 1);
});

test('extAuthz.rateLimits false: checks authenticate but never charge a bucket', async (t) => {
  const ctx = await start(configWith({ extAuthz: { http: { enabled: true, port: 0 }, grpc: { enabled: false }, rateLimits: false } }));
  t.teardown(async () => {
    ctx.closeClient();
    await ctx.svc.close();
  });
  t.is(ctx.svc.grpc, undefined);
  for (let i = 0; i < 4; i++) t.is((await httpCheck(ctx.svc, 'POST', INFER, [['authorization', bearer()]])).status, 200);
  t.is((await httpCheck(ctx.svc, 'POST', INFER, [])).status, 401);
});

test('a reload changes the policy checks apply (currentConfig is read per check)', async (t) => {
  let config = configWith();
  const svc = await startExtAuthz(config, {
    currentConfig: () => config,
    log: createLogger('silent'),
    rateLimitStore: new MemoryStore(1000, () => NOW),
    now: () => NOW,
  });
  t.teardown(() => svc.close());
  t.is((await httpCheck(svc, 'POST', INFER, [['authorization', bearer({ scope: 'other' })]])).status, 403);
  const raw = configWith();
  config = { ...raw, models: { ...raw.models, iris: { ...raw.models.iris!, auth: { ...raw.models.iris!.auth!, infer: { scopes: ['other'], claims: {} } } } } };
  t.is((await httpCheck(svc, 'POST', INFER, [['authorization', bearer({ scope: 'other' })]])).status, 200);
});

const prefix = test.macro({
  exec(t, path: string, configured: string, expected: string | undefined) {
    t.is(stripPathPrefix(path, configured), expected);
  },
  title: (_p, path: string, configured: string) => `path prefix '${configured}' on ${path}`,
});
test(prefix, '/ext-authz/v2/models/iris/infer', '/ext-authz', '/v2/models/iris/infer');
test(prefix, '/ext-authz/v2?x=1', '/ext-authz', '/v2?x=1');
test(prefix, '/ext-authzz/v2', '/ext-authz', undefined);
test(prefix, '/ext-authz', '/ext-authz', undefined);
test(prefix, '/v2/health/live', '', '/v2/health/live');
test(prefix, '/a/b/v2', '/a/b', '/v2');

test('extAuthz defaults: both services off, loopback, ports 9191/9192, prefix /ext-authz, rate limits charged', (t) => {
  const config = configSchema.parse({ models: { m: { versions: { '1': { backend: { kind: 'onnx', path: '/m.onnx' } } } } } });
  t.deepEqual(config.extAuthz, {
    http: { enabled: false, host: '127.0.0.1', port: 9191, pathPrefix: '/ext-authz' },
    grpc: { enabled: false, host: '127.0.0.1', port: 9192 },
    rateLimits: true,
  });
  const bad = configSchema.safeParse({ models: config.models, extAuthz: { http: { pathPrefix: 'no-slash' }, grpc: { tls: true } } });
  t.false(bad.success);
  const paths = bad.success ? [] : bad.error.issues.map((i) => i.path.join('.'));
  t.true(paths.includes('extAuthz.http.pathPrefix'));
  t.true(paths.includes('extAuthz.grpc'), 'unknown keys are rejected');
});
