// Command dispatch: each command is imported only when it runs, so `version`, `token` and the admin commands never
// load the gateway. The CLI entry (src/cli.ts) and in-process tests both call run().

import { GATEWAY_VERSION } from '../core/version.js';
import type { CommandIo } from './io.js';

export type { CommandIo } from './io.js';

/** Resolves the exit code, or -1 for a command that keeps the process serving. */
type Command = (argv: string[], io: CommandIo) => Promise<number>;

const COMMANDS: Record<string, () => Promise<Command>> = {
  start: async () => (await import('./start.js')).startCommand,
  'check-config': async () => (await import('./check-config.js')).checkConfigCommand,
  'serve-model': async () => (await import('./serve-model.js')).serveModelCommand,
  mesh: async () => (await import('./mesh.js')).meshCommand,
  token: async () => (await import('./token.js')).tokenCommand,
  ...Object.fromEntries((['status', 'shift', 'reload', 'rollout'] as const).map((name) => [name, () => adminCommand(name)])),
};

/** The admin API client commands share one module. */
async function adminCommand(name: 'status' | 'shift' | 'reload' | 'rollout'): Promise<Command> {
  const { runAdminCommand } = await import('./admin.js');
  return (argv, io) => runAdminCommand(name, argv, io);
}

/** The whole usage text: only `help` (and a mistyped command) loads every command's part of it. */
async function usage(): Promise<string> {
  const [start, serveModel, admin, token, mesh, checkConfig] = await Promise.all([
    import('./start.js').then((m) => m.START_USAGE),
    import('./serve-model.js').then((m) => m.SERVE_MODEL_USAGE),
    import('./admin.js').then((m) => m.ADMIN_USAGE),
    import('./token.js').then((m) => m.TOKEN_USAGE),
    import('./mesh.js').then((m) => m.MESH_USAGE),
    import('./check-config.js').then((m) => m.CHECK_CONFIG_USAGE),
  ]);
  return `model-gateway ${GATEWAY_VERSION}: a model-aware Open Inference Protocol sidecar

Usage:
${start}${serveModel}${admin}${token}${mesh}${checkConfig}  model-gateway help | --help
  model-gateway version | --version
`;
}

export async function run(argv: string[], io: CommandIo): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'version':
    case '--version':
      io.stdout(`${GATEWAY_VERSION}\n`);
      return 0;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      io.stdout(await usage());
      return command === undefined ? 2 : 0;
  }
  const load = Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : undefined;
  if (load === undefined) {
    io.stderr(`unknown command '${command}'\n\n${await usage()}`);
    return 2;
  }
  return (await load())(rest, io);
}

/** One line for a failed command (a config error lists its problems). */
export function failureMessage(err: unknown): string {
  if (err instanceof Error && err.name === 'ConfigError') return `${err.message}\n`;
  return `model-gateway: ${err instanceof Error ? err.message : String(err)}\n`;
}
