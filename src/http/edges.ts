// The answers Node's HTTP server would otherwise write itself (bodyless, or none at all), written as the gateway's
// JSON: a refused head on the raw socket, a tunnel request (CONNECT), an Expect the server does not support.

import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/** A JSON error straight onto a socket that has no response object (Node's parser refused the head), then close. */
export function rejectOnSocket(socket: Socket, status: number, reason: string, message: string): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = JSON.stringify({ error: message });
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

/** True for an HTTP/1.1 request without Host (RFC 9112 §3.2: answer 400); HTTP/1.0 needs none. */
function hostMissing(req: IncomingMessage): boolean {
  return req.headers.host === undefined && (req.httpVersionMajor > 1 || req.httpVersionMinor >= 1);
}

/**
 * Answers an HTTP/1.1 request that has no Host with a JSON 400 and closes the connection; true when it did (the
 * server is created with `requireHostHeader: false`, so Node's bodyless 400 never goes out).
 */
export function refuseMissingHost(req: IncomingMessage, res: ServerResponse): boolean {
  if (!hostMissing(req)) return false;
  const body = JSON.stringify({ error: 'an HTTP/1.1 request needs a Host header' });
  res.writeHead(400, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), connection: 'close' });
  res.end(body);
  return true;
}

/**
 * Every answer Node's server would write itself, as JSON: a head its parser refused (431 too large, 408 too slow, 400
 * malformed), CONNECT (no tunnels here: 405; Node would close silently), an `Expect` other than 100-continue (417).
 */
export function answerEdgesAsJson(server: Server): void {
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (err.code === 'HPE_HEADER_OVERFLOW') return rejectOnSocket(socket, 431, 'Request Header Fields Too Large', 'request headers are too large');
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') return rejectOnSocket(socket, 408, 'Request Timeout', 'request was not received in time');
    if (err.code === 'ECONNRESET' || !socket.writable) return void socket.destroy();
    rejectOnSocket(socket, 400, 'Bad Request', `malformed HTTP request (${err.code ?? 'parse error'})`);
  });
  server.on('connect', (_req: IncomingMessage, socket: Socket) =>
    rejectOnSocket(socket, 405, 'Method Not Allowed', 'CONNECT is not supported: this server answers the Open Inference Protocol'),
  );
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    const body = JSON.stringify({ error: `unsupported Expect: ${String(req.headers.expect).slice(0, 64)} (only 100-continue is)` });
    res.writeHead(417, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), connection: 'close' });
    res.end(body);
  });
}
