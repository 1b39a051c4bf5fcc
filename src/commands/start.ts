// `model-gateway start`: loads the config, starts the gateway, prints a banner of commands that work against it, and
// drains on SIGTERM.

import path from 'node:path';
import { parseArgs } from 'node:util';
import { serveAsWorker, superviseWorkers, workerNumber } from '../app/cluster.js';
import { startGateway, type RunningGateway } from '../app/gateway.js';
import { stopOnSignals } from '../app/signals.js';
import { ADMIN_TOKEN_ENV, adminToken } from '../admin/token.js';
import { ConfigError, loadConfig } from '../config/load.js';
import type { GatewayConfig } from '../config/schema.js';
import type { BackendMetadata } from '../protocol/oip.js';
import { createLogger, type Logger } from '../telemetry/log.js';
import { startTracing } from '../telemetry/tracing.js';
import type { CommandIo } from './io.js';
import { DEV_ISSUER } from './token.js';

export const START_USAGE = `  model-gateway start [--config FILE] [--port N] [--host ADDR] [--admin-port N] [--grpc-port N]
      Start the gateway (default config: ./gateway.yaml). It watches the file and reloads on change.
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

/** How this process was started, for commands the banner suggests (`model-gateway` is not on PATH in a checkout). */
function cliCommand(): string {
  const cli = path.relative(process.cwd(), process.argv[1] ?? 'dist/src/cli.js') || 'dist/src/cli.js';
  return `node ${cli}`;
}

const trustsDevIssuer = (config: GatewayConfig) => config.auth?.issuers.some((i) => i.issuer === DEV_ISSUER) === true;

/** The Authorization value for the banner's curl: a dev token command when the dev issuer is trusted, else a placeholder. */
function bannerAuthorization(config: GatewayConfig, model: string): string | undefined {
  if (config.auth === undefined) return undefined;
  if (!trustsDevIssuer(config)) return 'Bearer $TOKEN';
  const scopes = config.models[model]?.auth?.infer.scopes ?? [];
  return `Bearer $(${cliCommand()} token${scopes.length > 0 ? ` --scope '${scopes.join(' ')}'` : ''})`;
}

/**
 * A `status` command that works against this gateway as started: with a dev-issuer JWT when the config trusts the dev
 * key (auth.admin's scopes), else with the static token the gateway was given; without either, say what is missing.
 */
function adminHint(gw: RunningGateway, config: GatewayConfig, env: NodeJS.ProcessEnv): string {
  const url = gw.admin!.url;
  const cli = cliCommand();
  if (config.auth && trustsDevIssuer(config)) {
    const scopes = config.auth.admin.read.scopes;
    return `try: ${cli} status --admin-url ${url} --token "$(${cli} token${scopes.length > 0 ? ` --scope '${scopes.join(' ')}'` : ''})"`;
  }
  if (adminToken(config.admin, env) !== undefined)
    return `try: ${cli} status --admin-url ${url} --token "$${ADMIN_TOKEN_ENV}" (the token the gateway was started with)`;
  if (config.auth)
    return `admin calls need a JWT with the scopes of auth.admin.read (${config.auth.admin.read.scopes.join(' ') || 'none'}), or a static admin.token / $${ADMIN_TOKEN_ENV}`;
  return `admin calls are refused until admin.token or $${ADMIN_TOKEN_ENV} is set when the gateway starts; /metrics is served`;
}

function bannerLines(gw: RunningGateway, config: GatewayConfig, io: CommandIo): string[] {
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
  if (gw.grpc) lines.push(`gRPC (OIP inference.GRPCInferenceService, grpc.health.v1.Health) on ${gw.grpc.address}`);
  if (gw.extAuthz.http)
    lines.push(`ext_authz HTTP service on ${gw.extAuthz.http.url}${config.extAuthz.http.pathPrefix} (Envoy http_service; envoy/envoy-ext-authz.yaml)`);
  if (gw.extAuthz.grpc)
    lines.push(`ext_authz gRPC service on ${gw.extAuthz.grpc.address} (envoy.service.auth.v3.Authorization; envoy/envoy-ext-authz-grpc.yaml)`);
  if (gw.admin) lines.push(`admin API on ${gw.admin.url}`, `  ${adminHint(gw, config, io.env)}`);
  else lines.push(`admin API off (admin.enabled is false, or neither admin.token nor ${ADMIN_TOKEN_ENV} is set and metrics are off)`);
  // The version that answers the model's unversioned metadata (the routing default) describes the example's inputs.
  const routingDefault = (m: { name: string }) => gw.controller.model(m.name).defaultVersion;
  const first = gw.state.current.catalog.all().find((m) => m.versions.get(routingDefault(m))?.backend.ready());
  if (first) {
    const meta = first.versions.get(routingDefault(first))!.backend.metadata();
    lines.push(`try:\n  ${exampleCurl(gw.url, first.name, meta, bannerAuthorization(config, first.name))}`);
  }
  return lines;
}

function portFlag(flag: string, value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError(`--${flag}`, [`--${flag}: '${value}' is not a port number`]);
  return port;
}

/** Resolves -1 while serving (the process stays up until SIGTERM/SIGINT). */
export async function startCommand(argv: string[], io: CommandIo): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      config: { type: 'string', short: 'c', default: 'gateway.yaml' },
      port: { type: 'string' },
      host: { type: 'string' },
      'admin-port': { type: 'string' },
      'grpc-port': { type: 'string' },
    },
    strict: true,
  });
  const { config, file } = await loadConfig(values.config!, io.env);
  const port = values.port === undefined ? undefined : portFlag('port', values.port);
  const adminPort = values['admin-port'] === undefined ? undefined : portFlag('admin-port', values['admin-port']);
  const grpcPort = values['grpc-port'] === undefined ? undefined : portFlag('grpc-port', values['grpc-port']);
  // Flags win over the file, on every reload too.
  const adjustConfig = (c: GatewayConfig) => {
    if (port !== undefined) c.server.port = port;
    if (values.host !== undefined) c.server.host = values.host;
    if (adminPort !== undefined) c.admin.port = adminPort;
    if (grpcPort !== undefined) c.server.grpc.port = grpcPort;
  };
  const number = workerNumber();
  const worker = number !== undefined;
  // A worker's admin API is private (the supervisor relays to it): loopback, any free port, on every reload too.
  const forProcess = (c: GatewayConfig) => {
    adjustConfig(c);
    if (worker) c.admin = { ...c.admin, host: '127.0.0.1', port: 0 };
  };
  forProcess(config);
  // A worker's every line (access log included) names the worker.
  const log = worker ? createLogger(config.logging.level).child({ worker: number }) : createLogger(config.logging.level);
  if (config.server.workers > 1 && !worker) return supervise(config, log, io, file);

  // Before any pipeline is built: pipelines add spans only when tracing records (decided at build time).
  const tracing = await startTracing({ otlpEndpoint: config.telemetry.tracing.otlpEndpoint, sampleRatio: config.telemetry.tracing.sampleRatio });
  if (tracing.enabled) log.info('tracing: exporting spans over OTLP/HTTP');
  const gw = await startGateway(config, log, { configFile: file, adjustConfig: forProcess, env: io.env, worker });
  log.info({ url: gw.url }, 'ready');
  const stop = async (drainDelayMs: number) => {
    await gw.stop(drainDelayMs);
    await tracing.shutdown();
  };
  if (worker) {
    serveAsWorker(gw, bannerLines(gw, config, io), (drainDelayMs) => {
      log.info({ drainDelayMs }, "stopping at the supervisor's request: draining in-flight requests");
      stop(drainDelayMs).then(
        () => process.disconnect(),
        (err: unknown) => {
          log.error({ err }, 'error while stopping');
          process.exitCode = 1;
          process.disconnect();
        },
      );
    });
    return -1;
  }
  io.stderr(`${bannerLines(gw, config, io).join('\n')}\n`);

  stopOnSignals(log, {
    deadlineMs: config.server.shutdownTimeoutMs,
    stop: async (signal) => {
      // SIGTERM comes from the kubelet, while endpoints still point here: keep serving for the drain delay. SIGINT is
      // someone at a terminal: no endpoints to wait for.
      const drainDelayMs = signal === 'SIGTERM' ? config.server.drainDelayMs : 0;
      log.info({ signal, drainDelayMs }, 'stopping: draining in-flight requests');
      await stop(drainDelayMs);
    },
  });
  return -1;
}

/**
 * `server.workers` > 1: this process supervises the workers (each runs this command again, as a worker) and serves
 * the admin API by relaying to them; it prints worker 1's banner with the relay's address once every worker serves.
 */
async function supervise(config: GatewayConfig, log: Logger, io: CommandIo, file: string): Promise<number> {
  const supervisor = await superviseWorkers(config, log, io.env, file);
  stopOnSignals(log, {
    // Each worker has shutdownTimeoutMs from the stop message; the supervisor waits a little longer for the last one.
    deadlineMs: config.server.shutdownTimeoutMs + 2_000,
    stop: async (signal) => {
      log.info({ signal, workers: supervisor.workers }, 'stopping the data-plane workers');
      const code = await supervisor.stop(signal);
      if (code !== 0) throw new Error('some data-plane workers did not stop cleanly');
    },
  });
  let banner: string[];
  try {
    banner = await supervisor.ready;
  } catch (err) {
    await supervisor.stop('SIGINT');
    throw err;
  }
  const workerAdmin = /^admin API on (\S+)/.exec(banner.find((l) => l.startsWith('admin API on ')) ?? '')?.[1];
  const lines = banner.map((l) => (workerAdmin && supervisor.admin ? l.replaceAll(workerAdmin, supervisor.admin.url) : l));
  lines.splice(1, 0, `  ${supervisor.workers} data-plane workers (server.workers); admin changes are relayed to every worker`);
  io.stderr(`${lines.join('\n')}\n`);
  return -1;
}
