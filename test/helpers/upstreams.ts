// Fault-injecting upstreams for resilience tests: real TCP/HTTP servers on 127.0.0.1 that hang, or hold requests and
// count how many a backend sees at once (the cap must be measured where the load lands).

import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';

/** Resolves when `check()` holds, re-checking on every `event` of `emitter`; rejects after `timeoutMs`. */
function until(emitter: NodeJS.EventEmitter, event: string, check: () => boolean, what: string, timeoutMs: number): Promise<void> {
  if (check()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, onEvent);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
    function onEvent(): void {
      if (!check()) return;
      clearTimeout(timer);
      emitter.off(event, onEvent);
      resolve();
    }
    emitter.on(event, onEvent);
  });
}

export interface HungServer {
  url: string;
  /** Connections accepted since start. */
  accepted(): number;
  /** Connections open now, and the most ever open at once. */
  open(): number;
  maxOpen(): number;
  /** Request lines received per method (e.g. `POST`), across all connections. */
  requests(method: string): number;
  /** Resolves once `n` request lines of `method` have arrived. */
  whenRequests(method: string, n: number, timeoutMs?: number): Promise<void>;
  /** Resolves once at most `n` connections are open. */
  whenOpenAtMost(n: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

/** Accepts connections, reads whatever arrives, never answers: a hung backend. */
export async function startHungServer(): Promise<HungServer> {
  const sockets = new Set<net.Socket>();
  const requestLines = new Map<string, number>();
  let accepted = 0;
  let maxOpen = 0;
  const server = net.createServer((socket) => {
    accepted++;
    sockets.add(socket);
    maxOpen = Math.max(maxOpen, sockets.size);
    socket.on('data', (chunk: Buffer) => {
      for (const m of chunk.toString('latin1').matchAll(/^([A-Z]+) \S+ HTTP\/1\.1\r$/gm)) requestLines.set(m[1]!, (requestLines.get(m[1]!) ?? 0) + 1);
      server.emit('request-line');
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      sockets.delete(socket);
      server.emit('socket-closed');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    accepted: () => accepted,
    open: () => sockets.size,
    maxOpen: () => maxOpen,
    requests: (method) => requestLines.get(method) ?? 0,
    whenRequests: (method, n, timeoutMs = 10_000) =>
      until(server, 'request-line', () => (requestLines.get(method) ?? 0) >= n, `${n} ${method} requests`, timeoutMs),
    whenOpenAtMost: (n, timeoutMs = 10_000) =>
      until(server, 'socket-closed', () => sockets.size <= n, `at most ${n} open sockets (now ${sockets.size})`, timeoutMs),
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export interface HoldingBackend {
  url: string;
  /** Inference requests being held now, and the most ever held at once. */
  inFlight(): number;
  maxInFlight(): number;
  /** Inference requests received since start. */
  received(): number;
  /** Resolves once `n` inference requests are held. */
  whenHolding(n: number, timeoutMs?: number): Promise<void>;
  /** Answers every held request (200, an OIP response) and stops holding new ones. */
  releaseAll(): void;
  close(): Promise<void>;
}

const META = {
  name: 'held',
  versions: ['1'],
  platform: 'test',
  inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 4] }],
  outputs: [{ name: 'score', datatype: 'FP32', shape: [-1] }],
};

/**
 * A small OIP server: metadata and ready answer at once; inference requests are held until releaseAll(), so a test can
 * see how many a gateway lets through at the same time.
 */
export async function startHoldingBackend(): Promise<HoldingBackend> {
  const held: http.ServerResponse[] = [];
  let inFlight = 0;
  let max = 0;
  let received = 0;
  let holding = true;
  const answer = (res: http.ServerResponse) => {
    const body = JSON.stringify({ model_name: 'held', model_version: '1', outputs: [{ name: 'score', datatype: 'FP32', shape: [1], data: [0.5] }] });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
  };
  const server = http.createServer((req, res) => {
    if (req.method === 'GET') {
      const body = JSON.stringify(req.url?.endsWith('/ready') ? { ready: true } : META);
      res.writeHead(200, { 'content-type': 'application/json' }).end(body);
      return;
    }
    req.resume();
    req.on('end', () => {
      received++;
      inFlight++;
      max = Math.max(max, inFlight);
      res.on('close', () => {
        inFlight--;
        server.emit('changed');
      });
      if (holding) held.push(res);
      else answer(res);
      server.emit('changed');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    inFlight: () => inFlight,
    maxInFlight: () => max,
    received: () => received,
    whenHolding: (n, timeoutMs = 10_000) =>
      until(server, 'changed', () => held.filter((r) => !r.writableEnded && !r.destroyed).length >= n, `${n} held requests`, timeoutMs),
    releaseAll() {
      holding = false;
      for (const res of held.splice(0)) if (!res.destroyed) answer(res);
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
