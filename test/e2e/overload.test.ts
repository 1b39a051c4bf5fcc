// Process-wide overload protection with a real gateway process: eight concurrent maximum-size bodies are admitted by
// bytes (the rest refused with 503 before they are read) and the process's peak RSS stays under the cap; memory
// shedding refuses new inference (REST and gRPC alike) while the RSS is above its threshold; connections beyond
// server.maxConnections are closed at once. Every refusal is counted in /metrics.

import test from 'ava';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import http from 'node:http';
import net from 'node:net';
import { Overload } from '../../src/server/overload.js';
import { gatewayConfig, getJson, irisModels, irisRequest, postJson, ROOT, spawnGateway, startTestGateway, writeConfigFile } from '../helpers/gateway.js';

const MiB = 1024 * 1024;

/** An iris request of about `bytes` of JSON (rows of four numbers). */
function bigIrisBody(bytes: number): Buffer {
  const row = '[5.1,3.5,1.4,0.2]';
  const rows = Math.floor(bytes / (row.length + 1));
  const data = `[${Array.from({ length: rows }, () => row).join(',')}]`;
  return Buffer.from(`{"inputs":[{"name":"input","shape":[${rows},4],"datatype":"FP32","data":${data}}]}`);
}

function post(url: string, body: Buffer): Promise<{ status: number; retryAfter: string | undefined; json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${url}/v2/models/iris/infer`,
      { method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'content-length': body.length } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          resolve({
            status: res.statusCode ?? 0,
            retryAfter: res.headers['retry-after'] as string | undefined,
            json: JSON.parse(text.slice(0, 2000).startsWith('{"model_name"') ? '{}' : text) as Record<string, unknown>,
          });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const peakRssMiB = (pid: number): number => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

/** The gateway container of deploy/base: its server limits, NODE_OPTIONS and memory limit, as shipped. */
function deployed(): { server: Record<string, number>; nodeOptions: string[]; limitMiB: number } {
  const config = parse(readFileSync(path.join(ROOT, 'deploy/base/gateway.yaml'), 'utf8')) as { server: Record<string, number> };
  const deployment = parseAllDocuments(readFileSync(path.join(ROOT, 'deploy/base/deployment.yaml'), 'utf8'))
    .map((d) => d.toJS() as { kind?: string; spec?: { template: { spec: { containers: Container[] } } } })
    .find((d) => d.kind === 'Deployment')!;
  const gateway = deployment.spec!.template.spec.containers.find((c) => c.name === 'gateway')!;
  const nodeOptions = gateway.env.find((e) => e.name === 'NODE_OPTIONS')?.value ?? '';
  const limit = /^(\d+)Mi$/.exec(gateway.resources.limits.memory)!;
  const { maxBodyBytes, maxBufferedBodyBytes, shedAboveRssBytes } = config.server;
  return {
    server: { maxBodyBytes: maxBodyBytes!, maxBufferedBodyBytes: maxBufferedBodyBytes!, shedAboveRssBytes: shedAboveRssBytes! },
    nodeOptions: nodeOptions.split(' ').filter(Boolean),
    limitMiB: Number(limit[1]),
  };
}
interface Container {
  name: string;
  env: { name: string; value?: string }[];
  resources: { limits: { memory: string } };
}

test('eight concurrent maximum-size JSON bodies with the deploy/ settings: one admitted, seven refused with 503 + Retry-After before being read, peak RSS well under the container limit', async (t) => {
  const shipped = deployed();
  t.deepEqual(shipped.nodeOptions, ['--max-old-space-size=256']);
  const file = await writeConfigFile({
    ...gatewayConfig({ server: shipped.server, models: irisModels() }),
    telemetry: { metrics: { enabled: true } },
    admin: { port: 0, token: 'overload-admin-token-0123456789' },
  });
  const gw = await spawnGateway(file, [], shipped.nodeOptions);
  t.teardown(() => gw.stop('SIGKILL'));
  const body = bigIrisBody(shipped.server.maxBodyBytes! - 4096);
  const answers = await Promise.all(Array.from({ length: 8 }, () => post(gw.url, body)));
  const statuses = answers.map((a) => a.status).sort();
  // A decoded JSON body counts 20× its size: 160 MiB each, so a second one does not fit beside the first.
  t.deepEqual(statuses, [200, 503, 503, 503, 503, 503, 503, 503], JSON.stringify(answers.map((a) => [a.status, a.json.error])));
  for (const refused of answers.filter((a) => a.status === 503)) {
    t.is(refused.retryAfter, '1');
    t.regex(
      String(refused.json.error),
      new RegExp(`server\\.maxBufferedBodyBytes \\(${shipped.server.maxBufferedBodyBytes} bytes; a JSON body the gateway decodes counts 20× its size\\)`),
    );
  }
  const peak = peakRssMiB(gw.child.pid!);
  t.log(`peak RSS ${peak.toFixed(0)} MiB with 8 × 8 MiB JSON bodies offered, 1 admitted`);
  // Below the shedding threshold too, with room to spare under the limit.
  t.true(peak < shipped.server.shedAboveRssBytes! / MiB, `peak RSS ${peak.toFixed(0)} MiB (limit ${shipped.limitMiB} MiB)`);
  t.true(shipped.server.shedAboveRssBytes! / MiB < shipped.limitMiB);
  // Still serving, the budget given back, the refusals counted.
  t.is((await postJson(`${gw.url}/v2/models/iris/infer`, irisRequest())).status, 200);
  const admin = /admin API on (\S+)/.exec(gw.stderr())![1]!;
  const metrics = await (await fetch(`${admin}/metrics`)).text();
  t.regex(metrics, /model_gateway_overload_refused_total\{reason="body_budget"\} 7/);
  t.regex(metrics, /model_gateway_request_body_bytes_buffered 0/);
});

test('memory shedding: above the RSS threshold new inference gets 503 + Retry-After; health and metadata still answer; below it, served again', async (t) => {
  let rss = 100 * MiB;
  const overload = new Overload({ maxConnections: 0, maxBufferedBodyBytes: 0, shedAboveRssBytes: 200 * MiB }, () => rss);
  t.teardown(() => overload.close());
  const gw = await startTestGateway(gatewayConfig(), { overload });
  t.teardown(() => gw.stop());
  t.is((await postJson(`${gw.url}/v2/models/iris/infer`, irisRequest())).status, 200);
  rss = 300 * MiB;
  overload.sample();
  const shed = await postJson(`${gw.url}/v2/models/iris/infer`, irisRequest());
  t.is(shed.status, 503);
  t.is(shed.headers.get('retry-after'), '1');
  t.regex(String(shed.body.error), /memory is above server\.shedAboveRssBytes/);
  t.is((await getJson(`${gw.url}/v2/health/ready`)).status, 200);
  t.is((await getJson(`${gw.url}/v2/models/iris`)).status, 200);
  t.is(overload.shed, 1);
  rss = 150 * MiB;
  overload.sample();
  t.is((await postJson(`${gw.url}/v2/models/iris/infer`, irisRequest())).status, 200);
});

test('server.maxConnections: a connection beyond the cap is closed at once and counted', async (t) => {
  const overload = new Overload({ maxConnections: 2, maxBufferedBodyBytes: 0, shedAboveRssBytes: 0 });
  const gw = await startTestGateway(gatewayConfig(), { overload });
  t.teardown(() => gw.stop());
  const open = await Promise.all(
    [1, 2].map(
      () =>
        new Promise<net.Socket>((resolve) => {
          const s = net.connect(gw.port, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  t.teardown(() => open.forEach((s) => s.destroy()));
  await new Promise((r) => setTimeout(r, 50));
  const third = net.connect(gw.port, '127.0.0.1');
  third.on('error', () => {});
  const closed = await new Promise<boolean>((resolve) => {
    third.once('close', () => resolve(true));
    setTimeout(() => resolve(false), 2_000);
  });
  t.true(closed, 'the third connection was closed by the server');
  t.is(overload.dropped, 1);
});
