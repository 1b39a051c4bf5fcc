// Property tests over the whole request path of a real gateway: random and mutated OIP bodies, headers, tokens and
// binary tensor bodies always get a JSON 4xx/5xx or a valid 200 — never a 500, a hang or a dead process.
// Failing inputs found here are kept in test/fixtures/fuzz/regressions.json and replayed on every run.

import test from 'ava';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Agent, request } from 'undici';
import type { RunningGateway } from '../../src/main.js';
import { gatewayConfig, irisModels, irisRequest, ROOT, startTestGateway } from '../helpers/gateway.js';
import { ecKey, tokenFor } from '../helpers/jwt.js';

const ISS = 'https://fuzz-idp.example';
const AUD = 'model-gateway';
const key = ecKey('fuzz-1');
const nowS = Math.floor(Date.now() / 1000);
const VALID_TOKEN = tokenFor(key, { iss: ISS, aud: AUD, sub: 'fuzzer', scope: 'iris:infer', iat: nowS, exp: nowS + 3600 });
/** Each request must be answered within this (generous: two cores shared with other test runs). */
const PER_REQUEST_TIMEOUT_MS = 10_000;
const RUNS = 120;

let gw: RunningGateway;
let agent: Agent;

test.before(async () => {
  gw = await startTestGateway({
    ...gatewayConfig({ models: { ...irisModels(), iris: { ...(irisModels().iris as object), auth: { infer: { scopes: ['iris:infer'] } } } } }),
    auth: { issuers: [{ issuer: ISS, audiences: [AUD], algorithms: ['ES256'], jwks: { keys: [key.jwk] } }] },
  });
  agent = new Agent({ connections: 4, pipelining: 1 });
});

test.after.always(async () => {
  await agent?.close();
  await gw?.stop();
});

interface Probe {
  path: string;
  headers: Record<string, string>;
  body: string | Uint8Array;
}

interface Outcome {
  status: number;
  /** The JSON part: the whole body, or for a binary tensor response its first `inference-header-content-length` bytes. */
  text: string;
}

async function send(probe: Probe): Promise<Outcome> {
  const res = await request(`${gw.url}${probe.path}`, {
    method: 'POST',
    dispatcher: agent,
    headers: probe.headers,
    body: probe.body,
    signal: AbortSignal.timeout(PER_REQUEST_TIMEOUT_MS),
  });
  const bytes = Buffer.from(await res.body.arrayBuffer());
  const jsonLength = Number(res.headers['inference-header-content-length'] ?? bytes.length);
  if (!Number.isInteger(jsonLength) || jsonLength < 0 || jsonLength > bytes.length) return { status: res.statusCode, text: `<binary response with a bad inference-header-content-length ${String(res.headers['inference-header-content-length'])}>` };
  return { status: res.statusCode, text: bytes.subarray(0, jsonLength).toString('utf8') };
}

/** The gateway's contract for any input: a valid OIP 200, or a JSON `{"error": string}` with a 4xx/5xx other than 500. */
function checkOutcome(o: Outcome): string | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(o.text);
  } catch {
    return `status ${o.status} with a non-JSON body: ${o.text.slice(0, 200)}`;
  }
  const body = parsed as Record<string, unknown>;
  if (o.status === 200) {
    if (!Array.isArray(body.outputs) || body.model_name !== 'iris') return `200 that is not an OIP inference response: ${o.text.slice(0, 200)}`;
    return undefined;
  }
  if (o.status < 400 || o.status > 599) return `unexpected status ${o.status}`;
  if (o.status === 500) return `500 (an unexpected error inside the gateway): ${o.text.slice(0, 200)}`;
  if (typeof body.error !== 'string') return `status ${o.status} without {"error": string}: ${o.text.slice(0, 200)}`;
  return undefined;
}

/** Statuses seen per property, logged so a run shows how deep the inputs got (not just 401s and 400s). */
const tallies = new Map<string, Record<number, number>>();

async function probeHolds(probe: Probe, tally = 'replay'): Promise<boolean> {
  const outcome = await send(probe);
  const counts = tallies.get(tally) ?? {};
  counts[outcome.status] = (counts[outcome.status] ?? 0) + 1;
  tallies.set(tally, counts);
  const problem = checkOutcome(outcome);
  if (problem !== undefined) throw new Error(problem);
  return true;
}

