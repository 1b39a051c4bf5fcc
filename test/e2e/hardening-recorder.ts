// A real remote OIP backend for hardening and drain tests: serves iris-shaped metadata, answers inference, and records
// every request it receives (headers included), so a test can prove what did — and did not — reach a backend.

import { once } from 'node:events';
import http, { type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Received {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface RecordingBackend {
  url: string;
  /** Every inference request received, in order. */
  readonly infers: Received[];
  /** Inference answers fully written (a reply aborted by a closing gateway is not counted). */
  completed(): number;
  /** Delay for each inference answer from now on, ms (the abort of a request cuts it short). */
  setDelay(ms: number): void;
  close(): Promise<void>;
}

const METADATA = {
  name: 'iris',
  platform: 'recording',
  inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 4] }],
  outputs: [{ name: 'label', datatype: 'INT64', shape: [-1] }],
};

export async function startRecordingBackend(options: { delayMs?: number } = {}): Promise<RecordingBackend> {
  const infers: Received[] = [];
  let completed = 0;
  let delayMs = options.delayMs ?? 0;
  const server = http.createServer({ keepAliveTimeout: 30_000 }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const path = (req.url ?? '').split('?')[0]!;
      const json = (status: number, value: unknown) => {
        const text = JSON.stringify(value);
        res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
      };
      if (req.method === 'GET' && /^\/v2\/models\/[^/]+$/.test(path)) return json(200, METADATA);
      if (req.method === 'GET' && /^\/v2\/models\/[^/]+\/ready$/.test(path)) return json(200, { ready: true });
      if (req.method === 'GET' && path === '/v2/health/ready') return json(200, { ready: true });
      if (req.method !== 'POST' || !path.endsWith('/infer')) return json(404, { error: `no route ${req.method} ${path}` });
      infers.push({ method: req.method, url: req.url ?? '', headers: req.headers, body });
      let rows = 1;
      try {
        const parsed = JSON.parse(body) as { inputs?: { shape?: number[] }[] };
        rows = Math.max(1, parsed.inputs?.[0]?.shape?.[0] ?? 1);
      } catch {
        return json(400, { error: 'recording backend: body is not JSON' });
      }
      const answer = () => {
        if (res.destroyed) return;
        res.once('finish', () => completed++);
        json(200, { model_name: 'iris', outputs: [{ name: 'label', datatype: 'INT64', shape: [rows], data: new Array<number>(rows).fill(0) }] });
      };
      if (delayMs <= 0) return answer();
      const timer = setTimeout(answer, delayMs);
      res.once('close', () => clearTimeout(timer));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    infers,
    completed: () => completed,
    setDelay: (ms) => {
      delayMs = ms;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A gateway `models` entry whose versions are remote backends at the given URLs. */
export function remoteModels(versions: Record<string, string>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    iris: {
      defaultVersion: Object.keys(versions)[0],
      versions: Object.fromEntries(Object.entries(versions).map(([v, url]) => [v, { backend: { kind: 'http', url, model: 'iris', probeIntervalMs: 200 } }])),
      ...extra,
    },
  };
}
