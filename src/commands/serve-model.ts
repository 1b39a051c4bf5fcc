// `model-gateway serve-model`: the runtime container's flags; app/runtime.ts serves.

import { parseArgs } from 'node:util';
import { asRuntimeConfig, repositoryConfig, RUNTIME_DEFAULTS, runtimeServer, startRuntime } from '../app/runtime.js';
import { stopOnSignals } from '../app/signals.js';
import { ConfigError, loadConfig } from '../config/load.js';
import type { GatewayConfig } from '../config/schema.js';
import { createLogger } from '../telemetry/log.js';
import type { CommandIo } from './io.js';

export const SERVE_MODEL_USAGE = `  model-gateway serve-model (--model-dir DIR | --config FILE) [--host ADDR] [--port N] [--grpc-port N] [--workers N]
                            [--log-level L] [--max-batch-size N [--max-queue-delay-us US]]
      Run the runtime container: serve ONNX models over OIP REST (and with --grpc-port over OIP gRPC) for a gateway in
      the same pod (no auth; default 127.0.0.1:8000). DIR holds <model>/<version>/model.onnx, <model>-v<version>.onnx
      or <model>.onnx.
      --max-batch-size turns on dynamic batching for every model of DIR (with --config: per version, backend.batching).
`;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
function isLogLevel(value: string): value is (typeof LOG_LEVELS)[number] {
  return (LOG_LEVELS as readonly string[]).includes(value);
}

function intFlag(flag: string, value: string | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw new ConfigError(`--${flag}`, [`--${flag}: '${value}' is not an integer from ${min} to ${max}`]);
  return n;
}

/** The CLI command; resolves -1 while serving (the process stays up until SIGTERM/SIGINT). */
export async function serveModelCommand(argv: string[], io: CommandIo): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      'model-dir': { type: 'string' },
      config: { type: 'string', short: 'c' },
      host: { type: 'string' },
      port: { type: 'string' },
      'grpc-port': { type: 'string' },
      workers: { type: 'string' },
      'max-batch-size': { type: 'string' },
      'max-queue-delay-us': { type: 'string' },
      'log-level': { type: 'string' },
    },
    strict: true,
  });
  if ((values['model-dir'] === undefined) === (values.config === undefined)) {
    io.stderr(`serve-model needs exactly one of --model-dir DIR or --config FILE\n\nUsage:\n${SERVE_MODEL_USAGE}`);
    return 2;
  }
  const listen = {
    host: values.host ?? RUNTIME_DEFAULTS.host,
    port: intFlag('port', values.port, RUNTIME_DEFAULTS.port, 0, 65535),
    grpcPort: values['grpc-port'] === undefined ? undefined : intFlag('grpc-port', values['grpc-port'], 0, 0, 65535),
  };
  const logLevel = values['log-level'];
  if (logLevel !== undefined && !isLogLevel(logLevel))
    throw new ConfigError('--log-level', [`--log-level: '${logLevel}' is not one of ${LOG_LEVELS.join(', ')}`]);
  let config: GatewayConfig;
  if (values['model-dir'] !== undefined) {
    const maxBatchSize = values['max-batch-size'] === undefined ? undefined : intFlag('max-batch-size', values['max-batch-size'], 2, 2, 65536);
    if (maxBatchSize === undefined && values['max-queue-delay-us'] !== undefined)
      throw new ConfigError('--max-queue-delay-us', ['--max-queue-delay-us: only with --max-batch-size']);
    const batching =
      maxBatchSize === undefined
        ? undefined
        : { maxBatchSize, maxQueueDelayUs: intFlag('max-queue-delay-us', values['max-queue-delay-us'], 500, 0, 1_000_000) };
    config = await repositoryConfig(values['model-dir'], {
      workers: intFlag('workers', values.workers, 1, 1, 64),
      logLevel: logLevel ?? 'info',
      ...(batching ? { batching } : {}),
    });
  } else {
    if (values.workers !== undefined) throw new ConfigError('--workers', ['--workers: only with --model-dir; with --config each version sets backend.workers']);
    if (values['max-batch-size'] !== undefined || values['max-queue-delay-us'] !== undefined) {
      throw new ConfigError('--max-batch-size', [
        '--max-batch-size/--max-queue-delay-us: only with --model-dir; with --config each version sets backend.batching',
      ]);
    }
    const loaded = await loadConfig(values.config!, io.env);
    config = asRuntimeConfig(loaded.config, listen, loaded.file);
    if (logLevel !== undefined) config.logging = { ...config.logging, level: logLevel };
  }
  config = { ...config, server: runtimeServer(config.server, listen) };
  const log = createLogger(config.logging.level);
  const runtime = await startRuntime(config, log);
  log.info({ url: runtime.url }, 'serve-model ready');
  const lines = [`model-gateway serve-model ready on ${runtime.url}`];
  if (runtime.grpc) lines.push(`  gRPC (inference.GRPCInferenceService, grpc.health.v1.Health) on ${runtime.grpc.address}`);
  for (const model of runtime.state.current.catalog.all()) lines.push(`  model ${model.name}: versions ${[...model.versions.keys()].join(', ')}`);
  io.stderr(`${lines.join('\n')}\n`);

  stopOnSignals(log, {
    deadlineMs: config.server.shutdownTimeoutMs,
    stop: async (signal) => {
      // As the gateway: SIGTERM comes from the kubelet while endpoints still point here; SIGINT from a terminal.
      const drainDelayMs = signal === 'SIGTERM' ? config.server.drainDelayMs : 0;
      log.info({ signal, drainDelayMs }, 'stopping: draining in-flight requests');
      await runtime.stop(drainDelayMs);
    },
  });
  return -1;
}
