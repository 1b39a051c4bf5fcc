// envoy/*.yaml decode strictly as Envoy v3 Bootstraps (real protos), broken fixtures fail, and the files agree with the gateway config.

import test from 'ava';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { loadConfig } from '../../src/config/load.js';
import { configSchema } from '../../src/config/schema.js';
import { loadEnvoyProtos, validateEnvoyObject, validateEnvoyYaml } from '../helpers/envoy-validate.js';
import { ROOT } from '../helpers/gateway.js';

const root = loadEnvoyProtos();
const HCM = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const EXT_AUTHZ = 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz';
const PROTOCOL_OPTIONS = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';
const ROUTER = 'envoy.extensions.filters.http.router.v3.Router';
const HCM_TYPE = HCM.slice('type.googleapis.com/'.length);
/** Every bootstrap in envoy/, with the types its strict decoding must resolve; a test keeps this list complete. */
const ENVOY_TYPES: Record<string, string[]> = {
  'envoy.yaml': [HCM_TYPE, ROUTER, PROTOCOL_OPTIONS, 'envoy.extensions.access_loggers.stream.v3.StdoutAccessLog'],
  'envoy-ext-authz.yaml': [
    HCM_TYPE,
    ROUTER,
    PROTOCOL_OPTIONS,
    'envoy.extensions.filters.http.ext_authz.v3.ExtAuthz',
    'envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute',
  ],
  'envoy-ext-authz-grpc.yaml': [HCM_TYPE, ROUTER, 'envoy.extensions.filters.http.ext_authz.v3.ExtAuthz'],
};
const ENVOY_FILES = Object.keys(ENVOY_TYPES);
/** Files in envoy/ that are not Envoy configs. */
const NOT_CONFIG = ['README.md'];

type Json = Record<string, unknown>;
const obj = (v: unknown): Json => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Json) : {});
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const at = (v: unknown, ...keys: (string | number)[]): unknown => keys.reduce<unknown>((node, k) => (typeof k === 'number' ? list(node)[k] : obj(node)[k]), v);

/** "31s" / "0.5s" → ms (the only form these files use; the strict validator already refused any other). */
function durationMs(value: unknown): number {
  const m = /^(\d+)(?:\.(\d+))?s$/.exec(String(value));
  if (m === null) throw new Error(`not a duration: ${String(value)}`);
  return Number(m[1]) * 1000 + Number(`0.${m[2] ?? '0'}`) * 1000;
}

async function envoyDoc(file: string): Promise<Json> {
  return obj(parseYaml(await readFile(path.join(ROOT, 'envoy', file), 'utf8')));
}

function hcmOf(doc: Json): Json {
  const filters = list(at(doc, 'static_resources', 'listeners', 0, 'filter_chains', 0, 'filters'));
  return obj(filters.map((f) => at(f, 'typed_config')).find((c) => at(c, '@type') === HCM));
}

function clusterOf(doc: Json, name: string): Json {
  return obj(list(at(doc, 'static_resources', 'clusters')).find((c) => at(c, 'name') === name));
}

/** The route Envoy picks for a path, following prefix and safe_regex matches in order (what these files use). */
function routeFor(doc: Json, requestPath: string): Json {
  const routes = list(at(hcmOf(doc), 'route_config', 'virtual_hosts', 0, 'routes'));
  const found = routes.find((r) => {
    const match = obj(at(r, 'match'));
    if (typeof match.prefix === 'string') return requestPath.startsWith(match.prefix);
    if (typeof match.path === 'string') return requestPath === match.path;
    const regex = at(match, 'safe_regex', 'regex');
    return typeof regex === 'string' && new RegExp(regex).test(requestPath);
  });
  if (found === undefined) throw new Error(`no route for ${requestPath}`);
  return obj(found);
}

