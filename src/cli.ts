#!/usr/bin/env node
// model-gateway <command>: start the gateway, validate a config without starting, or talk to a running one's admin API.

import path from 'node:path';
import { parseArgs } from 'node:util';
import { ADMIN_USAGE, runAdminCommand } from './cli-admin.js';
import { MESH_USAGE, meshCommand } from './cli-mesh.js';
import { DEV_ISSUER, TOKEN_USAGE, tokenCommand } from './cli-token.js';
import { ConfigError, loadConfig } from './config/load.js';
import type { GatewayConfig } from './config/schema.js';
import { startGateway, type RunningGateway } from './main.js';
import { SERVE_MODEL_USAGE, serveModelCommand } from './serve-model.js';
import type { BackendMetadata } from './protocol/oip.js';
import { stopOnSignals } from './shutdown.js';
import { startTracing } from './telemetry/tracing.js';
import { createLogger } from './telemetry/log.js';
import { GATEWAY_VERSION } from './version.js';

const USAGE = `model-gateway ${GATEWAY_VERSION}: a model-aware Open Inference Protocol sidecar

Usage:
  model-gateway start [--config FILE] [--port N] [--host ADDR] [--admin-port N]
      Start the gateway (default config: ./gateway.yaml). It watches the file and reloads on change.
${SERVE_MODEL_USAGE}${ADMIN_USAGE}${TOKEN_USAGE}${MESH_USAGE}  model-gateway check-config FILE
      Validate a config file without starting: the schema and \${VAR}s, that every file it reads (onnx model paths,
      jwks.file) exists and is readable, and that the disagreement log's directory exists and is writable.
      Exit 0 if valid, 1 if not.
  model-gateway help | --help
  model-gateway version | --version
`;

/** A runnable curl line for the first model, built from its real metadata. */
export function exampleCurl(url: string, model: string, meta: BackendMetadata, authorization?: string): string {
  const sample = [5.1, 3.5, 1.4, 0.2];
  const inputs = meta.inputs.map((input) => {
    const shape = input.shape.map((d) => (d < 0 ? 1 : d));
    const n = shape.reduce((a, b) => a * b, 1);
    const data = Array.from({ length: n }, (_, i) => {
      if (input.datatype === 'BYTES') return 'text';
      if (input.datatype === 'BOOL') return false;
      return input.datatype.startsWith('FP') ? (sample[i % sample.length] ?? 1) : 1;
    });
    return { name: input.name, shape, datatype: input.datatype, data: n <= 16 ? data : `<${n} values>` };
  });
  const auth = authorization === undefined ? '' : ` -H "authorization: ${authorization}"`;
  return `curl -s ${url}/v2/models/${model}/infer -H 'content-type: application/json'${auth} -d '${JSON.stringify({ inputs })}'`;
}

/** The Authorization value for the banner's curl: a dev token command when the dev issuer is trusted, else a placeholder. */
function bannerAuthorization(config: GatewayConfig, model: string): string | undefined {
  if (config.auth === undefined) return undefined;
  if (!config.auth.issuers.some((i) => i.issuer === DEV_ISSUER)) return 'Bearer $TOKEN';
  const scopes = config.models[model]?.auth?.infer.scopes ?? [];
  const cli = path.relative(process.cwd(), process.argv[1] ?? 'dist/src/cli.js') || 'dist/src/cli.js';
  return `Bearer $(node ${cli} token${scopes.length > 0 ? ` --scope '${scopes.join(' ')}'` : ''})`;
}

function printBanner(gw: RunningGateway, config: GatewayConfig): void {
  const lines = [`model-gateway ready on ${gw.url}`];
  for (const model of gw.state.current.catalog.all()) {
    // What a request without a version gets, from the routing view (the catalog's default knows nothing of weights).
    const traffic = gw.controller.model(model.name);
    const unversioned =
      traffic.weightsSource === 'default'
        ? `default ${traffic.defaultVersion}`
        : `unversioned requests by weight: ${traffic.versions.map((v) => `${v.version}=${v.weight}`).join(' ')}${traffic.weightsSource === 'config' ? '' : `, set by ${traffic.weightsSource}`}`;
    const shadow = traffic.shadow ? `; shadow ${traffic.shadow.targets.map((t) => `${t.version} at ${t.percent}%`).join(', ')}` : '';
    lines.push(`  model ${model.name}: versions ${traffic.versions.map((v) => v.version).join(', ')} (${unversioned})${shadow}`);
  }
  if (gw.extAuthz.http) lines.push(`ext_authz HTTP service on ${gw.extAuthz.http.url}${config.extAuthz.http.pathPrefix} (Envoy http_service; envoy/envoy-ext-authz.yaml)`);
  if (gw.extAuthz.grpc) lines.push(`ext_authz gRPC service on ${gw.extAuthz.grpc.address} (envoy.service.auth.v3.Authorization; envoy/envoy-ext-authz-grpc.yaml)`);
  lines.push(gw.admin ? `admin API on ${gw.admin.url} (try: model-gateway status --admin-url ${gw.admin.url})` : 'admin API off (admin.enabled is false, or neither admin.token nor MODEL_GATEWAY_ADMIN_TOKEN is set)');
  // The version that answers the model's unversioned metadata (the routing default) describes the example's inputs.
  const routingDefault = (m: { name: string }) => gw.controller.model(m.name).defaultVersion;
  const first = gw.state.current.catalog.all().find((m) => m.versions.get(routingDefault(m))?.backend.ready());
  if (first) {
    const meta = first.versions.get(routingDefault(first))!.backend.metadata();
    lines.push(`try:\n  ${exampleCurl(gw.url, first.name, meta, bannerAuthorization(config, first.name))}`);
  }
  void config;
  process.stderr.write(`${lines.join('\n')}\n`);
}

