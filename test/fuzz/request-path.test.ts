// Property tests over the whole request path of a real gateway: random and mutated OIP bodies, headers, tokens and
// binary tensor bodies always get a JSON 4xx/5xx or a valid 200 — never a 500, a hang or a dead process.
//
// Keeping a failure (test/fixtures/fuzz/regressions.json is read by this file only):
//   1. A failing property prints fast-check's report and then a ready-to-paste line such as
//        {"property":"bytes","seed":-1719381,"path":"37:1:0"},
//      naming the property (a key of PROPERTIES), the run's seed and the path to the shrunk counterexample.
//   2. Paste it into "seeds" in regressions.json (a "note" saying what it found is welcome).
//   3. Every run replays each entry with fc.check(PROPERTIES[property](), { seed, path }): exactly that shrunk
//      counterexample is sent again, so the test fails until the bug is fixed and guards against it afterwards.
//   Tokens are minted per run: a replay makes the same choices (positions, lengths) on a fresh valid token.
//   Hand-written inputs (readable, or too big for the generators) go to "cases" instead.

import test, { type ExecutionContext } from 'ava';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Agent, request } from 'undici';
import type { RunningGateway } from '../../src/app/gateway.js';
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
  if (!Number.isInteger(jsonLength) || jsonLength < 0 || jsonLength > bytes.length)
    return {
      status: res.statusCode,
      text: `<binary response with a bad inference-header-content-length ${String(res.headers['inference-header-content-length'])}>`,
    };
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

/** Judges one outcome: undefined when it is acceptable, else what is wrong. */
type Oracle = (o: Outcome) => string | undefined;

async function probeHolds(probe: Probe, tally: string, oracle: Oracle): Promise<boolean> {
  const outcome = await send(probe);
  const counts = tallies.get(tally) ?? {};
  counts[outcome.status] = (counts[outcome.status] ?? 0) + 1;
  tallies.set(tally, counts);
  const problem = oracle(outcome);
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
  {
    name: fc.oneof(fc.constant('input'), fc.string({ maxLength: 12 }), anyValue),
    shape,
    datatype,
    data,
    parameters: fc.oneof(fc.dictionary(fc.string({ maxLength: 12 }), anyValue, { maxKeys: 3 }), anyValue),
  },
  { requiredKeys: [] },
);
const oipBody = fc.record(
  {
    id: anyValue,
    parameters: fc.oneof(fc.dictionary(fc.string({ maxLength: 20 }), anyValue, { maxKeys: 3 }), anyValue),
    inputs: fc.oneof({ weight: 5, arbitrary: fc.array(input, { maxLength: 3 }) }, { weight: 1, arbitrary: anyValue }),
    outputs: fc.oneof(
      fc.array(fc.record({ name: fc.oneof(fc.constant('label'), fc.string({ maxLength: 8 })), parameters: anyValue }, { requiredKeys: [] }), { maxLength: 3 }),
      anyValue,
    ),
  },
  { requiredKeys: [] },
);

/** A valid request with one byte replaced, deleted or inserted: near-misses reach the deepest code. */
const VALID_TEXT = JSON.stringify(
  irisRequest([
    [5.1, 3.5, 1.4, 0.2],
    [6.2, 2.9, 4.3, 1.3],
  ]),
);
const mutatedText = fc
  .tuple(
    fc.nat({ max: VALID_TEXT.length - 1 }),
    fc.constantFrom('replace', 'delete', 'insert', 'digit'),
    fc.string({ minLength: 1, maxLength: 3 }),
    fc.integer({ min: 0, max: 9 }),
  )
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
    arbitrary: fc
      .tuple(fc.nat({ max: VALID_TOKEN.length - 1 }), fc.constantFrom('A', '.', '-', '_', '%'))
      .map(([at, c]) => VALID_TOKEN.slice(0, at) + c + VALID_TOKEN.slice(at + 1)),
  },
);
const headerValue = fc
  .string({ maxLength: 40 })
  .filter((s) => /^[\x20-\x7e]*$/.test(s))
  .map((s) => s.trim());
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
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      '/v2/models/iris/versions/1/infer',
      '/v2/models/iris/versions/2/infer',
      '/v2/models/iris/versions/9/infer',
      '/v2/models/nope/infer',
      '/v2/models/iris/versions//infer',
    ),
  },
);

