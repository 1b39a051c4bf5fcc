// The remote backends' metadata probe: first answer makes the version ready, the last good answer survives failures,
// and a run of failures is logged once loudly (warn) and then quietly (debug) until it recovers (info).

import test from 'ava';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { MetadataProbe } from '../../src/backends/metadata-probe.js';
import type { BackendMetadata } from '../../src/protocol/oip.js';

const META: BackendMetadata = {
  platform: 'onnxruntime_onnx',
  inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }],
  outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 3] }],
};

function recorder(): { log: pino.Logger; lines: { level: number; msg: string }[] } {
  const lines: { level: number; msg: string }[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      const { level, msg } = JSON.parse(chunk.toString()) as { level: number; msg: string };
      lines.push({ level, msg });
      done();
    },
  });
  return { log: pino({ level: 'debug' }, sink), lines };
}

test('a failing first fetch leaves no metadata and warns once; later failures are debug; recovery is info', async (t) => {
  const { log, lines } = recorder();
  const answers: (BackendMetadata | Error)[] = [new Error('ECONNREFUSED'), new Error('ECONNREFUSED'), META, new Error('reset'), new Error('reset')];
  let calls = 0;
  let settled: () => void = () => {};
  const fetch = async (): Promise<BackendMetadata> => {
    const next = answers[calls++];
    if (calls === answers.length) setImmediate(() => settled());
    if (next === undefined || next instanceof Error) throw next ?? new Error('done');
    return next;
  };
  const probe = new MetadataProbe({ fetch, intervalMs: 1, log, target: 'http://127.0.0.1:1/v2/models/m' });
  const done = new Promise<void>((resolve) => (settled = resolve));
  // The probe's timers are unref'd (they never keep a process alive), so the test holds the loop open itself.
  const hold = setInterval(() => {}, 1000);
  t.teardown(() => clearInterval(hold));
  await probe.start();
  t.is(probe.metadata, undefined, 'not ready while the remote does not answer');
  await done;
  probe.close();
  t.deepEqual(probe.metadata, META, 'the last good metadata survives later failures');
  await new Promise((r) => setTimeout(r, 20));
  t.is(calls, answers.length, 'close() stops the probe');
  t.deepEqual(
    lines.map((l) => [l.level, l.msg]),
    [
      [40, 'backend not reachable yet; the version stays not-ready and will be retried'],
      [20, 'backend metadata probe failed again'],
      [30, 'backend metadata fetched again'],
      [40, 'cannot refresh the backend metadata; keeping the last one'],
      [20, 'backend metadata probe failed again'],
    ],
  );
});

test('a failure that lands after close() is not reported', async (t) => {
  const { log, lines } = recorder();
  let reject: (e: Error) => void = () => {};
  const probe = new MetadataProbe({ fetch: () => new Promise((_, r) => (reject = r)), intervalMs: 1000, log, target: 't' });
  const started = probe.start();
  probe.close();
  reject(new Error('the channel was closed'));
  await started;
  t.deepEqual(lines, []);
});