// --- Generators ---------------------------------------------------------------------------------------------------

const DATATYPES = ['BOOL', 'UINT8', 'UINT16', 'UINT32', 'UINT64', 'INT8', 'INT16', 'INT32', 'INT64', 'FP16', 'FP32', 'FP64', 'BYTES'];
const weirdNumber = fc.oneof(
  fc.integer({ min: -3, max: 8 }),
  fc.constantFrom(0, -1, 1e9, 2 ** 31, 2 ** 53 + 1, -(2 ** 63), 1e308, 0.5, Number.MAX_SAFE_INTEGER),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
);
const anyValue = fc.oneof(fc.jsonValue({ maxDepth: 3 }), weirdNumber, fc.string({ maxLength: 20 }));
const datatype = fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...DATATYPES) }, { weight: 1, arbitrary: anyValue });
const shape = fc.oneof({ weight: 4, arbitrary: fc.array(weirdNumber, { minLength: 0, maxLength: 4 }) }, { weight: 1, arbitrary: anyValue });
const data = fc.oneof(
  fc.array(fc.oneof(weirdNumber, fc.boolean(), fc.string({ maxLength: 8 })), { maxLength: 24 }),
  fc.array(fc.array(weirdNumber, { maxLength: 6 }), { maxLength: 6 }),
  anyValue,
);
const input = fc.record(
  { name: fc.oneof(fc.constant('input'), fc.string({ maxLength: 12 }), anyValue), shape, datatype, data, parameters: fc.oneof(fc.dictionary(fc.string({ maxLength: 12 }), anyValue, { maxKeys: 3 }), anyValue) },
  { requiredKeys: [] },
);
const oipBody = fc.record(
  {
    id: anyValue,
    parameters: fc.oneof(fc.dictionary(fc.string({ maxLength: 20 }), anyValue, { maxKeys: 3 }), anyValue),
    inputs: fc.oneof({ weight: 5, arbitrary: fc.array(input, { maxLength: 3 }) }, { weight: 1, arbitrary: anyValue }),
    outputs: fc.oneof(fc.array(fc.record({ name: fc.oneof(fc.constant('label'), fc.string({ maxLength: 8 })), parameters: anyValue }, { requiredKeys: [] }), { maxLength: 3 }), anyValue),
  },
  { requiredKeys: [] },
);

/** A valid request with one byte replaced, deleted or inserted: near-misses reach the deepest code. */
const VALID_TEXT = JSON.stringify(irisRequest([[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]]));
const mutatedText = fc
  .tuple(fc.nat({ max: VALID_TEXT.length - 1 }), fc.constantFrom('replace', 'delete', 'insert', 'digit'), fc.string({ minLength: 1, maxLength: 3 }), fc.integer({ min: 0, max: 9 }))
  .map(([at, op, s, d]) => {
    if (op === 'delete') return VALID_TEXT.slice(0, at) + VALID_TEXT.slice(at + 1);
    // A digit swapped for another keeps the JSON well-formed: the value changes, so these reach the model.
    if (op === 'digit') return VALID_TEXT.replace(/\d/g, (m, offset: number) => (offset >= at && !VALID_TEXT.slice(at, offset).match(/\d/) ? String(d) : m));
    return VALID_TEXT.slice(0, at) + s + VALID_TEXT.slice(op === 'replace' ? at + 1 : at);
  });

