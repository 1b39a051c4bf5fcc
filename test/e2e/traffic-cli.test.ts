// The operator CLI against a real gateway process: status, shift, reload, and clear failures for bad input or access.

import test from 'ava';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { stringify } from 'yaml';
import { irisRequest, postJson, runCli, spawnGateway, type GatewayProcess } from '../helpers/gateway.js';
import { closedPort } from '../helpers/jwt.js';
import { ADMIN_TOKEN, fileConfig, irisVersion, tempDir } from '../helpers/traffic.js';

const versions = { '1': irisVersion('iris-v1.onnx'), '2': irisVersion('iris-v2.onnx') };
const config = (weights: Record<string, number>) =>
  fileConfig({ iris: { versions, weights, sticky: { header: 'x-user-id' }, shadow: { targets: [{ version: '2', percent: 100 }] } } });

let gw: GatewayProcess;
let adminUrl: string;
let file: string;
const env = () => ({ ...process.env, MODEL_GATEWAY_ADMIN_TOKEN: ADMIN_TOKEN, MODEL_GATEWAY_ADMIN_URL: adminUrl });

test.before(async () => {
  file = path.join(await tempDir('mg-cli-'), 'gateway.yaml');
  await writeFile(file, stringify(config({ '1': 90, '2': 10 })));
  gw = await spawnGateway(file);
  adminUrl = /admin API on (http:\/\/\S+)/.exec(gw.stderr())![1]!;
});
test.after.always(() => gw?.stop());

test.serial('status: a readable summary of versions, weights, their source, shadows and the last reload', async (t) => {
  for (let i = 0; i < 10; i++) await postJson(`${gw.url}/v2/models/iris/versions/1/infer`, irisRequest());
  const { code, stdout, stderr } = await runCli(['status'], env());
  t.is(code, 0, stderr);
  t.regex(stdout, new RegExp(`^gateway at ${adminUrl}: generation 1, config ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(watched\\)\\n`));
  t.regex(stdout, /last reload: APPLIED \(start, /);
  t.regex(stdout, /iris {2}ready {2}weights from config, sticky by header x-user-id/);
  t.regex(stdout, /VERSION +WEIGHT +SHARE +READY +SHADOW\n +1 +90 +90\.0% +yes +-\n +2 +10 +10\.0% +yes +100% of other versions' traffic/);
  t.regex(stdout, /shadow 1 → 2: \d+ compared, agreement /);
  const json = await runCli(['status', '--json'], env());
  t.is(json.code, 0);
  t.like(JSON.parse(json.stdout), { gateway: { generation: 1 }, models: [{ name: 'iris', weights: { '1': 90, '2': 10 } }] });
});

test.serial('shift: sets a runtime override and says so; --reset returns to the config', async (t) => {
  const shifted = await runCli(['shift', 'iris', '1=75', '2=25'], env());
  t.is(shifted.code, 0, shifted.stderr);
  t.is(shifted.stdout.split('\n')[0], 'iris: weights 1=90 2=10 → 1=75 2=25 (1 75.0%, 2 25.0%)');
  t.regex(shifted.stdout, /runtime override set through the admin API/);
  t.regex((await runCli(['status'], env())).stdout, /RUNTIME OVERRIDE since .* \(config: 1=90 2=10\)/);
  const reset = await runCli(['shift', 'iris', '--reset'], env());
  t.is(reset.code, 0, reset.stderr);
  t.regex(reset.stdout, /^iris: weights 1=75 2=25 → 1=90 2=10 .*\n {2}the config's weights apply/);
});

test.serial('reload: applies an edited file and reports what it did with the backends', async (t) => {
  await writeFile(file, stringify(config({ '1': 50, '2': 50 })));
  const { code, stdout, stderr } = await runCli(['reload'], env());
  t.is(code, 0, stderr);
  // The watcher may have applied the edit first; then the explicit reload finds nothing to do.
  t.regex(stdout, /^reload: (APPLIED|UNCHANGED) \(admin, .*\); generation 2\n/);
  t.regex((await runCli(['status'], env())).stdout, /\n +1 +50 +50\.0% .*\n +2 +50 +50\.0%/);
});

const fails = test.macro({
  async exec(t, args: string[], extraEnv: Record<string, string | undefined>, code: number, message: RegExp) {
    const closed = `http://127.0.0.1:${await closedPort()}`;
    const result = await runCli(
      args.map((a) => (a === 'CLOSED' ? closed : a)),
      { ...env(), ...extraEnv },
    );
    t.is(result.code, code, result.stdout);
    t.regex(result.stderr, message);
  },
  title: (given = '') => `CLI fails clearly: ${given}`,
});

test(
  'an unknown version',
  fails,
  ['shift', 'iris', '1=50', '3=50'],
  {},
  1,
  /PUT \/admin\/models\/iris\/weights failed with 400: invalid weights for model 'iris': version '3' is not one of 1, 2/,
);
test('an unknown model', fails, ['shift', 'nope', '1=1'], {}, 1, /failed with 404: unknown model 'nope'/);
test('a malformed weight', fails, ['shift', 'iris', '1=half'], {}, 2, /'1=half' is not VERSION=WEIGHT with a non-negative integer weight/);
test('no weights at all', fails, ['shift', 'iris'], {}, 2, /name at least one VERSION=WEIGHT/);
test('a version given twice', fails, ['shift', 'iris', '1=1', '1=2'], {}, 2, /version '1' is given twice/);
test('an unknown flag', fails, ['status', '--verbose'], {}, 2, /Unknown option '--verbose'/);
test(
  'a wrong token',
  fails,
  ['status'],
  { MODEL_GATEWAY_ADMIN_TOKEN: 'not-the-admin-token-0000' },
  1,
  /the admin API refused the token \(the admin bearer token is not valid\)/,
);
test('no token', fails, ['status'], { MODEL_GATEWAY_ADMIN_TOKEN: undefined }, 1, /no admin token: pass --token or set MODEL_GATEWAY_ADMIN_TOKEN/);
test(
  'an admin API that is not there',
  fails,
  ['status', '--admin-url', 'CLOSED'],
  {},
  1,
  /cannot reach the admin API at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\); is the gateway running/,
);
test('a bad admin URL', fails, ['status', '--admin-url', 'not a url'], {}, 2, /--admin-url: 'not a url' is not a URL/);
