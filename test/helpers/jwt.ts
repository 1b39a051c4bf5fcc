// Test helpers for JWTs: key pairs, and tokens signed byte by byte (so malformed, tampered and hostile ones can be made).

import { createHmac, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import http from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import type { JWK } from 'jose';

export interface TestKey {
  kid: string;
  alg: 'RS256' | 'ES256';
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** Public JWK with kid, alg and use. */
  jwk: JWK;
}

export function rsaKey(kid: string): TestKey {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { kid, alg: 'RS256', privateKey, publicKey, jwk: { ...publicKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' } as JWK };
}

export function ecKey(kid: string): TestKey {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { kid, alg: 'ES256', privateKey, publicKey, jwk: { ...publicKey.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'sig' } as JWK };
}

export const b64url = (value: unknown): string => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

/** Signs `header.payload` with whatever algorithm the header names (RS*, ES256, HS256), no questions asked. */
export function signRaw(header: Record<string, unknown>, payload: unknown, key: KeyObject | Buffer | string): string {
  const input = `${b64url(header)}.${b64url(payload)}`;
  const alg = String(header.alg);
  let signature: Buffer;
  if (alg.startsWith('HS'))
    signature = createHmac(`sha${alg.slice(2)}`, key as Buffer | string)
      .update(input)
      .digest();
  else if (alg.startsWith('ES')) signature = sign(`sha${alg.slice(2)}`, Buffer.from(input), { key: key as KeyObject, dsaEncoding: 'ieee-p1363' });
  else if (alg.startsWith('RS')) signature = sign(`sha${alg.slice(2)}`, Buffer.from(input), key as KeyObject);
  else signature = Buffer.alloc(0);
  return `${input}.${signature.toString('base64url')}`;
}

/** A token signed by `key` with its kid and alg, plus header/claim overrides (undefined removes a member). */
export function tokenFor(key: TestKey, claims: Record<string, unknown>, header: Record<string, unknown> = {}): string {
  const h: Record<string, unknown> = { alg: key.alg, typ: 'JWT', kid: key.kid, ...header };
  for (const [k, v] of Object.entries(h)) if (v === undefined) delete h[k];
  const c = { ...claims };
  for (const [k, v] of Object.entries(c)) if (v === undefined) delete c[k];
  return signRaw(h, c, key.privateKey);
}

export interface CountingServer {
  url: string;
  /** Requests received so far. */
  hits(): number;
  /** Replaces the JSON served from now on. */
  serve(body: unknown): void;
  close(): Promise<void>;
}

/** A 127.0.0.1 HTTP server that counts every request and answers with the current JSON body. */
export async function countingServer(body: unknown = {}): Promise<CountingServer> {
  let hits = 0;
  let current = JSON.stringify(body);
  const server = http.createServer((req, res) => {
    hits++;
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' }).end(current);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/jwks.json`,
    hits: () => hits,
    serve: (next) => {
      current = JSON.stringify(next);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A port nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const server = http.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A JWKS endpoint on a fixed port that can be taken down and brought back (an IdP outage), for fault tests and soak. */
export function switchableJwks(port: number, keys: unknown[]) {
  let server: http.Server | undefined;
  return {
    url: `http://127.0.0.1:${port}/jwks.json`,
    async up() {
      const s = http.createServer((req, res) => {
        req.resume();
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys }));
      });
      s.listen(port, '127.0.0.1');
      await once(s, 'listening');
      server = s;
    },
    async down() {
      const s = server;
      server = undefined;
      if (!s) return;
      s.closeAllConnections();
      await new Promise<void>((resolve) => s.close(() => resolve()));
    },
  };
}