/** Binary tensor extension: a JSON header part of `claimed` bytes followed by raw bytes, with random sizes. */
const binaryBody = fc
  .record({
    json: fc.oneof(
      fc.constant({ inputs: [{ name: 'input', shape: [1, 4], datatype: 'FP32', parameters: { binary_data_size: 16 } }] }),
      fc.record({
        inputs: fc.array(
          fc.record(
            { name: fc.constantFrom('input', 'x'), shape, datatype, parameters: fc.record({ binary_data_size: weirdNumber }, { requiredKeys: [] }) },
            { requiredKeys: [] },
          ),
          { maxLength: 2 },
        ),
      }),
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

// --- Properties ---------------------------------------------------------------------------------------------------

/** Every property sends one generated request and judges the answer; `tally` names its status counts. */
type FuzzProperty = fc.IAsyncPropertyWithHooks<[Probe]>;

function probing(tally: string, probes: fc.Arbitrary<Probe>, oracle: Oracle): FuzzProperty {
  return fc.asyncProperty(probes, (probe) => probeHolds(probe, tally, oracle));
}

const INFER = '/v2/models/iris/infer';

/**
 * Every property, by the name a stored seed uses, so each one can be replayed. A property is built afresh per run;
 * `oracle` judges each answer (the gateway's contract unless a test asks for another).
 */
const PROPERTIES = {
  'oip-body': (oracle: Oracle = checkOutcome) =>
    probing(
      'oip-body',
      fc.tuple(modelPath, headers, oipBody).map(([p, h, b]) => ({ path: p, headers: h, body: JSON.stringify(b) })),
      oracle,
    ),
  mutation: (oracle: Oracle = checkOutcome) =>
    probing(
      'mutation',
      fc
        .tuple(mutatedText, token)
        .map(([body, tok]) => ({ path: INFER, headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json' }, body })),
      oracle,
    ),
  bytes: (oracle: Oracle = checkOutcome) =>
    probing(
      'bytes',
      fc
        .uint8Array({ maxLength: 512 })
        .map((body) => ({ path: INFER, headers: { authorization: `Bearer ${VALID_TOKEN}`, 'content-type': 'application/octet-stream' }, body })),
      oracle,
    ),
  binary: (oracle: Oracle = checkOutcome) =>
    probing(
      'binary',
      anyBinaryBody.map(({ claimed, body }) => ({
        path: INFER,
        headers: { authorization: `Bearer ${VALID_TOKEN}`, 'content-type': 'application/octet-stream', 'inference-header-content-length': claimed },
        body,
      })),
      oracle,
    ),
} satisfies Record<string, (oracle?: Oracle) => FuzzProperty>;
type PropertyName = keyof typeof PROPERTIES;

/** A failure kept in regressions.json: replays the shrunk counterexample of `property` found with `seed`. */
interface SeedEntry {
  property: PropertyName;
  seed: number;
  /** fast-check's `counterexamplePath`: the run's index, then one shrink step per `:`. */
  path: string;
  /** What it found. */
  note?: string;
}

/**
 * Shrinking is on (a failure is reported as its smallest form) and bounded with the runs by the time limit: when a
 * hang makes every attempt wait PER_REQUEST_TIMEOUT_MS, the partly shrunk counterexample is reported instead.
 */
const params = { numRuns: RUNS, interruptAfterTimeLimit: 60_000, includeErrorInReport: true } as const;

/** fast-check's report of a failed run, then the regressions.json entry that replays it; undefined if it held. */
async function failureReport(property: PropertyName, details: fc.RunDetails<[Probe]>): Promise<string | undefined> {
  if (!details.failed) return undefined;
  const report = await fc.asyncDefaultReportMessage(details);
  // Interrupted or too many skips: there is no counterexample to replay.
  if (details.counterexamplePath === null) return report;
  const entry: SeedEntry = { property, seed: details.seed, path: details.counterexamplePath };
  return [
    report,
    '',
    'To keep this failure as a regression, add this line to "seeds" in test/fixtures/fuzz/regressions.json:',
    `  ${JSON.stringify(entry)},`,
    // Rarely a failure is caused by an earlier run (a stuck gateway fails everything after it), so the shrunk input
    // passes alone; the run's own index, without the shrink steps, then replays it as it was first found.
    `(if the shrunk case passes on its own, use "path": "${details.counterexamplePath.split(':')[0]!}", the input as first found)`,
  ].join('\n');
}

/** Runs one property with `params`; a failure fails the test with the report and the entry to keep. */
async function runProperty(t: ExecutionContext, name: PropertyName): Promise<void> {
  const report = await failureReport(name, await fc.check(PROPERTIES[name](), params));
  if (report !== undefined) t.fail(report);
}

/** Replays a stored entry: its counterexample is the first value run (if that passes, fast-check's next candidates). */
function replay(property: FuzzProperty, entry: Pick<SeedEntry, 'seed' | 'path'>): Promise<fc.RunDetails<[Probe]>> {
  return fc.check(property, { seed: entry.seed, path: entry.path, endOnFailure: true, includeErrorInReport: true });
}

test.serial('fuzz: random OIP-shaped JSON bodies with random headers → JSON 4xx/5xx (never 500) or a valid 200', async (t) => {
  await runProperty(t, 'oip-body');
  t.log(`statuses: ${JSON.stringify(tallies.get('oip-body'))}`);
  t.pass();
});

test.serial('fuzz: single-byte mutations of a valid request → JSON 4xx/5xx (never 500) or a valid 200', async (t) => {
  await runProperty(t, 'mutation');
  const counts = tallies.get('mutation') ?? {};
  t.log(`statuses: ${JSON.stringify(counts)}`);
  t.true((counts[200] ?? 0) > 0 && Object.keys(counts).some((k) => k.startsWith('4')), 'mutations reach both the model (200) and the validators (4xx)');
});

test.serial('fuzz: arbitrary bytes as the body → JSON 4xx/5xx (never 500)', async (t) => {
  await runProperty(t, 'bytes');
  t.log(`statuses: ${JSON.stringify(tallies.get('bytes'))}`);
  t.pass();
});

test.serial('fuzz: binary tensor bodies (inference-header-content-length) with random sizes and bytes → JSON 4xx/5xx (never 500) or a valid 200', async (t) => {
  await runProperty(t, 'binary');
  t.log(`statuses: ${JSON.stringify(tallies.get('binary'))}`);
  t.pass();
});

// --- Regressions --------------------------------------------------------------------------------------------------

/** `prefix + repeat × times + suffix`, for values too big to commit. */
interface Repeated {
  prefix?: string;
  repeat: string;
  times: number;
  suffix?: string;
}

interface Regression {
  name: string;
  path?: string;
  headers?: Record<string, string>;
  /** The body as text, or repeated. */
  body: string | Repeated;
  /** `valid` uses a fresh valid token; otherwise the Authorization value as given (text, or repeated). */
  auth?: 'valid' | string | Repeated;
}

interface RegressionFile {
  /** Failures fast-check found, each replayed through the property it names (see the top of this file). */
  seeds: SeedEntry[];
  cases: Regression[];
}

const regressions = JSON.parse(readFileSync(path.join(ROOT, 'test/fixtures/fuzz/regressions.json'), 'utf8')) as RegressionFile;

function expand(value: string | Repeated): string {
  if (typeof value === 'string') return value;
  return `${value.prefix ?? ''}${value.repeat.repeat(value.times)}${value.suffix ?? ''}`;
}

const replayCase = test.macro({
  async exec(t, r: Regression) {
    const auth = r.auth === undefined || r.auth === 'valid' ? `Bearer ${VALID_TOKEN}` : expand(r.auth);
    const outcome = await send({
      path: r.path ?? '/v2/models/iris/infer',
      headers: { 'content-type': 'application/json', authorization: auth, ...r.headers },
      body: expand(r.body),
    });
    t.is(checkOutcome(outcome), undefined, `${outcome.status} ${outcome.text.slice(0, 300)}`);
    const live = await send({
      path: '/v2/models/iris/infer',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${VALID_TOKEN}` },
      body: VALID_TEXT,
    });
    t.is(live.status, 200, 'the gateway still serves afterwards');
  },
  title: (_ = '', r: Regression) => `fuzz regression: ${r.name}`,
});

for (const r of regressions.cases) test.serial(replayCase, r);

for (const s of regressions.seeds) {
  test.serial(`fuzz regression: ${s.property} seed ${s.seed} path ${s.path}${s.note ? ` (${s.note})` : ''}`, async (t) => {
    if (!Object.hasOwn(PROPERTIES, s.property))
      return t.fail(`unknown property '${String(s.property)}' in regressions.json; one of: ${Object.keys(PROPERTIES).join(', ')}`);
    if (!Number.isInteger(s.seed) || typeof s.path !== 'string' || !/^\d+(:\d+)*$/.test(s.path))
      return t.fail(`not a {property, seed, path} entry: ${JSON.stringify(s)}`);
    const details = await replay(PROPERTIES[s.property](), s);
    if (details.failed) t.fail(await fc.asyncDefaultReportMessage(details));
    else t.pass();
  });
}

// --- The workflow itself ------------------------------------------------------------------------------------------

test.serial('fuzz workflow: a failing property prints a seeds entry that replays exactly its shrunk counterexample', async (t) => {
  // The real `binary` property, judged by an oracle that wrongly refuses every 200: a valid body fails it.
  const refuse200: Oracle = (o) => (o.status === 200 ? 'a 200 (this oracle refuses them)' : undefined);
  const found = await fc.check(PROPERTIES.binary(refuse200), { numRuns: RUNS });
  t.true(found.failed, 'some generated binary body is valid');
  const report = await failureReport('binary', found);
  // The line after the instruction is the entry, exactly as a person would copy it (with its trailing comma).
  const lines = report?.split('\n') ?? [];
  const line = lines[lines.findIndex((l) => l.startsWith('To keep this failure')) + 1];
  t.regex(line ?? '', /^ {2}\{.*\},$/, report);
  const entry = JSON.parse(line!.trim().replace(/,$/, '')) as SeedEntry;
  t.like(entry, { property: 'binary', seed: found.seed });
  t.regex(entry.path, /^\d+(:\d+)+$/, 'the counterexample was shrunk');
  // Replayed from the pasted entry alone: the first run is the shrunk counterexample, and it fails again.
  const replayed = await replay(PROPERTIES[entry.property](refuse200), entry);
  t.true(replayed.failed);
  t.is(replayed.numRuns, 1, 'the stored counterexample itself failed, not a later one');
  t.deepEqual(replayed.counterexample, found.counterexample);
});
