// Test helper: runs `model-gateway serve-model` (the runtime container) as a real process and waits for its ready line.

import { spawnCli, type CliProcess } from './cli-process.js';

export interface ServeModelProcess extends CliProcess {
  port: number;
}

/** `model-gateway serve-model ...args`; pass `--port 0` for a free port. Always stop it in t.teardown. */
export async function spawnServeModel(args: string[]): Promise<ServeModelProcess> {
  const proc = await spawnCli(['serve-model', ...args], /serve-model ready on (http:\/\/\S+)/, 'serve-model');
  return Object.assign(proc, { port: Number(new URL(proc.url).port) });
}
