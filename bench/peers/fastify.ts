// Benchmark peer: a feature-equivalent Node stack — fastify with @fastify/jwt (ES256 with the dev JWKS key, iss/aud
// checked, fast-jwt's verified-token cache on), a scope check, @fastify/rate-limit (per token subject, never
// triggering) and @fastify/reply-from, splitting 90/10 between two upstream paths.
// Usage: node dist/bench/peers/fastify.js <port> <target origin> <jwks.json> <upstream path a> <upstream path b>

import { createPublicKey, type JsonWebKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import Fastify from 'fastify';
import fastifyJwt from '@fastify/jwt';
import rateLimit from '@fastify/rate-limit';
import replyFrom from '@fastify/reply-from';

const [portArg, target, jwksFile, pathA, pathB] = process.argv.slice(2);
const jwks = JSON.parse(readFileSync(jwksFile!, 'utf8')) as { keys: JsonWebKey[] };
const publicKey = createPublicKey({ key: jwks.keys[0]!, format: 'jwk' }).export({ type: 'spki', format: 'pem' }).toString();

const app = Fastify({ logger: false, keepAliveTimeout: 75_000, bodyLimit: 16 * 1024 * 1024 });
// Bodies are proxied as received: no JSON parsing, like the gateway's pass-through (validate: remote).
app.removeAllContentTypeParsers();
app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
await app.register(fastifyJwt, {
  secret: { public: publicKey },
  verify: {
    algorithms: ['ES256'],
    allowedIss: 'model-gateway-dev',
    allowedAud: 'model-gateway',
    // fast-jwt's LRU of verified tokens (keyed by a hash of the token), sized and aged like the gateway's token cache
    // (auth.tokenCache defaults: 10 000 entries, 300 s).
    cache: 10_000,
    cacheTTL: 300_000,
  },
});
// Upstream connections: as many as the gateway's http backends get in the bench (64).
await app.register(replyFrom, { base: target!, undici: { connections: 64, pipelining: 1, keepAliveTimeout: 60_000 } });
app.addHook('onRequest', async (request, reply) => {
  await request.jwtVerify();
  // The gateway's models.iris.auth.infer.scopes: [iris:infer].
  const scope = (request.user as { scope?: unknown }).scope;
  if (typeof scope !== 'string' || !scope.split(' ').includes('iris:infer')) return reply.code(403).send({ error: 'missing scope iris:infer' });
});
await app.register(rateLimit, {
  hook: 'preHandler',
  max: 1_000_000,
  timeWindow: 1000,
  keyGenerator: (request) => String((request.user as { sub?: string } | undefined)?.sub ?? request.ip),
});
app.post('/v2/models/:model/infer', (request, reply) => {
  const path = Math.random() < 0.9 ? pathA! : pathB!;
  // The body is the Buffer as received; passed with its content type, reply-from sends it as is (it would JSON-encode
  // a request.body it finds by itself under application/json, Buffer object included).
  return reply.from(path, { body: request.body as Buffer, contentType: request.headers['content-type'] ?? 'application/octet-stream' });
});
const address = await app.listen({ port: Number(portArg ?? 0), host: '127.0.0.1' });
process.stdout.write(`ready ${address}\n`);
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => process.exit(0));
