// The gRPC rows: iris (1×4 FP32) and an identity model (1×3×224×224 FP32) over REST JSON, REST binary and gRPC raw
// contents, through the gateway and straight to serve-model: req/s, server CPU µs per request, bytes on the wire.
// Run alone: node dist/bench/grpc.js [--quick]; bench/run.ts adds the same table to its report.

import { mkdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { Agent, request as undiciRequest } from 'undici';
import { buildIdentityModel } from '../scripts/onnx-graph.js';
import { ALL_CORES, cpuSeconds, freePort, log, start, stop, waitFor, type Proc } from './proc.js';
import { CLI, ROOT } from './targets.js';

export type Encoding = 'REST JSON' | 'REST binary' | 'gRPC raw';
export interface GrpcRow {
  workload: 'iris 1×4' | 'image 1×3×224×224';
  encoding: Encoding;
  via: 'gateway' | 'serve-model';
  rps: number;
  cpuUsPerRequest: number;
  requestBytes: number;
  responseBytes: number;
}

const ENCODINGS: readonly Encoding[] = ['REST JSON', 'REST binary', 'gRPC raw'];
const CONCURRENCY = 8;

/** One inference, as a function of the transport: resolves when the answer has been read whole. */
type Call = () => Promise<void>;

function workloadData(workload: GrpcRow['workload']): { model: string; input: string; shape: number[]; values: Float32Array } {
  if (workload === 'iris 1×4') return { model: 'iris', input: 'input', shape: [1, 4], values: new Float32Array([5.1, 3.5, 1.4, 0.2]) };
  const n = 3 * 224 * 224;
  const values = new Float32Array(n);
  for (let i = 0; i < n; i++) values[i] = Math.round(((i * 7919) % 2000) - 1000) / 1000;
  return { model: 'image', input: 'pixels', shape: [1, 3, 224, 224], values };
}

function restCall(origin: string, workload: GrpcRow['workload'], binary: boolean, agent: Agent): Call {
  const { model, input, shape, values } = workloadData(workload);
  let body: Buffer;
  const headers: Record<string, string> = {};
  if (binary) {
    const raw = Buffer.from(values.buffer);
    const head = Buffer.from(
      JSON.stringify({
        inputs: [{ name: input, shape, datatype: 'FP32', parameters: { binary_data_size: raw.length } }],
        parameters: { binary_data_output: true },
      }),
    );
    body = Buffer.concat([head, raw]);
    headers['inference-header-content-length'] = String(head.length);
    headers['content-type'] = 'application/octet-stream';
  } else {
    body = Buffer.from(JSON.stringify({ inputs: [{ name: input, shape, datatype: 'FP32', data: Array.from(values) }] }));
    headers['content-type'] = 'application/json';
  }
  const url = `${origin}/v2/models/${model}/versions/1/infer`;
  return async () => {
    const res = await undiciRequest(url, { method: 'POST', body, headers, dispatcher: agent });
    await res.body.arrayBuffer();
    if (res.statusCode !== 200) throw new Error(`${url}: status ${res.statusCode}`);
  };
}

const inference = (() => {
  const definition = protoLoader.loadSync('inference/open_inference_grpc.proto', {
    includeDirs: [path.join(ROOT, 'protos')],
    keepCase: true,
    longs: String,
    defaults: true,
  });
  return (grpc.loadPackageDefinition(definition) as unknown as { inference: { GRPCInferenceService: grpc.ServiceClientConstructor } }).inference
    .GRPCInferenceService;
})();

function grpcCall(client: grpc.Client, workload: GrpcRow['workload']): Call {
  const { model, input, shape, values } = workloadData(workload);
  const message = {
    model_name: model,
    model_version: '1',
    inputs: [{ name: input, datatype: 'FP32', shape }],
    raw_input_contents: [Buffer.from(values.buffer)],
  };
  const fn = (client as unknown as Record<string, (m: unknown, cb: (e: grpc.ServiceError | null) => void) => void>).ModelInfer!.bind(client);
  return () => new Promise<void>((resolve, reject) => fn(message, (err) => (err ? reject(err) : resolve())));
}

/** Bytes each way per call, counted by a TCP relay in front of the server (framing and headers included). */
async function wireBytes(port: number, makeCall: (viaPort: number) => { call: Call; close(): void }, calls = 20): Promise<{ up: number; down: number }> {
  let up = 0;
  let down = 0;
  const relay = net.createServer((client) => {
    const upstream = net.connect(port, '127.0.0.1');
    client.on('data', (d: Buffer) => (up += d.length));
    upstream.on('data', (d: Buffer) => (down += d.length));
    client.pipe(upstream).pipe(client);
    const end = () => (client.destroy(), upstream.destroy());
    client.on('error', end);
    upstream.on('error', end);
  });
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
  const { call, close } = makeCall((relay.address() as net.AddressInfo).port);
  await call(); // connection set-up and first-call costs (HTTP/2 SETTINGS, headers table) are not a call's bytes
  const [u0, d0] = [up, down];
  for (let i = 0; i < calls; i++) await call();
  const result = { up: (up - u0) / calls, down: (down - d0) / calls };
  close();
  await new Promise<void>((resolve) => relay.close(() => resolve()));
  return result;
}

/** Closed loop of CONCURRENCY callers for `seconds`: req/s and the server process's CPU per request. */
async function throughput(call: Call, pid: number, seconds: number): Promise<{ rps: number; cpuUs: number }> {
  const warm = Date.now() + 500;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (Date.now() < warm) await call();
    }),
  );
  const cpu0 = cpuSeconds([pid]);
  const started = performance.now();
  const until = Date.now() + seconds * 1000;
  let done = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (Date.now() < until) {
        await call();
        done++;
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  return { rps: done / elapsed, cpuUs: ((cpuSeconds([pid]) - cpu0) / done) * 1e6 };
}

