// The ONNX rows (realistic case): batching off/on on mlp-large via serve-model, JSON vs binary tensors via the gateway.

import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { buildIdentityModel } from '../scripts/onnx-graph.js';
import { gcReport } from './measure.js';
import { ALL_CORES, cpuSeconds, freePort, log, start, stop, waitFor } from './proc.js';
import { CLI, nodeEnv, ROOT } from './targets.js';
import { errorCount, okRps, runWrk, writeWrkScript } from './wrk.js';

export interface BatchingFigures {
  batching: 'off' | 'on';
  rps: number;
  errors: number;
  p99Us: number;
  loopP99Ms: number;
  loopMaxMs: number;
}

export interface EncodingFigures {
  encoding: 'JSON' | 'binary';
  requestBytes: number;
  responseBytes: number;
  gatewayCpuMsPerRequest: number;
}

export interface OnnxFigures {
  placement: string;
  batching: BatchingFigures[];
  encodings: EncodingFigures[];
}

const MLP_PATH = '/v2/models/mlp-large/versions/1/infer';
export const ONNX_PLACEMENT =
  'As in the earlier bench: serve-model and the image gateway are not pinned (the event loop and the ONNX worker thread may use both cores); wrk is pinned to core 0 when taskset exists; the JSON/binary requests come one at a time from the bench process.';

async function measureBatching(work: string, dir: string, script: string, on: boolean, seconds: number): Promise<BatchingFigures> {
  const name = `serve-model-batching-${on ? 'on' : 'off'}`;
  const gcFile = path.join(work, `gc-${name}.json`);
  const args = [CLI, 'serve-model', '--model-dir', dir, '--host', '127.0.0.1', '--port', String(await freePort()), '--workers', '1', '--log-level', 'warn'];
  if (on) args.push('--max-batch-size', '32', '--max-queue-delay-us', '500');
  const proc = start(name, process.execPath, args, { core: ALL_CORES, env: nodeEnv(gcFile, { BENCH_LOOP_DELAY: '1' }) });
  try {
    const url = (await waitFor(proc, /serve-model ready on (\S+)/))[1]!;
    const probe = { name, gcFile, gcPid: proc.pid };
    await runWrk({ url, script, connections: 32, threads: 1, durationS: 1 });
    await gcReport(probe);
    log(`mlp-large, batching ${on ? 'on' : 'off'}: wrk, 32 connections, ${seconds} s`);
    const r = await runWrk({ url, script, connections: 32, threads: 1, durationS: seconds });
    const loop = (await gcReport(probe))?.loop;
    return { batching: on ? 'on' : 'off', rps: okRps(r), errors: errorCount(r), p99Us: r.p99Us, loopP99Ms: loop?.p99Ms ?? NaN, loopMaxMs: loop?.maxMs ?? NaN };
  } finally {
    await stop(proc, 'SIGINT');
  }
}

async function measureEncoding(url: string, pid: number, binary: boolean, minMs: number): Promise<EncodingFigures> {
  const n = 3 * 224 * 224;
  const values = new Float32Array(n);
  for (let i = 0; i < n; i++) values[i] = Math.round(((i * 7919) % 2000) - 1000) / 1000;
  let body: Buffer;
  const headers: Record<string, string> = {};
  if (binary) {
    const raw = Buffer.from(values.buffer);
    const head = Buffer.from(
      JSON.stringify({
        inputs: [{ name: 'pixels', shape: [1, 3, 224, 224], datatype: 'FP32', parameters: { binary_data_size: raw.length } }],
        parameters: { binary_data_output: true },
      }),
    );
    body = Buffer.concat([head, raw]);
    headers['inference-header-content-length'] = String(head.length);
    headers['content-type'] = 'application/octet-stream';
  } else {
    body = Buffer.from(JSON.stringify({ inputs: [{ name: 'pixels', shape: [1, 3, 224, 224], datatype: 'FP32', data: Array.from(values) }] }));
    headers['content-type'] = 'application/json';
  }
  const once = async (): Promise<number> => {
    const res = await fetch(`${url}/v2/models/image/infer`, { method: 'POST', body, headers });
    const bytes = (await res.arrayBuffer()).byteLength;
    if (res.status !== 200) throw new Error(`image ${binary ? 'binary' : 'JSON'}: status ${res.status}`);
    return bytes;
  };
  for (let i = 0; i < 3; i++) await once();
  // At least 20 requests and minMs: CPU time comes in clock ticks (10 ms), so a fast encoding needs many requests.
  const cpu0 = cpuSeconds([pid]);
  const started = Date.now();
  let responseBytes = 0;
  let rounds = 0;
  while (rounds < 20 || Date.now() - started < minMs) {
    responseBytes = await once();
    rounds++;
  }
  const cpu = cpuSeconds([pid]) - cpu0;
  return { encoding: binary ? 'binary' : 'JSON', requestBytes: body.length, responseBytes, gatewayCpuMsPerRequest: (cpu / rounds) * 1000 };
}

export async function onnxRows(work: string, quick: boolean): Promise<OnnxFigures> {
  const dir = path.join(work, 'models');
  await mkdir(dir, { recursive: true });
  await copyFile(path.join(ROOT, 'examples/models/mlp-large.onnx'), path.join(dir, 'mlp-large-v1.onnx'));
  const mlpBody = JSON.stringify({
    inputs: [{ name: 'input', shape: [1, 512], datatype: 'FP32', data: Array.from({ length: 512 }, (_, i) => Math.round(Math.sin(i) * 1e4) / 1e4) }],
  });
  const script = await writeWrkScript(path.join(work, 'mlp.lua'), {
    method: 'POST',
    path: MLP_PATH,
    body: mlpBody,
    headers: { 'Content-Type': 'application/json' },
  });
  const seconds = quick ? 2 : 3;
  const batching = [await measureBatching(work, dir, script, false, seconds), await measureBatching(work, dir, script, true, seconds)];

  log('JSON vs binary tensors through a gateway serving an identity model in-process');
  const image = path.join(work, 'image.onnx');
  await writeFile(image, buildIdentityModel([{ name: 'pixels', outputName: 'pixels_out', elemType: 'FP32', shape: ['batch', 3, 224, 224] }]));
  const config = path.join(work, 'image-gateway.yaml');
  await writeFile(
    config,
    JSON.stringify({
      server: { host: '127.0.0.1', port: await freePort(), drainDelayMs: 0, grpc: { enabled: false } },
      logging: { level: 'warn' },
      admin: { enabled: false },
      reload: { watch: false },
      models: { image: { versions: { '1': { backend: { kind: 'onnx', path: image } } } } },
    }),
  );
  const proc = start('image gateway', process.execPath, [CLI, 'start', '--config', config], {
    core: ALL_CORES,
    env: nodeEnv(path.join(work, 'gc-image.json')),
  });
  try {
    const url = (await waitFor(proc, /model-gateway ready on (\S+)/))[1]!;
    const minMs = quick ? 1000 : 1500;
    const encodings = [await measureEncoding(url, proc.pid, false, minMs), await measureEncoding(url, proc.pid, true, minMs)];
    return { placement: ONNX_PLACEMENT, batching, encodings };
  } finally {
    await stop(proc, 'SIGINT');
  }
}