const token = fc.oneof(
  { weight: 12, arbitrary: fc.constant(VALID_TOKEN) },
  { weight: 1, arbitrary: fc.string({ maxLength: 60 }).filter((s) => /^[\x21-\x7e]*$/.test(s)) },
  { weight: 1, arbitrary: fc.nat({ max: VALID_TOKEN.length - 1 }).map((n) => VALID_TOKEN.slice(0, n)) },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.nat({ max: VALID_TOKEN.length - 1 }), fc.constantFrom('A', '.', '-', '_', '%')).map(([at, c]) => VALID_TOKEN.slice(0, at) + c + VALID_TOKEN.slice(at + 1)),
  },
);
const headerValue = fc.string({ maxLength: 40 }).filter((s) => /^[\x20-\x7e]*$/.test(s)).map((s) => s.trim());
const headers = fc.record(
  {
    authorization: fc.oneof({ weight: 6, arbitrary: token.map((t) => `Bearer ${t}`) }, { weight: 1, arbitrary: headerValue }),
    'content-type': fc.oneof(fc.constant('application/json'), headerValue),
    'x-model-version': fc.oneof(fc.constantFrom('1', '2', '3', '', '../1'), headerValue),
    'x-request-id': headerValue,
    'x-shadow': fc.constantFrom('true', 'false', '1'),
    'x-forwarded-for': headerValue,
    traceparent: headerValue,
  },
  { requiredKeys: ['authorization'] },
);
const modelPath = fc.oneof(
  { weight: 6, arbitrary: fc.constant('/v2/models/iris/infer') },
  { weight: 1, arbitrary: fc.constantFrom('/v2/models/iris/versions/1/infer', '/v2/models/iris/versions/2/infer', '/v2/models/iris/versions/9/infer', '/v2/models/nope/infer', '/v2/models/iris/versions//infer') },
);

// --- Properties ---------------------------------------------------------------------------------------------------

const params = { numRuns: RUNS, endOnFailure: true, interruptAfterTimeLimit: 60_000 } as const;

const oipBodyProperty = () => fc.asyncProperty(modelPath, headers, oipBody, (p, h, b) => probeHolds({ path: p, headers: h, body: JSON.stringify(b) }, 'oip-body'));
const mutationProperty = () =>
  fc.asyncProperty(mutatedText, token, (body, tok) => probeHolds({ path: '/v2/models/iris/infer', headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json' }, body }, 'mutation'));

test.serial('fuzz: random OIP-shaped JSON bodies with random headers → JSON 4xx/5xx (never 500) or a valid 200', async (t) => {
  await fc.assert(oipBodyProperty(), params);
  t.log(`statuses: ${JSON.stringify(tallies.get('oip-body'))}`);
  t.pass();
});

test.serial('fuzz: single-byte mutations of a valid request → JSON 4xx/5xx (never 500) or a valid 200', async (t) => {
  await fc.assert(mutationProperty(), params);
  const counts = tallies.get('mutation') ?? {};
  t.log(`statuses: ${JSON.stringify(counts)}`);
  t.true((counts[200] ?? 0) > 0 && Object.keys(counts).some((k) => k.startsWith('4')), 'mutations reach both the model (200) and the validators (4xx)');
});

test.serial('fuzz: arbitrary bytes as the body → JSON 4xx/5xx (never 500)', async (t) => {
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 512 }), (bytes) => probeHolds({ path: '/v2/models/iris/infer', headers: { authorization: `Bearer ${VALID_TOKEN}`, 'content-type': 'application/octet-stream' }, body: bytes }, 'bytes')),
    params,
  );
  t.pass();
});

/** Binary tensor extension: a JSON header part of `claimed` bytes followed by raw bytes, with random sizes. */
const binaryBody = fc
  .record({
    json: fc.oneof(
      fc.constant({ inputs: [{ name: 'input', shape: [1, 4], datatype: 'FP32', parameters: { binary_data_size: 16 } }] }),
      fc.record({ inputs: fc.array(fc.record({ name: fc.constantFrom('input', 'x'), shape, datatype, parameters: fc.record({ binary_data_size: weirdNumber }, { requiredKeys: [] }) }, { requiredKeys: [] }), { maxLength: 2 }) }),
      oipBody,
    ),
    tail: fc.uint8Array({ maxLength: 64 }),
    claimedDelta: fc.oneof(fc.constant(0), fc.integer({ min: -20, max: 20 })),
    headerForm: fc.constantFrom('number', 'garbage', 'negative', 'huge'),
    binaryOutput: fc.boolean(),
  })
  .map(({ json, tail, claimedDelta, headerForm, binaryOutput }) => {
    const withOutputs = binaryOutput ? { ...(json as object), parameters: { binary_data_output: true } } : json;
    const text = Buffer.from(JSON.stringify(withOutputs));
    const claimed = { number: String(Math.max(0, text.length + claimedDelta)), garbage: 'twelve', negative: '-4', huge: '99999999999' }[headerForm];
    return { claimed, body: Buffer.concat([text, Buffer.from(tail)]) };
  });
