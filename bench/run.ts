// `npm run bench` entry: a fair proxy benchmark (fixed nginx backend, gateway, fastify, http-proxy, nginx; 3 rounds) + ONNX rows.
// Usage: node dist/bench/run.js [--quick] [--only target,...] [--skip-onnx] [--rounds N] [--gateway-node-options FLAGS]

import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { chartSvg } from './chart.js';
import { DEFAULT_TIMINGS, DISTURBED_PCT, measure, QUICK_TIMINGS, type Request, type RoundFigures, type Timings } from './measure.js';
import { countHits, findNginx, NGINX_WORKERS, nginxVersion, startBackend } from './nginx.js';
import { ONNX_PLACEMENT, onnxRows, type OnnxFigures } from './onnx.js';
import { grpcMarkdown, grpcRows } from './grpc.js';
import { cpuReading, DRIVER_CORE, foreignPct, killAll, log, onInterrupt, PIN, run, sleep, stop, stopAll, TARGET_CORE, waitQuiet } from './proc.js';
import { goals, markdown, splitProblems, summarizeTarget, type MachineFacts, type TargetSummary } from './report.js';
import { CLI, DESCRIPTIONS, GATEWAY_LOGGING_NOTE, PATH_A, PATH_B, PATH_SPLIT, ROOT, startTarget, TARGET_NAMES, type TargetName } from './targets.js';
import { writeWrkScript } from './wrk.js';

/** Before each target: wait until no core is busier than this with other processes. */
const QUIET_PCT = 15;
/** Disturbed target rounds measured again, at most, per run. */
const MAX_RETRIES = 6;

const USAGE = `Usage: node dist/bench/run.js [--quick] [--only ${TARGET_NAMES.join(',')},onnx] [--skip-onnx] [--rounds N]
  --quick      1 round, short windows (a smoke run, ~2 min)
  --only       run only these targets (add "onnx" to keep the ONNX rows)
  --skip-onnx  leave out the ONNX rows (batching on/off, JSON vs binary)
  --rounds N   rounds of every target (default 3; --quick: 1)
  --gateway-node-options FLAGS
               Node/V8 flags for the gateway targets only (e.g. "--max-semi-space-size=4"), stated in the report`;

function which(bin: string): string | undefined {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':').concat(['/usr/sbin', '/usr/local/sbin'])) {
    const file = path.join(dir, bin);
    if (existsSync(file)) return file;
  }
  return undefined;
}

/** nginx and wrk, or a clear message and exit 1; nginx is installed from Debian when running as root. */
function preconditions(needOnnx: boolean): { nginx: string } {
  let nginx = findNginx();
  if (!nginx && process.getuid?.() === 0 && which('apt-get')) {
    log('nginx not found; running as root: apt-get install -y nginx');
    try {
      execFileSync('apt-get', ['install', '-y', 'nginx'], { stdio: 'ignore' });
    } catch {
      execFileSync('apt-get', ['update'], { stdio: 'ignore' });
      execFileSync('apt-get', ['install', '-y', 'nginx'], { stdio: 'ignore' });
    }
    nginx = findNginx();
  }
  const missing = [...(nginx ? [] : ['nginx']), ...(which('wrk') ? [] : ['wrk'])];
  if (missing.length > 0) {
    process.stderr.write(`bench: ${missing.join(' and ')} not found. Install: sudo apt-get install -y nginx wrk\n`);
    process.exit(1);
  }
  for (const file of [CLI, path.join(ROOT, 'dist/bench/gc-probe.js'), path.join(ROOT, 'dist/bench/driver.js')])
    if (!existsSync(file)) {
      process.stderr.write(`bench: ${path.relative(ROOT, file)} is missing: run npm run build first\n`);
      process.exit(1);
    }
  if (needOnnx && !existsSync(path.join(ROOT, 'examples/models/mlp-large.onnx'))) {
    process.stderr.write('bench: examples/models/mlp-large.onnx is missing: run npm run models first (or pass --skip-onnx)\n');
    process.exit(1);
  }
  return { nginx: nginx! };
}