const validFile = test.macro({
  async exec(t, file: string, expectedTypes: string[]) {
    const result = validateEnvoyYaml(root, await readFile(path.join(ROOT, 'envoy', file), 'utf8'));
    t.deepEqual(result.errors, []);
    t.deepEqual(result.warnings, [], 'no deprecated fields');
    for (const type of expectedTypes) t.true(result.types.includes(type), `${type} was resolved`);
  },
  title: (_p, file: string) => `envoy/${file} decodes strictly as a v3 Bootstrap`,
});

for (const [file, types] of Object.entries(ENVOY_TYPES)) test(validFile, file, types);

test('every file in envoy/ is a bootstrap the strict decoding and the consistency checks cover', async (t) => {
  const files = (await readdir(path.join(ROOT, 'envoy'))).filter((f) => !NOT_CONFIG.includes(f)).sort();
  t.deepEqual(files, [...ENVOY_FILES].sort(), 'add a new envoy/ file to ENVOY_TYPES so it is validated');
});

const brokenFixture = test.macro({
  async exec(t, file: string, expected: RegExp) {
    const result = validateEnvoyYaml(root, await readFile(path.join(ROOT, 'test/fixtures/envoy', file), 'utf8'));
    t.is(result.errors.length, 1, result.errors.join('\n'));
    t.regex(result.errors[0] ?? '', expected);
  },
  title: (_p, file: string) => `the broken fixture ${file} is refused`,
});

test(brokenFixture, 'unknown-field.yaml', /routes\[0\]\.route\.retries: unknown field 'retries' in envoy\.config\.route\.v3\.RouteAction/);
test(brokenFixture, 'wrong-type.yaml', /clusters\[0\]\.connect_timeout: expected a duration/);
test(brokenFixture, 'unknown-type.yaml', /http_filters\[0\]\.typed_config: unknown @type envoy\.config\.filter\.http\.router\.v3\.Router/);
test(brokenFixture, 'unknown-enum.yaml', /codec_type: unknown value "AUTOMATIC"/);

test('the fixtures are one defect away from a valid config', async (t) => {
  const result = validateEnvoyYaml(root, await readFile(path.join(ROOT, 'test/fixtures/envoy/base.yaml'), 'utf8'));
  t.deepEqual(result.errors, []);
});

const strictRule = test.macro({
  exec(t, value: Json, expected: RegExp) {
    const errors = validateEnvoyObject(root, value).errors;
    t.is(errors.length, 1, errors.join('\n'));
    t.regex(errors[0] ?? '', expected);
  },
  title: (title) => `strict proto3 JSON: ${title ?? ''}`,
});

