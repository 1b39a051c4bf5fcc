// The span tree of one request: server span continuing the caller's traceparent, a span per stage, a client span per
// upstream call whose context the backend receives, and the shadow copy as its own trace linked to the primary, whose
// remote backend receives the shadow's own client span as parent.

import test, { type ExecutionContext } from 'ava';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { SpanKind } from '@opentelemetry/api';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { startTracing } from '../../src/telemetry/tracing.js';
import { IRIS_ROW, MODELS, gatewayConfig, irisRequest, postJson, startTestGateway } from '../helpers/gateway.js';
import { startMirroringToRecorders, startOipRecorder } from '../helpers/oip-recorder.js';

const exporter = new InMemorySpanExporter();
const tracing = await startTracing({ exporter });
test.after.always(() => tracing.shutdown());

const CALLER_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CALLER_SPAN = '00f067aa0ba902b7';

/** Waits until `predicate` holds over the exported spans (shadow spans end after the reply). */
async function spansWhen(predicate: (spans: ReadableSpan[]) => boolean): Promise<ReadableSpan[]> {
  for (let i = 0; i < 200; i++) {
    const spans = exporter.getFinishedSpans();
    if (predicate(spans)) return spans;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(
    `spans never matched: ${exporter
      .getFinishedSpans()
      .map((s) => s.name)
      .join(', ')}`,
  );
}

test.serial('one request: server → stage spans → client span; each backend sees its own client span as parent; the shadow is linked', async (t) => {
  const { gw, primary: remote, shadow: shadowRemote } = await startMirroringToRecorders(t);
  exporter.reset();

  const res = await postJson(`${gw.url}/v2/models/iris/infer`, irisRequest([IRIS_ROW]), {
    traceparent: `00-${CALLER_TRACE}-${CALLER_SPAN}-01`,
    baggage: 'tenant=acme',
  });
  t.is(res.status, 200);
  const spans = await spansWhen((s) => s.some((x) => x.name === 'shadow iris:2') && s.some((x) => x.name === 'infer iris:2'));
  const byName = (name: string) => {
    const found = spans.filter((s) => s.name === name);
    t.is(found.length, 1, `${name}: ${spans.map((s) => s.name).join(', ')}`);
    return found[0]!;
  };
  const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId;

  // Server span: continues the caller's trace, named by route.
  const server = byName('POST /v2/models/{model}/infer');
  t.is(server.kind, SpanKind.SERVER);
  t.is(server.spanContext().traceId, CALLER_TRACE);
  t.is(parentOf(server), CALLER_SPAN);
  t.is(server.attributes['http.response.status_code'], 200);
  t.is(server.attributes['model_gateway.version'], '1');

  // Stage spans nest in chain order (an onion: each is the parent of the next).
  const chain = ['request-id', 'auth', 'rate-limit:admission', 'route', 'validate', 'rate-limit:routed', 'shadow', 'deadline', 'upstream'];
  const stageSpans = spans.filter((s) => s.name.startsWith('stage ') && s.spanContext().traceId === CALLER_TRACE);
  t.deepEqual(stageSpans.map((s) => s.name.slice(6)).sort(), [...chain].sort());
  let parent = server.spanContext().spanId;
  for (const name of chain) {
    const s = stageSpans.find((x) => x.name === `stage ${name}` && parentOf(x) === parent);
    t.truthy(s, `stage ${name} should be a child of the previous stage`);
    parent = s!.spanContext().spanId;
  }

  // The upstream call is a client span under the upstream stage, and the backend received it as its parent.
  const client = byName('forward iris:1');
  t.is(client.kind, SpanKind.CLIENT);
  t.is(parentOf(client), parent);
  const infers = remote.seen.filter((r) => r.method === 'POST' && r.url.endsWith('/infer'));
  t.is(infers.length, 1, 'the primary remote gets the primary call only');
  t.is(infers[0]?.headers.traceparent, `00-${CALLER_TRACE}-${client.spanContext().spanId}-01`);

  // The shadow copy is its own trace, linked to the primary's shadow stage, with the shadow backend call under it.
  const shadow = byName('shadow iris:2');
  t.not(shadow.spanContext().traceId, CALLER_TRACE);
  t.is(shadow.links.length, 1);
  t.is(shadow.links[0]!.context.traceId, CALLER_TRACE);
  t.is(shadow.links[0]!.context.spanId, stageSpans.find((s) => s.name === 'stage shadow')!.spanContext().spanId);
  const shadowCall = byName('infer iris:2');
  t.is(shadowCall.kind, SpanKind.CLIENT);
  t.is(parentOf(shadowCall), shadow.spanContext().spanId);
  t.is(shadowCall.spanContext().traceId, shadow.spanContext().traceId);
  // The remote shadow receives the shadow's own client span as parent (not the caller's or the primary's), marked.
  const shadowInfers = shadowRemote.seen.filter((r) => r.method === 'POST' && r.url.endsWith('/infer'));
  t.is(shadowInfers.length, 1);
  t.is(shadowInfers[0]!.url, '/v2/models/iris/versions/2/infer');
  t.is(shadowInfers[0]!.headers.traceparent, `00-${shadowCall.spanContext().traceId}-${shadowCall.spanContext().spanId}-01`);
  t.is(shadowInfers[0]!.headers['x-shadow'], 'true');
  t.is(shadowInfers[0]!.headers.baggage, 'tenant=acme', 'the caller’s baggage travels with the copy, as with the primary');
  t.is(infers[0]?.headers.baggage, 'tenant=acme');
});

test.serial('without a caller traceparent the server span starts a new trace; client errors do not mark spans as errors', async (t) => {
  const gw = await startTestGateway();
  t.teardown(() => gw.stop());
  exporter.reset();
  const res = await postJson(`${gw.url}/v2/models/iris/infer`, { inputs: [] });
  t.is(res.status, 400);
  const spans = await spansWhen((s) => s.some((x) => x.name === 'POST /v2/models/{model}/infer'));
  const server = spans.find((x) => x.name === 'POST /v2/models/{model}/infer')!;
  t.is(server.parentSpanContext, undefined);
  t.is(server.status.code, 0); // UNSET: a 400 is an answer, not a failure
  const validate = spans.find((x) => x.name === 'stage validate')!;
  t.is(validate.attributes['model_gateway.error.code'], 'GW_ERR_INVALID_REQUEST');
  t.is(validate.status.code, 0);
});

/** An OIP server with the Iris signature whose inference answers 500, or answers only after `delayMs`. */
async function startRemote(t: ExecutionContext, behaviour: { fail: true } | { delayMs: number }): Promise<string> {
  const recorder = await startOipRecorder();
  t.teardown(() => recorder.close());
  const server = http.createServer((req, res) => {
    if (req.method === 'POST') {
      req.resume();
      if ('fail' in behaviour) {
        res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":"inference failed"}');
        return;
      }
      setTimeout(() => res.writeHead(503).end(), behaviour.delayMs);
      return;
    }
    // Metadata and readiness as the recorder answers them.
    void fetch(`${recorder.url}${req.url}`).then(async (r) => res.writeHead(r.status, { 'content-type': 'application/json' }).end(await r.text()));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const portOf = (url: string) => Number(new URL(url).port);

test.serial('remote calls are HTTP client spans with the OpenTelemetry HTTP attributes; the server span has url.scheme and server.*', async (t) => {
  const { gw, primary, shadow } = await startMirroringToRecorders(t);
  exporter.reset();
  t.is((await postJson(`${gw.url}/v2/models/iris/infer`, irisRequest([IRIS_ROW]))).status, 200);
  const spans = await spansWhen((s) => s.some((x) => x.name === 'infer iris:2') && s.some((x) => x.name === 'forward iris:1'));
  const one = (name: string) => spans.find((s) => s.name === name)!;

  const forward = one('forward iris:1');
  t.is(forward.kind, SpanKind.CLIENT);
  t.like(forward.attributes, {
    'http.request.method': 'POST',
    'server.address': '127.0.0.1',
    'server.port': portOf(primary.url),
    'url.full': `${primary.url}/v2/models/iris/versions/1/infer`,
    'url.scheme': 'http',
    'http.response.status_code': 200,
  });
  t.false('error.type' in forward.attributes);
  // The shadow copy's call (tensors in, tensors out) gets the same, its status code from the HTTP exchange itself.
  const copy = one('infer iris:2');
  t.is(copy.kind, SpanKind.CLIENT);
  t.like(copy.attributes, {
    'http.request.method': 'POST',
    'server.address': '127.0.0.1',
    'server.port': portOf(shadow.url),
    'url.full': `${shadow.url}/v2/models/iris/versions/2/infer`,
    'http.response.status_code': 200,
  });

  const server = one('POST /v2/models/{model}/infer');
  t.like(server.attributes, {
    'http.request.method': 'POST',
    'url.scheme': 'http',
    'server.address': '127.0.0.1',
    'server.port': gw.port,
    'network.protocol.version': '1.1',
    'http.response.status_code': 200,
  });
  t.false('error.type' in server.attributes);
});

test.serial('failures carry error.type: a remote 5xx its status code, a refused connection the gateway error code, on client and server spans', async (t) => {
  const failing = await startRemote(t, { fail: true });
  const gw = await startTestGateway(
    gatewayConfig({
      models: {
        failing: { versions: { '1': { backend: { kind: 'http', url: failing, model: 'iris', version: '1', retry: { enabled: false } } } } },
        dead: { versions: { '1': { backend: { kind: 'http', url: 'http://127.0.0.1:1', probeIntervalMs: 60_000, retry: { enabled: false } } } } },
      },
    }),
  );
  t.teardown(() => gw.stop());
  exporter.reset();
  t.is((await postJson(`${gw.url}/v2/models/failing/infer`, irisRequest(), { 'x-forwarded-proto': 'https' })).status, 500);
  t.is((await postJson(`${gw.url}/v2/models/dead/infer`, irisRequest())).status, 503);
  const spans = await spansWhen((s) => s.filter((x) => x.kind === SpanKind.SERVER).length === 2);
  const one = (name: string) => spans.find((s) => s.name === name)!;
  const [failingServer, deadServer] = spans.filter((s) => s.kind === SpanKind.SERVER);

  const answered500 = one('forward failing:1');
  t.like(answered500.attributes, { 'http.response.status_code': 500, 'error.type': '500', 'url.full': `${failing}/v2/models/iris/versions/1/infer` });
  t.is(answered500.status.code, 2); // ERROR
  t.like(failingServer!.attributes, { 'http.response.status_code': 500, 'error.type': '500', 'url.scheme': 'https' });
  t.is(failingServer!.status.code, 2);

  const refused = one('forward dead:1');
  t.like(refused.attributes, { 'server.address': '127.0.0.1', 'server.port': 1, 'error.type': 'GW_ERR_BACKEND_UNREACHABLE' });
  t.false('http.response.status_code' in refused.attributes, 'no response was received');
  t.like(deadServer!.attributes, { 'http.response.status_code': 503, 'error.type': 'GW_ERR_BACKEND_UNREACHABLE', 'url.scheme': 'http' });
  // The stage that failed says why, too.
  t.is(
    spans.find((s) => s.name === 'stage upstream' && s.spanContext().traceId === deadServer!.spanContext().traceId)!.attributes['error.type'],
    'GW_ERR_BACKEND_UNREACHABLE',
  );
});

test.serial('an in-process run is an internal span without HTTP attributes; a shadow abandoned at its timeout has error.type timeout', async (t) => {
  const slow = await startRemote(t, { delayMs: 2_000 });
  const gw = await startTestGateway(
    gatewayConfig({
      models: {
        iris: {
          defaultVersion: '1',
          versions: {
            '1': { backend: { kind: 'onnx', path: path.join(MODELS, 'iris-v1.onnx') } },
            '2': { backend: { kind: 'http', url: slow, model: 'iris', version: '1' } },
          },
          shadow: { targets: [{ version: '2', percent: 100 }], timeoutMs: 50 },
        },
      },
    }),
  );
  t.teardown(() => gw.stop());
  exporter.reset();
  t.is((await postJson(`${gw.url}/v2/models/iris/infer`, irisRequest())).status, 200);
  const spans = await spansWhen((s) => s.some((x) => x.name === 'shadow iris:2'));
  const run = spans.find((s) => s.name === 'infer iris:1')!;
  t.is(run.kind, SpanKind.INTERNAL);
  t.false(Object.keys(run.attributes).some((k) => k.startsWith('http.') || k.startsWith('url.') || k.startsWith('server.')));
  const shadowSpan = spans.find((s) => s.name === 'shadow iris:2')!;
  t.is(shadowSpan.attributes['error.type'], 'timeout');
  t.is(shadowSpan.status.code, 2);
});
