// The CLI's dispatch, in process: version and help answer without loading a command, an unknown command is a usage
// error, and the failure line of a config error lists its problems.

import test from 'ava';
import { failureMessage, run, type CommandIo } from '../../src/commands/run.js';
import { ConfigError } from '../../src/config/load.js';
import { GATEWAY_VERSION } from '../../src/core/version.js';

function io(): CommandIo & { out: string; err: string } {
  const sink = { out: '', err: '' };
  return Object.assign(sink, { stdout: (t: string) => void (sink.out += t), stderr: (t: string) => void (sink.err += t), env: {} });
}

test('version prints the package version and exits 0', async (t) => {
  const o = io();
  t.is(await run(['version'], o), 0);
  t.is(o.out, `${GATEWAY_VERSION}\n`);
  t.is(await run(['--version'], io()), 0);
});

test('help lists every command; no command at all prints it too but exits 2', async (t) => {
  const o = io();
  t.is(await run(['help'], o), 0);
  for (const command of ['start', 'serve-model', 'status', 'shift', 'reload', 'rollout', 'token', 'mesh render', 'check-config', 'version']) {
    t.true(o.out.includes(`model-gateway ${command}`), command);
  }
  t.is(await run([], io()), 2);
});

test('an unknown command is a usage error (exit 2) that names it; a name from Object.prototype is unknown too', async (t) => {
  for (const name of ['bogus', 'toString', '__proto__']) {
    const o = io();
    t.is(await run([name], o), 2);
    t.regex(o.err, new RegExp(`unknown command '${name}'`));
  }
});

test('commands get the io they run with: token writes the JWT to the given stdout', async (t) => {
  const o = io();
  t.is(await run(['token', '--scope', 'iris:infer'], o), 0);
  t.regex(o.out, /^[\w-]+\.[\w-]+\.[\w-]+\n$/);
  t.regex(o.err, /DEVELOPMENT-ONLY/);
});

test('a failed command is one line; a config error keeps its list of problems', (t) => {
  t.is(failureMessage(new Error('boom')), 'model-gateway: boom\n');
  t.is(failureMessage(new ConfigError('x.yaml', ['a: bad', 'b: worse'])), 'invalid config x.yaml:\n  - a: bad\n  - b: worse\n');
});
