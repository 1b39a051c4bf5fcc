// Test helper: runs `model-gateway serve-model` (the runtime container) as a real process and waits for its ready line.

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { CLI } from './gateway.js';

export interface ServeModelProcess {
  child: ChildProcess;
  url: string;
  port: number;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
  /** Sends a signal (default SIGTERM) and resolves with the exit code; safe to call twice. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** `model-gateway serve-model ...args`; pass `--port 0` for a free port. Always stop it in t.teardown. */
export async function spawnServeModel(args: string[]): Promise<ServeModelProcess> {
  const child = spawn(process.execPath, [CLI, 'serve-model', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  // If the test process ends without running its teardown (an uncaught exception), do not leave the runtime behind.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const exited = once(child, 'exit').then(([code]) => {
    process.off('exit', killOnExit);
    return code as number | null;
  });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`serve-model did not become ready in time:\n${err}\n${out}`));
    }, 60_000);
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      const m = /serve-model ready on (http:\/\/\S+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`serve-model exited with ${code} before ready:\n${err}\n${out}`));
    });
  });
  return {
    child,
    url,
    port: Number(new URL(url).port),
    stdout: () => out,
    stderr: () => err,
    exited,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
