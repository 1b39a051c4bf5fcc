// A gRPC call's server span follows the gRPC semantic conventions and continues the caller's traceparent metadata; the
// chain's stage spans and the backend's client span hang under it, as under a REST request's.

import test from 'ava';
import { SpanKind } from '@opentelemetry/api';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { startTracing } from '../../src/telemetry/tracing.js';
import { gatewayConfig, startTestGateway } from '../helpers/gateway.js';
import { oipGrpcClient, rawFp32 } from '../helpers/oip-grpc-client.js';

const exporter = new InMemorySpanExporter();
const tracing = await startTracing({ exporter });
test.after.always(() => tracing.shutdown());

const CALLER_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';

test('ModelInfer: span inference.GRPCInferenceService/ModelInfer with rpc.* attributes, in the caller’s trace, over the chain', async (t) => {
  const gw = await startTestGateway(gatewayConfig());
  t.teardown(() => gw.stop());
  const client = oipGrpcClient(gw.grpc!.address);
  t.teardown(() => client.close());
  exporter.reset();
  const call = { model_name: 'iris', inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4] }], raw_input_contents: [rawFp32([5.1, 3.5, 1.4, 0.2])] };
  t.is((await client.call('ModelInfer', call, { metadata: { traceparent: `00-${CALLER_TRACE}-00f067aa0ba902b7-01` } })).code, 0);
  t.is((await client.call('ModelInfer', { ...call, model_name: 'nope' })).code, 5);
  let spans: ReadableSpan[] = [];
  for (let i = 0; i < 100 && spans.filter((s) => s.name === 'inference.GRPCInferenceService/ModelInfer').length < 2; i++) {
    spans = exporter.getFinishedSpans();
    await new Promise((r) => setTimeout(r, 10));
  }
  const [ok, missing] = spans.filter((s) => s.name === 'inference.GRPCInferenceService/ModelInfer');
  t.is(ok!.kind, SpanKind.SERVER);
  t.like(ok!.attributes, {
    'rpc.system': 'grpc',
    'rpc.service': 'inference.GRPCInferenceService',
    'rpc.method': 'ModelInfer',
    'rpc.grpc.status_code': 0,
    'model_gateway.model': 'iris',
    'model_gateway.version': '1',
  });
  t.is(ok!.spanContext().traceId, CALLER_TRACE);
  const upstream = spans.find((s) => s.name === 'stage upstream' && s.spanContext().traceId === CALLER_TRACE);
  t.truthy(upstream, 'the chain ran under the call');
  t.truthy(spans.find((s) => s.name === 'infer iris:1' && s.spanContext().traceId === CALLER_TRACE && s.kind === SpanKind.INTERNAL));
  t.like(missing!.attributes, { 'rpc.grpc.status_code': 5, 'model_gateway.error.code': 'GW_ERR_MODEL_NOT_FOUND' });
});
