#!/usr/bin/env node
// model-gateway <command>: start the gateway, or validate a config without starting.

import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from './config/load.js';
import type { GatewayConfig } from './config/schema.js';
import { startGateway, type RunningGateway } from './main.js';
import type { BackendMetadata } from './protocol/oip.js';
import { createLogger } from './telemetry/log.js';
import { GATEWAY_VERSION } from './version.js';

const USAGE = `model-gateway ${GATEWAY_VERSION}: a model-aware Open Inference Protocol sidecar

Usage:
  model-gateway start [--config FILE] [--port N] [--host ADDR]
      Start the gateway (default config: ./gateway.yaml).
  model-gateway check-config FILE
      Validate a config file and every model path in it, without starting. Exit 0 if valid, 1 if not.
  model-gateway help | --help
  model-gateway version | --version
`;

/** A runnable curl line for the first model, built from its real metadata. */
export function exampleCurl(url: string, model: string, meta: BackendMetadata): string {
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
  return `curl -s ${url}/v2/models/${model}/infer -H 'content-type: application/json' -d '${JSON.stringify({ inputs })}'`;
}

function printBanner(gw: RunningGateway, config: GatewayConfig): void {
  const lines = [`model-gateway ready on ${gw.url}`];
  for (const model of gw.state.current.catalog.all()) {
    lines.push(`  model ${model.name}: versions ${[...model.versions.keys()].join(', ')} (default ${model.defaultVersion})`);
  }
  const first = gw.state.current.catalog.all().find((m) => m.versions.get(m.defaultVersion)?.backend.ready());
  if (first) {
    const meta = first.versions.get(first.defaultVersion)!.backend.metadata();
    lines.push(`try:\n  ${exampleCurl(gw.url, first.name, meta)}`);
  }
  void config;
  process.stderr.write(`${lines.join('\n')}\n`);
}

async function start(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { config: { type: 'string', short: 'c', default: 'gateway.yaml' }, port: { type: 'string' }, host: { type: 'string' } },
    strict: true,
  });
  const { config } = await loadConfig(values.config!);
  if (values.port !== undefined) {
    const port = Number(values.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError('--port', [`--port: '${values.port}' is not a port number`]);
    config.server.port = port;
  }
  if (values.host !== undefined) config.server.host = values.host;
  const log = createLogger(config.logging.level);
  const gw = await startGateway(config, log);
  log.info({ url: gw.url }, 'ready');
  printBanner(gw, config);

  const onSignal = (signal: NodeJS.Signals) => {
    log.info({ signal }, 'stopping: draining in-flight requests');
    process.once(signal, () => {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    });
    gw.stop().then(
      () => {
        log.info('stopped');
        log.flush();
        process.exitCode = 0;
      },
      (err: unknown) => {
        log.error({ err }, 'error while stopping');
        log.flush();
        process.exitCode = 1;
      },
    );
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
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
  process.stdout.write(`${absolute}: OK (${Object.keys(config.models).length} models, ${versions} versions)\n`);
  return 0;
}

async function run(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'start':
      return start(rest);
    case 'check-config':
      return checkConfig(rest);
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