interface Server {
  proc: Proc;
  http: number;
  grpc: number;
}

async function startServer(work: string, via: GrpcRow['via'], models: string): Promise<Server> {
  const [http, grpcPort] = [await freePort(), await freePort()];
  let args: string[];
  if (via === 'serve-model') {
    args = [CLI, 'serve-model', '--model-dir', models, '--host', '127.0.0.1', '--port', String(http), '--grpc-port', String(grpcPort), '--log-level', 'warn'];
  } else {
    const config = path.join(work, 'grpc-bench-gateway.json');
    const version = (file: string) => ({ versions: { '1': { backend: { kind: 'onnx', path: path.join(models, file) } } } });
    await writeFile(
      config,
      JSON.stringify({
        server: { host: '127.0.0.1', port: http, drainDelayMs: 0, grpc: { port: grpcPort } },
        logging: { level: 'warn', accessLog: { enabled: false } },
        admin: { enabled: false },
        telemetry: { metrics: { enabled: false } },
        reload: { watch: false },
        models: { iris: version('iris-v1.onnx'), image: version('image-v1.onnx') },
      }),
    );
    args = [CLI, 'start', '--config', config];
  }
  const proc = start(`grpc bench ${via}`, process.execPath, args, { core: ALL_CORES });
  await waitFor(proc, via === 'serve-model' ? /serve-model ready on/ : /model-gateway ready on/);
  return { proc, http, grpc: grpcPort };
}

export async function grpcRows(work: string, quick: boolean): Promise<GrpcRow[]> {
  const models = path.join(work, 'grpc-models');
  await mkdir(models, { recursive: true });
  await copyFile(path.join(ROOT, 'examples/models/iris-v1.onnx'), path.join(models, 'iris-v1.onnx'));
  await writeFile(
    path.join(models, 'image-v1.onnx'),
    buildIdentityModel([{ name: 'pixels', outputName: 'pixels_out', elemType: 'FP32', shape: ['batch', 3, 224, 224] }]),
  );
  const seconds = quick ? 1.5 : 3;
  const rows: GrpcRow[] = [];
  for (const via of ['gateway', 'serve-model'] as const) {
    const server = await startServer(work, via, models);
    try {
      for (const workload of ['iris 1×4', 'image 1×3×224×224'] as const) {
        for (const encoding of ENCODINGS) {
          const make = (port: number): { call: Call; close(): void } => {
            if (encoding === 'gRPC raw') {
              const client = new inference(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
                'grpc.max_receive_message_length': -1,
                // As the gateway's grpc backend does: a 32 MiB receive window instead of HTTP/2's 64 KiB.
                'grpc-node.flow_control_window': 32 * 1024 * 1024,
              });
              return { call: grpcCall(client, workload), close: () => client.close() };
            }
            const agent = new Agent({ connections: CONCURRENCY });
            return { call: restCall(`http://127.0.0.1:${port}`, workload, encoding === 'REST binary', agent), close: () => void agent.close() };
          };
          const port = encoding === 'gRPC raw' ? server.grpc : server.http;
          const bytes = await wireBytes(port, make);
          const target = make(port);
          log(`${workload}, ${encoding}, via ${via}: ${CONCURRENCY} callers, ${seconds} s`);
          const { rps, cpuUs } = await throughput(target.call, server.proc.pid, seconds);
          target.close();
          rows.push({ workload, encoding, via, rps, cpuUsPerRequest: cpuUs, requestBytes: Math.round(bytes.up), responseBytes: Math.round(bytes.down) });
        }
      }
    } finally {
      await stop(server.proc, 'SIGINT');
    }
  }
  return rows;
}

const fmt = (n: number) => (n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(1));

/** The rows as a Markdown table. */
export function grpcMarkdown(rows: readonly GrpcRow[]): string {
  const lines = [
    '## gRPC vs REST (bench/grpc.ts)',
    '',
    `In-process ONNX, ${CONCURRENCY} concurrent callers in the bench process (grpc-js and undici clients), each server unpinned; CPU is the server process's (user + system) per request; bytes are counted on the TCP connection per call (HTTP/2 framing and headers included, connection set-up excluded).`,
    '',
    '| workload | encoding | via | req/s | server CPU µs/req | bytes up/req | bytes down/req |',
    '|---|---|---|---:|---:|---:|---:|',
    ...rows.map(
      (r) =>
        `| ${r.workload} | ${r.encoding} | ${r.via} | ${fmt(r.rps)} | ${fmt(r.cpuUsPerRequest)} | ${r.requestBytes.toLocaleString('en-US')} | ${r.responseBytes.toLocaleString('en-US')} |`,
    ),
    '',
  ];
  return lines.join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false } } });
  const work = await mkdtemp(path.join(os.tmpdir(), 'mg-grpc-bench-'));
  try {
    const rows = await grpcRows(work, values.quick ?? false);
    process.stdout.write(`${grpcMarkdown(rows)}\n`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === path.resolve(import.meta.filename)) await main();
