// Dev tokens: `model-gateway token` mints tokens the example config accepts, and the example trusts exactly the committed dev key.

import test from 'ava';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { loadConfig } from '../../src/config/load.js';
import { TokenVerifier } from '../../src/auth/verify.js';
import { createLogger } from '../../src/telemetry/log.js';
import { ROOT, runCli } from '../helpers/gateway.js';

const EXAMPLE = path.join(ROOT, 'examples/gateway.yaml');

test('the example config trusts the committed development JWKS and nothing else', async (t) => {
  const { config } = await loadConfig(EXAMPLE);
  const jwks = JSON.parse(await readFile(path.join(ROOT, 'examples/dev-keys/jwks.json'), 'utf8')) as { keys: unknown[] };
  t.is(config.auth?.issuers.length, 1);
  t.is(config.auth?.issuers[0]?.issuer, 'model-gateway-dev');
  t.is(config.auth?.issuers[0]?.jwks.file, path.join(ROOT, 'examples/dev-keys/jwks.json'));
  const priv = JSON.parse(await readFile(path.join(ROOT, 'examples/dev-keys/private.jwk.json'), 'utf8')) as Record<string, string>;
  const pub = jwks.keys[0] as Record<string, string>;
  t.deepEqual([priv.x, priv.y, priv.kid], [pub.x, pub.y, pub.kid]);
});

test('model-gateway token mints a token the example config verifies, with the asked-for claims', async (t) => {
  const { config } = await loadConfig(EXAMPLE);
  const minted = await runCli(['token', '--sub', 'carol', '--scope', 'iris:infer mlp:infer', '--claim', 'tenant=acme', '--claim', 'tier=3', '--ttl', '90s']);
  t.is(minted.code, 0, minted.stderr);
  t.regex(minted.stderr, /DEVELOPMENT-ONLY/);
  const verifier = new TokenVerifier(config.auth!, { now: Date.now, log: createLogger('silent') });
  const identity = await verifier.verify(minted.stdout.trim());
  t.is(identity.subject, 'carol');
  t.deepEqual([...identity.scopes], ['iris:infer', 'mlp:infer']);
  t.like(identity.claims, { tenant: 'acme', tier: 3, iss: 'model-gateway-dev', aud: 'model-gateway' });
  t.is((identity.claims.exp as number) - (identity.claims.iat as number), 90);
});

const refused = test.macro({
  async exec(t, args: string[], message: RegExp) {
    const result = await runCli(['token', ...args]);
    t.is(result.code, 1);
    t.regex(result.stderr, message);
    t.is(result.stdout, '');
  },
  title: (title = '') => `model-gateway token refuses ${title}`,
});
test('a bad ttl', refused, ['--ttl', 'soon'], /--ttl 'soon' is not a duration/);
test('a missing key file', refused, ['--key', '/nonexistent/key.json'], /cannot read the signing key/);
test('a public key', refused, ['--key', path.join(ROOT, 'examples/dev-keys/jwks.json')], /must be a private JWK/);
