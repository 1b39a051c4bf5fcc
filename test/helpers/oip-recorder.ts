// A real OIP HTTP server on 127.0.0.1 with the Iris signature that records every request's headers (trace context, marks).

import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { RunningGateway } from '../../src/app/gateway.js';
import { gatewayConfig, startTestGateway } from './gateway.js';

export interface RecordedRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
}

export interface OipRecorder {
  url: string;
  seen: RecordedRequest[];
  close(): Promise<void>;
}

const METADATA = {
  name: 'iris',
  versions: ['1'],
  platform: 'recorder',
  inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 4] }],
  outputs: [
    { name: 'probabilities', datatype: 'FP32', shape: [-1, 3] },
    { name: 'label', datatype: 'INT64', shape: [-1] },
  ],
};

/** Answers every row as class 0 with certainty; metadata and readiness like any OIP server. */
export async function startOipRecorder(): Promise<OipRecorder> {
  const seen: RecordedRequest[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
      const reply = (status: number, body: unknown) => {
        const text = JSON.stringify(body);
        res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
        res.end(text);
      };
      if (req.method === 'GET' && req.url?.endsWith('/ready')) return reply(200, { ready: true });
      if (req.method === 'GET' && req.url?.startsWith('/v2/models/')) return reply(200, METADATA);
      if (req.method === 'POST' && req.url?.endsWith('/infer')) {
        const body = JSON.parse(Buffer.concat(chunks).toString()) as { inputs: { shape: number[] }[] };
        const rows = body.inputs[0]!.shape[0]!;
        return reply(200, {
          model_name: 'iris',
          model_version: '1',
          outputs: [
            { name: 'probabilities', datatype: 'FP32', shape: [rows, 3], data: Array.from({ length: rows }, () => [1, 0, 0]).flat() },
            { name: 'label', datatype: 'INT64', shape: [rows], data: new Array<number>(rows).fill(0) },
          ],
        });
      }
      reply(404, { error: 'not found' });
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/**
 * A gateway whose iris version 1 is remote `primary` and version 2 — mirrored at 100% — is remote `shadow`, both
 * recorders: what a test of the headers each remote receives needs. Everything is closed at the test's teardown.
 */
export async function startMirroringToRecorders(t: import('ava').ExecutionContext): Promise<{ gw: RunningGateway; primary: OipRecorder; shadow: OipRecorder }> {
  const primary = await startOipRecorder();
  t.teardown(() => primary.close());
  const shadow = await startOipRecorder();
  t.teardown(() => shadow.close());
  const gw = await startTestGateway(
    gatewayConfig({
      models: {
        iris: {
          defaultVersion: '1',
          versions: {
            '1': { backend: { kind: 'http', url: primary.url, model: 'iris', version: '1' } },
            '2': { backend: { kind: 'http', url: shadow.url, model: 'iris', version: '2' } },
          },
          shadow: { targets: [{ version: '2', percent: 100 }] },
        },
      },
    }),
  );
  t.teardown(() => gw.stop());
  return { gw, primary, shadow };
}
