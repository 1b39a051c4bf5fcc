// Tracing off (no endpoint): the gateway records nothing, yet like any W3C-propagating proxy it passes the caller's
// trace context on unchanged to every remote backend it calls for the request: the primary and each shadow copy.

import test from 'ava';
import { startTracing, tracingEnabled } from '../../src/telemetry/tracing.js';
import { irisRequest, postJson } from '../helpers/gateway.js';
import { startMirroringToRecorders, type OipRecorder, type RecordedRequest } from '../helpers/oip-recorder.js';

// What `model-gateway start` does without an OTLP endpoint: propagators and context manager, no provider.
const tracing = await startTracing({ env: {} });
test.after.always(() => tracing.shutdown());

const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const TRACESTATE = 'vendor=opaque';
const BAGGAGE = 'tenant=acme';

/** The inference calls a recorder received (not its start-up metadata probes), once `count` have arrived. */
async function infersOf(remote: OipRecorder, count: number): Promise<RecordedRequest[]> {
  for (let i = 0; i < 200; i++) {
    const seen = remote.seen.filter((r) => r.method === 'POST' && r.url.endsWith('/infer'));
    if (seen.length >= count) return seen;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`expected ${count} inference calls at ${remote.url}`);
}

test.serial('tracing off: the caller’s traceparent, tracestate and baggage reach the remote primary and the remote shadow unchanged', async (t) => {
  t.false(tracing.enabled);
  t.false(tracingEnabled());
  const { gw, primary, shadow } = await startMirroringToRecorders(t);
  const res = await postJson(`${gw.url}/v2/models/iris/infer`, irisRequest(), { traceparent: TRACEPARENT, tracestate: TRACESTATE, baggage: BAGGAGE });
  t.is(res.status, 200);

  const [p] = await infersOf(primary, 1);
  t.is(p!.headers.traceparent, TRACEPARENT);
  t.is(p!.headers.tracestate, TRACESTATE);
  t.is(p!.headers.baggage, BAGGAGE);
  t.is(p!.headers['x-shadow'], undefined);

  const [s] = await infersOf(shadow, 1);
  t.is(s!.headers['x-shadow'], 'true', 'this is the shadow copy');
  t.is(s!.headers.traceparent, TRACEPARENT);
  t.is(s!.headers.tracestate, TRACESTATE);
  t.is(s!.headers.baggage, BAGGAGE);
});

test.serial('tracing off, no caller context: no backend gets a traceparent (none is invented)', async (t) => {
  const { gw, primary, shadow } = await startMirroringToRecorders(t);
  t.is((await postJson(`${gw.url}/v2/models/iris/infer`, irisRequest())).status, 200);
  const [p] = await infersOf(primary, 1);
  const [s] = await infersOf(shadow, 1);
  t.is(p!.headers.traceparent, undefined);
  t.is(s!.headers.traceparent, undefined);
});