const cluster = (extra: Json): Json => ({ static_resources: { clusters: [{ name: 'c', ...extra }] } });
const anyIn = (packed: Json): Json => cluster({ typed_extension_protocol_options: { x: packed } });
test(
  'a string where a message is expected',
  strictRule,
  { static_resources: { clusters: ['c'] } },
  /clusters\[0\]: expected an object \(envoy\.config\.cluster\.v3\.Cluster\)/,
);
test('a list where a single value is expected', strictRule, cluster({ connect_timeout: ['1s'] }), /connect_timeout: expected a duration/);
test('integers out of range', strictRule, cluster({ per_connection_buffer_limit_bytes: -1 }), /out of uint32 range/);
test('a fractional integer', strictRule, cluster({ per_connection_buffer_limit_bytes: 1.5 }), /expected an integer \(uint32\)/);
test('a string where a bool is expected', strictRule, cluster({ respect_dns_ttl: 'yes' }), /respect_dns_ttl: expected true or false/);
test(
  'two members of one oneof',
  strictRule,
  cluster({ type: 'STATIC', cluster_type: { name: 'x', typed_config: { '@type': 'type.googleapis.com/google.protobuf.Struct', value: {} } } }),
  /same oneof 'cluster_discovery_type'/,
);
test('the same field under both JSON names', strictRule, cluster({ connect_timeout: '1s', connectTimeout: '2s' }), /given twice/);
test('a Struct that is not an object', strictRule, cluster({ metadata: { filter_metadata: { x: 5 } } }), /expected an object \(Struct\)/);
test('an Any without @type', strictRule, anyIn({ common_http_protocol_options: {} }), /needs "@type"/);
test(
  'an Any with a bad type URL',
  strictRule,
  anyIn({ '@type': 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions' }),
  /"@type" must be type\.googleapis\.com\//,
);
test(
  'an unknown field inside an Any',
  strictRule,
  anyIn({ '@type': `type.googleapis.com/${PROTOCOL_OPTIONS}`, auto_config: {}, idle_timeout: '1s' }),
  /unknown field 'idle_timeout' in envoy\.extensions\.upstreams\.http\.v3\.HttpProtocolOptions/,
);
test(
  'a wrapped well-known type without "value"',
  strictRule,
  anyIn({ '@type': 'type.googleapis.com/google.protobuf.Duration', seconds: 1 }),
  /exactly one key, "value"/,
);
test('a bad Duration inside an Any', strictRule, anyIn({ '@type': 'type.googleapis.com/google.protobuf.Duration', value: '5m' }), /value: expected a duration/);
test(
  'an unknown type inside a TypedStruct',
  strictRule,
  anyIn({ '@type': 'type.googleapis.com/xds.type.v3.TypedStruct', type_url: 'type.googleapis.com/no.Such', value: {} }),
  /unknown TypedStruct type_url no\.Such/,
);
test(
  'an unknown field inside a TypedStruct',
  strictRule,
  anyIn({ '@type': 'type.googleapis.com/xds.type.v3.TypedStruct', type_url: `type.googleapis.com/${PROTOCOL_OPTIONS}`, value: { auto_config: {}, nope: 1 } }),
  /unknown field 'nope'/,
);
test(
  'a required message missing (validate.rules)',
  strictRule,
  cluster({ health_checks: [{ timeout: '1s', interval: '5s', unhealthy_threshold: 2, healthy_threshold: 1 }] }),
  /requires one of 'http_health_check'/,
);
test('a string shorter than min_len (validate.rules)', strictRule, { static_resources: { clusters: [{ name: '' }] } }, /name: must be at least 1 character/);

test('an unknown enum number is refused, a known one accepted', (t) => {
  t.regex(validateEnvoyObject(root, cluster({ type: 99 })).errors[0] ?? '', /unknown number 99/);
  t.deepEqual(validateEnvoyObject(root, cluster({ type: 0 })).errors, []);
});

test('YAML duplicate keys are refused', (t) => {
  t.regex(validateEnvoyYaml(root, 'admin: {}\nadmin: {}\n').errors[0] ?? '', /\(yaml\)/);
});

// Consistency with the gateway's own config: the example file, with the schema's defaults filled in.
const gatewayConfig = loadConfig(path.join(ROOT, 'examples/gateway.yaml'), { PATH: process.env.PATH ?? '' }).then((l) => l.config);

const consistent = test.macro({
  async exec(t, file: string) {
    const config = await gatewayConfig;
    const doc = await envoyDoc(file);
    const deadlineMs = Math.max(...Object.values(config.models).map((m) => m.timeoutMs));

    // Inference: the route outlives every model's deadline (so the gateway's JSON 504 wins) and never retries.
    for (const model of Object.keys(config.models)) {
      for (const p of [`/v2/models/${model}/infer`, `/v2/models/${model}/versions/1/infer`]) {
        const route = obj(routeFor(doc, p).route);
        t.is(route.cluster, 'model_gateway', p);
        t.true(durationMs(route.timeout) > deadlineMs, `${p}: route timeout ${String(route.timeout)} must exceed the gateway deadline ${deadlineMs} ms`);
        const retries = at(route, 'retry_policy', 'num_retries');
        t.true(retries === undefined || retries === 0, `${p} is never retried`);
      }
    }
    t.is(at(hcmOf(doc), 'route_config', 'virtual_hosts', 0, 'retry_policy'), undefined, 'no virtual-host retry policy');

    // Upstream: Envoy closes idle pooled connections before the gateway's keep-alive does (no 503 UC races).
    const upstream = clusterOf(doc, 'model_gateway');
    const idle = at(upstream, 'typed_extension_protocol_options', PROTOCOL_OPTIONS, 'common_http_protocol_options', 'idle_timeout');
    t.true(durationMs(idle) < config.server.keepAliveTimeoutMs, `idle_timeout ${String(idle)} < keepAliveTimeoutMs ${config.server.keepAliveTimeoutMs}`);
    t.is(at(upstream, 'load_assignment', 'endpoints', 0, 'lb_endpoints', 0, 'endpoint', 'address', 'socket_address', 'port_value'), config.server.port);
    // Outlier detection ejects only for local-origin failures (connect failures, resets, timeouts): the gateway's own
    // 503/504 answers (load shedding, an open breaker, its deadline) must not eject it (envoy/README.md).
    const outlier = obj(at(upstream, 'outlier_detection'));
    t.is(outlier.split_external_local_origin_errors, true, 'local-origin failures are counted apart from HTTP answers');
    t.true(typeof outlier.consecutive_local_origin_failure === 'number' && outlier.consecutive_local_origin_failure > 0, 'consecutive_local_origin_failure');
    t.true(
      outlier.enforcing_consecutive_local_origin_failure === undefined || Number(outlier.enforcing_consecutive_local_origin_failure) > 0,
      'local-origin ejection is enforced',
    );
    // Envoy's defaults enforce consecutive 5xx and success-rate ejection (100 %): both must be switched off explicitly.
    t.is(outlier.enforcing_consecutive_5xx, 0, 'no ejection on consecutive 5xx');
    t.is(outlier.enforcing_consecutive_gateway_failure, 0, 'no ejection on consecutive 502/503/504');
    t.is(outlier.enforcing_success_rate, 0, 'no ejection on the HTTP success rate');
    t.true(outlier.enforcing_failure_percentage === undefined || outlier.enforcing_failure_percentage === 0, 'no ejection on the HTTP failure percentage');
    t.truthy(at(upstream, 'circuit_breakers', 'thresholds', 0, 'max_connections'), 'connection limit');

    t.is(at(doc, 'admin', 'address', 'socket_address', 'address'), '127.0.0.1', 'admin on loopback only');
  },
  title: (_p, file: string) => `envoy/${file} agrees with examples/gateway.yaml (deadline, retries, idle timeout, port, admin)`,
});
for (const file of ENVOY_FILES) test(consistent, file);

test('envoy/envoy.yaml takes the OIP over gRPC to server.grpc.port over HTTP/2, never retries inference, health-checks over gRPC', async (t) => {
  const config = await gatewayConfig;
  const doc = await envoyDoc('envoy.yaml');
  const listener = list(at(doc, 'static_resources', 'listeners')).find((l) => at(l, 'name') === 'ingress_grpc');
  const hcm = obj(list(at(listener, 'filter_chains', 0, 'filters')).map((f) => at(f, 'typed_config'))[0]);
  t.is(hcm.codec_type, 'HTTP2', 'gRPC clients speak HTTP/2');
  const routes = list(at(hcm, 'route_config', 'virtual_hosts', 0, 'routes'));
  const infer = obj(
    at(
      routes.find((r) => at(r, 'match', 'path') === '/inference.GRPCInferenceService/ModelInfer'),
      'route',
    ),
  );
  t.is(infer.cluster, 'model_gateway_grpc');
  const deadlineMs = Math.max(...Object.values(config.models).map((m) => m.timeoutMs));
  t.true(durationMs(infer.timeout) > deadlineMs, 'the route outlives the gateway deadline');
  t.is(at(infer, 'retry_policy', 'num_retries'), 0, 'ModelInfer is never retried');
  const cluster = clusterOf(doc, 'model_gateway_grpc');
  t.is(at(cluster, 'load_assignment', 'endpoints', 0, 'lb_endpoints', 0, 'endpoint', 'address', 'socket_address', 'port_value'), config.server.grpc.port);
  t.deepEqual(at(cluster, 'typed_extension_protocol_options', PROTOCOL_OPTIONS, 'explicit_http_config', 'http2_protocol_options'), {});
  t.deepEqual(at(cluster, 'health_checks', 0, 'grpc_health_check'), { service_name: '' });
  t.is(at(cluster, 'outlier_detection', 'enforcing_consecutive_5xx'), 0);
});

const extAuthzConsistent = test.macro({
  async exec(t, file: string, kind: 'http' | 'grpc') {
    const config = await gatewayConfig;
    const defaults = configSchema.parse({ models: { m: { versions: { '1': { backend: { kind: 'onnx', path: '/m.onnx' } } } } } }).extAuthz;
    const extAuthz = config.extAuthz ?? defaults;
    const doc = await envoyDoc(file);
    const filters = list(at(hcmOf(doc), 'http_filters'));
    const names = filters.map((f) => at(f, 'name'));
    t.deepEqual(names, ['envoy.filters.http.ext_authz', 'envoy.filters.http.router'], 'ext_authz runs before the router');
    const filter = obj(at(filters[0], 'typed_config'));
    t.is(filter['@type'], EXT_AUTHZ);
    t.is(filter.failure_mode_allow, false, 'fails closed');
    if (kind === 'http') {
      const service = obj(filter.http_service);
      t.is(service.path_prefix, extAuthz.http.pathPrefix);
      const port = at(
        clusterOf(doc, String(at(service, 'server_uri', 'cluster'))),
        'load_assignment',
        'endpoints',
        0,
        'lb_endpoints',
        0,
        'endpoint',
        'address',
        'socket_address',
        'port_value',
      );
      t.is(port, extAuthz.http.port);
      const upstreamAllowed = list(at(service, 'authorization_response', 'allowed_upstream_headers', 'patterns')).map((p) => at(p, 'exact'));
      const identity = config.auth?.identityHeaders ?? { subject: 'x-auth-subject', issuer: 'x-auth-issuer' };
      for (const header of [identity.subject, identity.issuer]) t.true(upstreamAllowed.includes(header), `${header} is copied to the upstream`);
      const clientAllowed = list(at(service, 'authorization_response', 'allowed_client_headers', 'patterns')).map((p) => at(p, 'exact'));
      for (const header of ['www-authenticate', 'retry-after', 'content-type'])
        t.true(clientAllowed.includes(header), `${header} reaches the client on a denial`);
    } else {
      const cluster = clusterOf(doc, String(at(filter, 'grpc_service', 'envoy_grpc', 'cluster_name')));
      t.is(at(cluster, 'load_assignment', 'endpoints', 0, 'lb_endpoints', 0, 'endpoint', 'address', 'socket_address', 'port_value'), extAuthz.grpc.port);
      t.truthy(at(cluster, 'typed_extension_protocol_options', PROTOCOL_OPTIONS, 'explicit_http_config', 'http2_protocol_options'), 'gRPC needs HTTP/2');
    }
    // Health probes skip the check (they carry no token; the gateway serves health without auth).
    const health = routeFor(doc, '/v2/health/ready');
    t.is(at(health, 'typed_per_filter_config', 'envoy.filters.http.ext_authz', 'disabled'), true);
  },
  title: (_p, file: string) => `envoy/${file} points ext_authz at the gateway's ext_authz defaults`,
});
test(extAuthzConsistent, 'envoy-ext-authz.yaml', 'http');
test(extAuthzConsistent, 'envoy-ext-authz-grpc.yaml', 'grpc');
