// SIGTERM over gRPC: health turns NOT_SERVING at once (Check and Watch), calls are still taken during the drain delay,
// then new calls are refused (UNAVAILABLE) while the calls in flight finish; the process exits 0.

import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { gatewayConfig, irisModels, spawnGateway, writeConfigFile } from '../helpers/gateway.js';
import { grpcAddressFrom, oipGrpcClient, rawFp32, type Message } from '../helpers/oip-grpc-client.js';
import { echoVersion, startEchoServer } from '../helpers/oip-grpc-server.js';

const DRAIN_DELAY_MS = 800;
const slowCall: Message = { model_name: 'slow', inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4] }], raw_input_contents: [rawFp32([1, 2, 3, 4])] };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('SIGTERM: NOT_SERVING at once, calls taken during the drain delay, then refused while in-flight calls finish; exit 0', async (t) => {
  const echo = await startEchoServer(2_000);
  t.teardown(() => echo.close());
  const file = await writeConfigFile(
    gatewayConfig({
      server: { drainDelayMs: DRAIN_DELAY_MS, shutdownTimeoutMs: 10_000, grpc: { port: 0 } },
      models: { ...irisModels(), slow: { versions: { '1': echoVersion(echo.address) } } },
    }),
  );
  const gw = await spawnGateway(file);
  t.teardown(() => gw.stop('SIGKILL'));
  const address = grpcAddressFrom(gw.stderr());
  const client = oipGrpcClient(address);
  t.teardown(() => client.close());
  const watch = client.watch('');
  const inFlight = [client.call('ModelInfer', slowCall), client.call('ModelInfer', slowCall), client.call('ModelInfer', slowCall)];
  for (let i = 0; i < 100 && echo.calls.length < 3; i++) await sleep(10);
  t.is(echo.calls.length, 3, 'three calls are at the remote');

  const signalled = Date.now();
  gw.child.kill('SIGTERM');
  let check = await client.health('Check', { service: '' });
  for (let i = 0; i < 50 && check.response?.status !== 'NOT_SERVING'; i++) check = await client.health('Check', { service: '' });
  t.is(check.response?.status, 'NOT_SERVING');
  t.true(Date.now() - signalled < 500, 'health failed at once');
  t.like(await client.call('ServerReady', {}), { response: { ready: false } });
  // Still taken during the drain delay, on a new connection too.
  const fresh = oipGrpcClient(address);
  t.like(
    await fresh.call('ModelInfer', {
      model_name: 'iris',
      inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4] }],
      raw_input_contents: [rawFp32([5.1, 3.5, 1.4, 0.2])],
    }),
    {
      code: grpc.status.OK,
    },
  );
  fresh.close();
  t.true(Date.now() - signalled < DRAIN_DELAY_MS, 'that call was inside the drain delay');

  await sleep(DRAIN_DELAY_MS + 200 - (Date.now() - signalled));
  const late = oipGrpcClient(address);
  const refused = await late.call('ServerLive', {}, { deadlineMs: 2_000 });
  late.close();
  t.is(refused.code, grpc.status.UNAVAILABLE, `after the drain delay new calls are refused: ${refused.details}`);

  const results = await Promise.all(inFlight);
  t.deepEqual(
    results.map((r) => r.code),
    [0, 0, 0],
    'the calls in flight finished',
  );
  t.true(Date.now() - signalled >= 1_900, 'they ran to their end');
  t.deepEqual(watch.statuses, ['SERVING', 'NOT_SERVING']);
  t.is((await watch.ended).code, grpc.status.OK, 'the Watch stream was closed cleanly at shutdown');
  t.is(await gw.exited, 0);
});