/** Well-formed binary requests with random rows and values (NaN, ±Inf included), some asking for binary outputs. */
const exactBinaryBody = fc
  .record({ rows: fc.integer({ min: 1, max: 4 }), values: fc.float32Array({ minLength: 16, maxLength: 16 }), binaryOutput: fc.boolean() })
  .map(({ rows, values, binaryOutput }) => {
    const tensor = Buffer.from(values.buffer, 0, rows * 16);
    const json = Buffer.from(
      JSON.stringify({
        inputs: [{ name: 'input', shape: [rows, 4], datatype: 'FP32', parameters: { binary_data_size: tensor.length } }],
        ...(binaryOutput ? { parameters: { binary_data_output: true } } : {}),
      }),
    );
    return { claimed: String(json.length), body: Buffer.concat([json, tensor]) };
  });
const anyBinaryBody = fc.oneof(binaryBody, exactBinaryBody);

test.serial('fuzz: binary tensor bodies (inference-header-content-length) with random sizes and bytes → JSON 4xx/5xx (never 500) or a valid 200', async (t) => {
  await fc.assert(
    fc.asyncProperty(anyBinaryBody, ({ claimed, body }) =>
      send({ path: '/v2/models/iris/infer', headers: { authorization: `Bearer ${VALID_TOKEN}`, 'content-type': 'application/octet-stream', 'inference-header-content-length': claimed }, body }).then((o) => {
        const counts = tallies.get('binary') ?? {};
        counts[o.status] = (counts[o.status] ?? 0) + 1;
        tallies.set('binary', counts);
        const problem = checkOutcome(o);
        if (problem !== undefined) throw new Error(problem);
        return true;
      }),
    ),
    params,
  );
  t.log(`statuses: ${JSON.stringify(tallies.get('binary'))}`);
  t.pass();
});

// --- Regressions --------------------------------------------------------------------------------------------------

interface Regression {
  name: string;
  path?: string;
  headers?: Record<string, string>;
  /** The body as text, or `{"repeat": s, "times": n}` for bodies too big to commit. */
  body: string | { prefix?: string; repeat: string; times: number; suffix?: string };
  /** `valid` uses a fresh valid token; otherwise the Authorization value as given. */
  auth?: 'valid' | string;
}

interface RegressionFile {
  /** Seeds of failures fast-check found; each replays the property named with it. */
  seeds: { property: 'oip-body' | 'mutation'; seed: number; numRuns: number }[];
  cases: Regression[];
}

const regressions = JSON.parse(readFileSync(path.join(ROOT, 'test/fixtures/fuzz/regressions.json'), 'utf8')) as RegressionFile;

function bodyOf(r: Regression): string {
  if (typeof r.body === 'string') return r.body;
  return `${r.body.prefix ?? ''}${r.body.repeat.repeat(r.body.times)}${r.body.suffix ?? ''}`;
}

const replay = test.macro({
  async exec(t, r: Regression) {
    const auth = r.auth === undefined || r.auth === 'valid' ? `Bearer ${VALID_TOKEN}` : r.auth;
    const outcome = await send({ path: r.path ?? '/v2/models/iris/infer', headers: { 'content-type': 'application/json', authorization: auth, ...r.headers }, body: bodyOf(r) });
    t.is(checkOutcome(outcome), undefined, `${outcome.status} ${outcome.text.slice(0, 300)}`);
    const live = await send({ path: '/v2/models/iris/infer', headers: { 'content-type': 'application/json', authorization: `Bearer ${VALID_TOKEN}` }, body: VALID_TEXT });
    t.is(live.status, 200, 'the gateway still serves afterwards');
  },
  title: (_ = '', r: Regression) => `fuzz regression: ${r.name}`,
});

for (const r of regressions.cases) test.serial(replay, r);

for (const s of regressions.seeds) {
  test.serial(`fuzz regression: seed ${s.seed} of ${s.property}`, async (t) => {
    if (s.property === 'oip-body') await fc.assert(oipBodyProperty(), { seed: s.seed, numRuns: s.numRuns, endOnFailure: true });
    else await fc.assert(mutationProperty(), { seed: s.seed, numRuns: s.numRuns, endOnFailure: true });
    t.pass();
  });
}
