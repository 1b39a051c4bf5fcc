// Test helper: runs the real CLI as a child process, waits for its ready line, and never leaves it behind.

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';

export const CLI = path.join(path.resolve(import.meta.dirname, '../../..'), 'dist/src/cli.js');

export interface CliProcess {
  child: ChildProcess;
  /** The URL captured by the ready line. */
  url: string;
  stdout: () => string;
  stderr: () => string;
  /** Resolves with the exit code when the process exits (for whatever reason). */
  exited: Promise<number | null>;
  /** Sends a signal (default SIGTERM) and resolves with the exit code; safe to call twice. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** `node [...nodeArgs] cli.js ...args`, resolved once stderr matches `ready` (its first group is the URL). */
export async function spawnCli(args: string[], ready: RegExp, name: string, nodeArgs: string[] = []): Promise<CliProcess> {
  const child = spawn(process.execPath, [...nodeArgs, CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  // If the test process ends without running its teardown (an uncaught exception), do not leave the child behind.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const exited = once(child, 'exit').then(([code]) => {
    process.off('exit', killOnExit);
    return code as number | null;
  });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${name} did not become ready in time:\n${err}\n${out}`));
    }, 60_000);
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      const m = ready.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code} before ready:\n${err}\n${out}`));
    });
  });
  return {
    child,
    url,
    stdout: () => out,
    stderr: () => err,
    exited,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
