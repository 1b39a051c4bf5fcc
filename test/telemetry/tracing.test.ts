// The span tree of one request: server span continuing the caller's traceparent, a span per stage, a client span per
// upstream call whose context the backend receives, and the shadow copy as its own trace linked to the primary, whose
// remote backend receives the shadow's own client span as parent.

import test from 'ava';
import { SpanKind } from '@opentelemetry/api';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { startTracing } from '../../src/telemetry/tracing.js';
import { IRIS_ROW, irisRequest, postJson, startTestGateway } from '../helpers/gateway.js';
import { startMirroringToRecorders } from '../helpers/oip-recorder.js';

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
