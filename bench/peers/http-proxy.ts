// Benchmark peer: the classic Node reverse proxy (`http-proxy`) with a keep-alive agent, nothing else.
// Usage: node dist/bench/peers/http-proxy.js <port> <target origin>  → prints "ready http://127.0.0.1:<port>".

import http from 'node:http';
import httpProxy from 'http-proxy';

const port = Number(process.argv[2] ?? 0);
const target = process.argv[3] ?? 'http://127.0.0.1:8000';
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
const proxy = httpProxy.createProxyServer({ target, agent, xfwd: false });
proxy.on('error', (_err, _req, res) => {
  if (res instanceof http.ServerResponse && !res.headersSent) {
    res.writeHead(502, { 'content-type': 'application/json' });
    res.end('{"error":"bad gateway"}');
  }
});
const server = http.createServer((req, res) => proxy.web(req, res));
server.keepAliveTimeout = 75_000;
server.listen(port, '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`ready http://127.0.0.1:${typeof address === 'object' && address ? address.port : port}\n`);
});
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => process.exit(0));
