// Config for auth and rate limits: every mistake is reported by path at start-up, never on a request.

import test from 'ava';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { ROOT, irisModels } from '../helpers/gateway.js';

const issuer = { issuer: 'https://idp', audiences: ['gw'], algorithms: ['ES256'], jwks: { url: 'https://idp/jwks.json' } };

const invalid = test.macro({
  async exec(t, extra: Record<string, unknown>, problem: RegExp) {
    const err = await t.throwsAsync(parseConfig({ models: irisModels(), ...extra }, { baseDir: ROOT, source: 'test' }));
    t.true(err instanceof ConfigError);
    t.true(
      (err as ConfigError).problems.some((p) => problem.test(p)),
      (err as ConfigError).problems.join('\n'),
    );
  },
  title: (title = '') => `config rejects ${title}`,
});

test(
  'an issuer without a JWKS source',
  invalid,
  { auth: { issuers: [{ ...issuer, jwks: {} }] } },
  /^auth\.issuers\.0\.jwks: set exactly one of jwks\.file, jwks\.keys or jwks\.url/,
);
test(
  'two JWKS sources',
  invalid,
  { auth: { issuers: [{ ...issuer, jwks: { url: 'https://idp/j', keys: [{}] } }] } },
  /^auth\.issuers\.0\.jwks: set exactly one/,
);
test(
  'a JWKS file that does not exist (relative to the config directory)',
  invalid,
  { auth: { issuers: [{ ...issuer, jwks: { file: 'keys.json' } }] } },
  /^auth\.issuers\.0\.jwks\.file: file not found \(.*\/keys\.json\)$/,
);

test('a relative JWKS file resolves against the config directory', async (t) => {
  const config = await parseConfig(
    { models: irisModels(), auth: { issuers: [{ ...issuer, jwks: { file: 'examples/dev-keys/jwks.json' } }] } },
    { baseDir: ROOT, source: 'test' },
  );
  t.is(config.auth!.issuers[0]!.jwks.file, `${ROOT}/examples/dev-keys/jwks.json`);
});
test('an HMAC algorithm', invalid, { auth: { issuers: [{ ...issuer, algorithms: ['HS256'] }] } }, /^auth\.issuers\.0\.algorithms\.0:/);
test(
  'a JWKS URL that is not http(s)',
  invalid,
  { auth: { issuers: [{ ...issuer, jwks: { url: 'file:///etc/keys' } }] } },
  /^auth\.issuers\.0\.jwks\.url: jwks\.url must be an http\(s\) URL/,
);
test(
  'a clock tolerance over 5 minutes',
  invalid,
  { auth: { issuers: [{ ...issuer, clockToleranceSeconds: 3600 }] } },
  /^auth\.issuers\.0\.clockToleranceSeconds:/,
);
test('the same issuer twice', invalid, { auth: { issuers: [issuer, issuer] } }, /^auth\.issuers: each issuer may be listed once/);
test(
  'an identity header that is reserved',
  invalid,
  { auth: { issuers: [issuer], identityHeaders: { subject: 'Authorization' } } },
  /^auth\.identityHeaders\.subject: this header is reserved/,
);
test(
  'model auth without an auth section',
  invalid,
  {
    models: irisModels({
      m: { versions: { '1': { backend: { kind: 'onnx', path: `${ROOT}/examples/models/iris-v1.onnx` } } }, auth: { allowAnonymous: true } },
    }),
  },
  /^models\.m\.auth: needs the top-level auth section/,
);
const rule = { name: 'r', key: { header: 'x-tenant' }, ratePerSecond: 1, burst: 1 };
test(
  'a claim key without auth',
  invalid,
  { rateLimits: { rules: [{ ...rule, key: { claim: 'sub' } }] } },
  /^rateLimits\.rules\.0\.key\.claim: a claim key needs the top-level auth section/,
);
test(
  'a rule on an unknown model',
  invalid,
  { rateLimits: { rules: [{ ...rule, models: ['nope'] }] } },
  /^rateLimits\.rules\.0\.models\.0: model 'nope' is not configured/,
);
test(
  'a rule on an unknown version',
  invalid,
  { rateLimits: { rules: [{ ...rule, models: ['iris'], versions: ['9'] }] } },
  /^rateLimits\.rules\.0\.versions\.0: no model of this rule has version '9'/,
);
test('a key without any source', invalid, { rateLimits: { rules: [{ ...rule, key: {} }] } }, /^rateLimits\.rules\.0\.key: set at least one of/);
test(
  'a key with model: false alone',
  invalid,
  { rateLimits: { rules: [{ ...rule, key: { model: false } }] } },
  /^rateLimits\.rules\.0\.key: set at least one of/,
);
test('duplicate rule names', invalid, { rateLimits: { rules: [rule, rule] } }, /^rateLimits\.rules: rule names must be unique/);
test('a zero rate', invalid, { rateLimits: { rules: [{ ...rule, ratePerSecond: 0 }] } }, /^rateLimits\.rules\.0\.ratePerSecond:/);
test('a fractional burst', invalid, { rateLimits: { rules: [{ ...rule, burst: 1.5 }] } }, /^rateLimits\.rules\.0\.burst:/);
test(
  'a redis URL without scheme',
  invalid,
  { rateLimits: { store: { kind: 'redis', url: 'localhost:6379' }, rules: [] } },
  /^rateLimits\.store\.url: url must start with redis:\/\//,
);

test('defaults, with their units', async (t) => {
  const config = await parseConfig({ models: irisModels(), auth: { issuers: [issuer] }, rateLimits: { rules: [rule] } }, { baseDir: ROOT, source: 'test' });
  t.like(config.auth, {
    realm: 'model-gateway',
    enforce: true,
    maxTokenBytes: 8192,
    forwardToken: false,
    tokenCache: { maxEntries: 10_000, maxTtlMs: 300_000 },
  });
  t.like(config.auth?.issuers[0], { clockToleranceSeconds: 30, jwks: { cacheMaxAgeMs: 600_000, cooldownMs: 30_000, timeoutMs: 5_000 } });
  t.deepEqual(config.auth?.identityHeaders, { subject: 'x-auth-subject', issuer: 'x-auth-issuer', claims: {} });
  t.deepEqual(config.auth?.admin, { read: { scopes: ['gateway:admin'], claims: {} }, write: { scopes: ['gateway:admin'], claims: {} } });
  t.like(config.rateLimits, { enforce: true, store: { kind: 'memory', maxKeys: 100_000 } });
  t.like(config.rateLimits?.rules[0], { operations: ['infer'], cost: 'request', failureMode: 'open' });
});