function machineFacts(nginx: string): MachineFacts {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const wrk = (() => {
    try {
      return execFileSync('wrk', ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
        .split('\n')[0]!
        .trim();
    } catch (err) {
      return (
        String((err as { stdout?: string }).stdout ?? '')
          .split('\n')[0]
          ?.trim() || 'wrk'
      );
    }
  })();
  return {
    date: new Date().toISOString(),
    cpuModel: /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1]?.trim() ?? os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    kernel: `${os.type()} ${os.release()}`,
    node: `Node ${process.version}`,
    nginx: nginxVersion(nginx).replace(/^nginx version:\s*/, 'nginx '),
    wrk: wrk.replace(/\s+Copyright.*$/, ''),
    loadAtStart: os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' '),
    pinning: PIN
      ? `yes (taskset): drivers (wrk, Node driver) and the shared backend nginx on core ${DRIVER_CORE}, the measured target on core ${TARGET_CORE}`
      : 'no (taskset missing or one core): every process shares the cores',
    placement:
      'the proxies forward to one shared backend nginx (pinned with the drivers); "direct" is its own fresh backend nginx on the target core, access log off',
    gatewayLogging: GATEWAY_LOGGING_NOTE,
    nginxWorkers: `master_process on, ${NGINX_WORKERS} worker per instance (backend, direct and proxy), access_log off except the shared backend's per-path counter (buffered)`,
    onnxPlacement: ONNX_PLACEMENT,
    notes: [],
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      'skip-onnx': { type: 'boolean', default: false },
      rounds: { type: 'string' },
      'gateway-node-options': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const only = values.only
    ?.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const unknown = only?.filter((n) => n !== 'onnx' && !(TARGET_NAMES as readonly string[]).includes(n)) ?? [];
  if (unknown.length > 0) {
    process.stderr.write(`bench: --only: unknown target(s) ${unknown.join(', ')}\n${USAGE}\n`);
    process.exit(2);
  }
  const targets = TARGET_NAMES.filter((n) => !only || only.includes(n));
  const withOnnx = !values['skip-onnx'] && (!only || only.includes('onnx'));
  const timings: Timings = { ...(values.quick ? QUICK_TIMINGS : DEFAULT_TIMINGS) };
  if (values.rounds !== undefined) timings.rounds = Math.max(1, Number(values.rounds) || 1);

  const { nginx } = preconditions(withOnnx);
  // The bench process itself (checks, /proc readings) stays off the target core.
  if (PIN) execFileSync('taskset', ['-a', '-p', '-c', DRIVER_CORE, String(process.pid)], { stdio: 'ignore' });
  const gatewayNodeOptions = values['gateway-node-options']?.trim() ?? '';
  const meta = machineFacts(nginx);
  meta.gatewayNodeOptions = gatewayNodeOptions || 'none';
  // The load average lags (it still counts the last minute's work); what others use right now is the better warning.
  const before = cpuReading();
  await sleep(1000);
  const othersAtStart = foreignPct(before, cpuReading());
  if (othersAtStart > QUIET_PCT)
    meta.warning = `other processes used ${othersAtStart.toFixed(0)} % of a core when the bench started; it waits for quiet before each target and measures disturbed rounds again`;
  const started = Date.now();
  log(`${meta.cpuModel} × ${meta.cores}, ${meta.kernel}, ${meta.node}, ${meta.nginx}; load ${meta.loadAtStart}; pinning ${PIN ? 'on' : 'off'}`);
  const work = await mkdtemp(path.join(os.tmpdir(), 'mg-bench-'));
  onInterrupt(() => rmSync(work, { recursive: true, force: true }));
  let ok = false;
  try {
    const token = (await run('token', process.execPath, [CLI, 'token', '--scope', 'iris:infer', '--sub', 'bench', '--ttl', '2h'])).trim();
    if (!/^[\w-]+\.[\w-]+\.[\w-]+$/.test(token)) throw new Error(`model-gateway token printed no JWT: ${token.slice(0, 200)}`);
    const body = JSON.stringify({ inputs: [{ name: 'input', shape: [1, 4], datatype: 'FP32', data: [5.1, 3.5, 1.4, 0.2] }] });
    const headers = { 'content-type': 'application/json', authorization: `Bearer ${token}` };
    const scripts: Record<string, string> = {};
    for (const p of [PATH_A, PATH_SPLIT])
      scripts[p] = await writeWrkScript(path.join(work, `${p.split('/')[3]}.lua`), { method: 'POST', path: p, body, headers });
    const req: Request = { script: scripts[PATH_A]!, body, headers, scripts };

    const hitsLog = path.join(work, 'backend-hits.log');
    const backend = await startBackend(nginx, 'backend', path.join(work, 'backend'), { accessLog: hitsLog, core: DRIVER_CORE });
    log(`shared backend nginx on ${backend.url} (core ${PIN ? DRIVER_CORE : 'any'})`);

    const rounds: RoundFigures[] = [];
    const disturbed: RoundFigures[] = [];
    let retries = 0;
    let offset = 0;
    const adminToken = 'bench-admin-token-0123456789';
    for (let round = 1; round <= timings.rounds; round++) {
      const order = targets.map((_, i) => targets[(i + round - 1) % targets.length]!);
      log(`round ${round}/${timings.rounds}: ${order.join(', ')}`);
      for (const name of order) {
        for (let attempt = 1; ; attempt++) {
          const quiet = await waitQuiet(QUIET_PCT, values.quick ? 20_000 : 90_000);
          offset = countHits(hitsLog, offset).offset;
          const t = await startTarget(name, { nginx, work, backend: backend.url, round, adminToken, gatewayNodeOptions });
          log(`${name}: ready in ${t.readyMs.toFixed(0)} ms on ${t.url}`);
          let figures: RoundFigures;
          try {
            const measured = await measure(t, round, req, timings);
            await t.stop();
            await sleep(300); // the backend's access log flushes every 200 ms
            const counted = countHits(hitsLog, offset);
            offset = counted.offset;
            figures = { ...measured, backendHits: counted.hits, backendNon2xx: counted.non2xx, attempt, quietBefore: quiet };
          } finally {
            await t.stop();
          }
          // A round another process disturbed is measured again, once per target and round, a few times per run.
          if (figures.foreignPct > DISTURBED_PCT && attempt === 1 && retries < MAX_RETRIES) {
            retries++;
            log(`${name}: round ${round} was disturbed by other processes (${figures.foreignPct.toFixed(0)} % of a core); measuring it again`);
            disturbed.push(figures);
            continue;
          }
          rounds.push(figures);
          break;
        }
      }
    }

    const waited = rounds.filter((r) => r.quietBefore.waitedMs > 1000);
    if (waited.length > 0)
      meta.notes.push(
        `Other processes were using the cores: before ${waited.length} target round(s) the bench waited for a quiet machine (${waited.map((r) => `${r.target} r${r.round} ${(r.quietBefore.waitedMs / 1000).toFixed(0)} s`).join(', ')}).`,
      );
    if (disturbed.length > 0)
      meta.notes.push(
        `${disturbed.length} target round(s) were disturbed by other processes (other processes used > ${DISTURBED_PCT} % of a core during a measured window) and measured again: ${disturbed.map((r) => `${r.target} r${r.round} (${r.foreignPct.toFixed(0)} %)`).join(', ')}; the first attempts are in the JSON (disturbedAndRepeated).`,
      );
    const still = rounds.filter((r) => r.foreignPct > DISTURBED_PCT);
    if (still.length > 0)
      meta.notes.push(
        `**Still disturbed and kept: ${still.map((r) => `${r.target} r${r.round} (${r.foreignPct.toFixed(0)} %)`).join(', ')} — read those figures with care.**`,
      );

    let onnx: OnnxFigures | undefined;
    if (withOnnx) onnx = await onnxRows(work, values.quick ?? false);
    const grpc = withOnnx ? await grpcRows(work, values.quick ?? false) : undefined; // the gRPC rows ride with the ONNX ones
    await stop(backend.proc);

    const summaries: TargetSummary[] = targets.map((name: TargetName) => {
      const s = summarizeTarget(
        name,
        DESCRIPTIONS[name],
        rounds.filter((r) => r.target === name),
        { a: PATH_A, b: PATH_B },
        { driver: DRIVER_CORE, target: TARGET_CORE },
      );
      if (name === 'direct') {
        if (Object.keys(s.backendHits).length > 0) s.failures.push('requests reached the shared backend');
      } else s.failures.push(...splitProblems(s, name === 'gateway-all' || name === 'gateway-noauth' || name === 'fastify' ? 0.1 : 0));
      return s;
    });
    const goalList = goals(rounds);
    const report = markdown(meta, timings, summaries, goalList, onnx) + (grpc ? `\n${grpcMarkdown(grpc)}` : '');
    const outDir = path.join(ROOT, 'bench/results');
    await mkdir(outDir, { recursive: true });
    const stamp = meta.date.replace(/[:.]/g, '-');
    const base = path.join(outDir, `bench-${stamp}`);
    const durationS = Math.round((Date.now() - started) / 1000);
    await writeFile(
      `${base}.json`,
      `${JSON.stringify({ meta: { ...meta, durationS, quick: values.quick, targets }, timings, summaries, goals: goalList, rounds, disturbedAndRepeated: disturbed, onnx, grpc }, null, 2)}\n`,
    );
    await writeFile(`${base}.md`, report);
    const bars = (f: (s: TargetSummary) => TargetSummary['maxRps']): { label: string; value: TargetSummary['maxRps'] }[] =>
      summaries.map((s) => ({ label: s.target, value: f(s) }));
    await writeFile(
      `${base}.svg`,
      chartSvg(`model-gateway bench ${meta.date.slice(0, 16)}Z — ${meta.cpuModel} × ${meta.cores}, ${timings.rounds} round(s)`, [
        { title: 'max throughput (wrk, 64 connections)', unit: 'req/s', bars: bars((s) => s.maxRps) },
        { title: 'CPU per request (all target processes)', unit: 'CPU µs / request', bars: bars((s) => s.cpuUsPerReq), digits: 1 },
      ]),
    );
    process.stdout.write(`\n${report}\nwritten to ${path.relative(ROOT, base)}.{json,md,svg} (${durationS} s)\n`);
    ok = true;
  } finally {
    await stopAll();
    if (ok) await rm(work, { recursive: true, force: true });
    else log(`work dir kept for inspection: ${work}`);
  }
}

main().catch((err: unknown) => {
  log(`failed: ${(err as Error).stack ?? String(err)}`);
  killAll();
  process.exitCode = 1;
});