async function start(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { config: { type: 'string', short: 'c', default: 'gateway.yaml' }, port: { type: 'string' }, host: { type: 'string' }, 'admin-port': { type: 'string' } },
    strict: true,
  });
  const { config, file } = await loadConfig(values.config!);
  const portFlag = (flag: string, value: string) => {
    const port = Number(value);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError(`--${flag}`, [`--${flag}: '${value}' is not a port number`]);
    return port;
  };
  const port = values.port === undefined ? undefined : portFlag('port', values.port);
  const adminPort = values['admin-port'] === undefined ? undefined : portFlag('admin-port', values['admin-port']);
  // Flags win over the file, on every reload too.
  const adjustConfig = (c: GatewayConfig) => {
    if (port !== undefined) c.server.port = port;
    if (values.host !== undefined) c.server.host = values.host;
    if (adminPort !== undefined) c.admin.port = adminPort;
  };
  adjustConfig(config);
  const log = createLogger(config.logging.level);
  // Before any pipeline is built: pipelines add spans only when tracing records (decided at build time).
  const tracing = startTracing({ otlpEndpoint: config.telemetry.tracing.otlpEndpoint, sampleRatio: config.telemetry.tracing.sampleRatio });
  if (tracing.enabled) log.info('tracing: exporting spans over OTLP/HTTP');
  const gw = await startGateway(config, log, { configFile: file, adjustConfig });
  log.info({ url: gw.url }, 'ready');
  printBanner(gw, config);

  stopOnSignals(log, {
    deadlineMs: config.server.shutdownTimeoutMs,
    stop: async (signal) => {
      // SIGTERM comes from the kubelet, while endpoints still point here: keep serving for the drain delay. SIGINT is
      // someone at a terminal: no endpoints to wait for.
      const drainDelayMs = signal === 'SIGTERM' ? config.server.drainDelayMs : 0;
      log.info({ signal, drainDelayMs }, 'stopping: draining in-flight requests');
      await gw.stop(drainDelayMs);
      await tracing.shutdown();
    },
  });
  return -1; // keep running
}

async function checkConfig(argv: string[]): Promise<number> {
  const file = argv[0];
  if (!file) {
    process.stderr.write('usage: model-gateway check-config FILE\n');
    return 2;
  }
  const { config, file: absolute } = await loadConfig(file);
  const versions = Object.values(config.models).reduce((n, m) => n + Object.keys(m.versions).length, 0);
  const count = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;
  process.stdout.write(`${absolute}: OK (${count(Object.keys(config.models).length, 'model')}, ${count(versions, 'version')})\n`);
  return 0;
}

async function run(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'start':
      return start(rest);
    case 'check-config':
      return checkConfig(rest);
    case 'mesh':
      return meshCommand(rest, { stdout: (t) => process.stdout.write(t), stderr: (t) => process.stderr.write(t) });
    case 'serve-model':
      return serveModelCommand(rest);
    case 'token':
      return tokenCommand(rest);
    case 'status':
    case 'shift':
    case 'reload':
    case 'rollout':
      return runAdminCommand(command, rest, { stdout: (t) => process.stdout.write(t), stderr: (t) => process.stderr.write(t), env: process.env });
    case 'version':
    case '--version':
      process.stdout.write(`${GATEWAY_VERSION}\n`);
      return 0;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`unknown command '${command}'\n\n${USAGE}`);
      return 2;
  }
}

run(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof ConfigError) process.stderr.write(`${err.message}\n`);
    else process.stderr.write(`model-gateway: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
