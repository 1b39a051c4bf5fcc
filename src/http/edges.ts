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
export function hostMissing(req: IncomingMessage): boolean {
  return req.headers.host === undefined && (req.httpVersionMajor > 1 || req.httpVersionMinor >= 1);
}

/**
 * CONNECT (no tunnels here) → JSON 405; an `Expect` other than 100-continue → JSON 417. Node would close the socket
 * silently for the first and write a bodyless 417 for the second.
 */
export function answerEdgesAsJson(server: Server): void {
  server.on('connect', (_req: IncomingMessage, socket: Socket) =>
    rejectOnSocket(socket, 405, 'Method Not Allowed', 'CONNECT is not supported: this server answers the Open Inference Protocol'),
  );
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    const body = JSON.stringify({ error: `unsupported Expect: ${String(req.headers.expect).slice(0, 64)} (only 100-continue is)` });
    res.writeHead(417, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), connection: 'close' });
    res.end(body);
  });
}
