// Child processes of the bench (spawn pinned, wait ready, stop, clean up on exit/SIGINT) and /proc readings (CPU, RSS, load).

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';

export const log = (line: string): void => void process.stderr.write(`[bench] ${line}\n`);

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

/** `taskset` when present and the machine has at least two cores: the driver goes to core 0, the target to core 1. */
export const PIN =
  existsSync('/usr/bin/taskset') &&
  (() => {
    try {
      return (
        readFileSync('/proc/cpuinfo', 'utf8')
          .split('\n')
          .filter((l) => l.startsWith('processor')).length >= 2
      );
    } catch {
      return false;
    }
  })();
export const DRIVER_CORE = '0';
export const TARGET_CORE = '1';
/** Every core: for processes that must not inherit the bench's own pinning. */
export const ALL_CORES = `0-${Math.max(0, os.cpus().length - 1)}`;

export interface Proc {
  name: string;
  child: ChildProcess;
  pid: number;
  /** The last few KB of its stdout and stderr, for error messages. */
  output(): string;
  exited(): boolean;
}

const running = new Set<Proc>();
/** Set by SIGINT/SIGTERM/SIGHUP: nothing new is started while everything is being stopped. */
let stopping = false;
const cleanups: (() => void)[] = [];
/** Runs (synchronously) after the children are stopped on SIGINT/SIGTERM/SIGHUP, e.g. removing the temp dir. */
export function onInterrupt(fn: () => void): void {
  cleanups.push(fn);
}

/** Kills a process group at once (each child leads its own); no-op when it is gone. */
function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

/** Last resort (sync, for process exit): SIGKILL every group still running. */
export function killAll(): void {
  for (const p of running) killGroup(p.pid, 'SIGKILL');
  running.clear();
}

/**
 * Stops every child still running: SIGINT (nginx: fast shutdown, which reaps its workers; node targets: no drain
 * delay), SIGKILL after `graceMs`. Each is reaped, so nothing outlives the bench, not even as a zombie.
 */
export async function stopAll(graceMs = 1500): Promise<void> {
  await Promise.all([...running].map((p) => stop(p, 'SIGINT', graceMs)));
}

process.once('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(signal, () => {
    stopping = true;
    log(`${signal}: stopping every child process`);
    void stopAll().finally(() => {
      for (const fn of cleanups) {
        try {
          fn();
        } catch {
          // best effort
        }
      }
      process.exit(130);
    });
  });
}

export interface SpawnOptions {
  /** Pin to this core with taskset (when PIN). */
  core?: string;
  env?: NodeJS.ProcessEnv;
}

export function start(name: string, cmd: string, args: string[], options: SpawnOptions = {}): Proc {
  if (stopping) throw new Error(`${name}: not started, the bench is stopping`);
  const [file, argv] = PIN && options.core !== undefined ? ['taskset', ['-c', options.core, cmd, ...args]] : [cmd, args];
  // detached: its own process group, so a stop reaches nginx's workers too; taskset execs, so the pid is the target's.
  const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: options.env ?? process.env, detached: true });
  if (child.pid === undefined) throw new Error(`${name}: cannot spawn ${cmd}`);
  let tail = '';
  const keep = (d: Buffer): void => {
    tail = (tail + d.toString()).slice(-8192);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const proc: Proc = { name, child, pid: child.pid, output: () => tail, exited: () => child.exitCode !== null || child.signalCode !== null };
  running.add(proc);
  child.once('exit', () => running.delete(proc));
  return proc;
}

/** Resolves with the match once `ready` matches its output; rejects if it exits or stays silent for `timeoutMs`. */
export function waitFor(proc: Proc, ready: RegExp, timeoutMs = 30_000): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let out = '';
    const done = (): void => {
      clearTimeout(timer);
      proc.child.stdout!.off('data', onData);
      proc.child.stderr!.off('data', onData);
      proc.child.off('exit', onExit);
    };
    const onData = (d: Buffer): void => {
      out += d.toString();
      const m = ready.exec(out);
      if (m) {
        done();
        resolve(m);
      }
    };
    const onExit = (code: number | null): void => {
      done();
      reject(new Error(`${proc.name} exited (${code}) before ready:\n${proc.output()}`));
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`${proc.name} not ready in ${timeoutMs} ms:\n${proc.output()}`));
    }, timeoutMs);
    proc.child.stdout!.on('data', onData);
    proc.child.stderr!.on('data', onData);
    proc.child.once('exit', onExit);
  });
}

/** Runs a process to its end; resolves with its stdout (rejects on a non-zero exit). */
export async function run(name: string, cmd: string, args: string[], options: SpawnOptions = {}): Promise<string> {
  const proc = start(name, cmd, args, options);
  let out = '';
  proc.child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((resolve) => proc.child.once('exit', resolve));
  if (code !== 0) throw new Error(`${name} exited ${code}:\n${proc.output()}`);
  return out;
}

/** Stops gracefully with `signal`, then SIGKILLs the group after `graceMs`. */
export async function stop(proc: Proc, signal: NodeJS.Signals = 'SIGTERM', graceMs = 3000): Promise<void> {
  if (proc.exited()) return;
  const gone = new Promise<void>((resolve) => proc.child.once('exit', () => resolve()));
  killGroup(proc.pid, signal);
  const timer = setTimeout(() => killGroup(proc.pid, 'SIGKILL'), graceMs);
  await gone;
  clearTimeout(timer);
  // nginx workers may outlive their master by a moment; the group goes down with it.
  killGroup(proc.pid, 'SIGKILL');
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
    s.once('error', reject);
  });
}

export async function waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (up) return;
    await sleep(25);
  }
  throw new Error(`nothing listening on 127.0.0.1:${port} after ${timeoutMs} ms`);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The pid and its descendants (nginx: master and workers). */
export function processTree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    const p = out[i] as number;
    try {
      for (const tid of readFileSync(`/proc/${p}/task/${p}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)) out.push(Number(tid));
    } catch {
      // gone
    }
  }
  return out;
}

/** utime + stime of the pids (every thread of each), seconds. */
export function cpuSeconds(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // the process is gone: nothing to add
    }
  }
  return ticks / CLK_TCK;
}

/** Peak resident set (VmHWM) summed over the pids, MB. */
export function peakRssMb(pids: readonly number[]): number {
  let kb = 0;
  for (const pid of pids) {
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      kb += Number(m?.[1] ?? 0);
    } catch {
      // gone
    }
  }
  return kb / 1024;
}

/** Per-core jiffies (busy, total) from /proc/stat. */
export function coreTimes(): Map<string, { busy: number; total: number }> {
  const out = new Map<string, { busy: number; total: number }>();
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    const m = /^cpu(\d+)\s+(.*)$/.exec(line);
    if (!m) continue;
    const v = (m[2] as string).trim().split(/\s+/).map(Number);
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = (v[3] ?? 0) + (v[4] ?? 0);
    out.set(m[1] as string, { busy: total - idle, total });
  }
  return out;
}

/** Busy percent of each core between two coreTimes() readings. */
export function coreBusy(before: Map<string, { busy: number; total: number }>, after: Map<string, { busy: number; total: number }>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [core, a] of after) {
    const b = before.get(core);
    if (b && a.total > b.total) out[core] = (100 * (a.busy - b.busy)) / (a.total - b.total);
  }
  return out;
}

/**
 * CPU of every user-space process that is not the bench's (itself and its descendants), by pid: what competes with
 * the measurement. Kernel threads are left out: they include the loopback traffic's own softirq work.
 */
export interface CpuReading {
  at: number;
  others: Map<number, number>;
}

export function cpuReading(): CpuReading {
  const ours = new Set(processTree(process.pid));
  const others = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (ours.has(pid) || pid === 2) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (f[1] === '2') continue; // a kernel thread (child of kthreadd)
      // utime stime cutime cstime: its own time and that of the children it has reaped
      others.set(pid, Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]));
    } catch {
      // gone meanwhile
    }
  }
  return { at: performance.now(), others };
}

/** CPU other processes used between two readings, % of one core (a process new in `b` counts whole). */
export function foreignPct(a: CpuReading, b: CpuReading): number {
  const seconds = (b.at - a.at) / 1000;
  if (seconds <= 0) return NaN;
  let ticks = 0;
  for (const [pid, t] of b.others) ticks += Math.max(0, t - (a.others.get(pid) ?? 0));
  return (100 * ticks) / CLK_TCK / seconds;
}

/**
 * Waits until the rest of the machine uses at most `thresholdPct` of a core over 0.3 s (other processes
 * compete with the pinned target), at most `maxWaitMs`; resolves with the wait and the last reading.
 */
export async function waitQuiet(thresholdPct: number, maxWaitMs: number): Promise<{ waitedMs: number; foreignPct: number }> {
  const t0 = performance.now();
  const sample = async (ms: number): Promise<number> => {
    const a = cpuReading();
    await sleep(ms);
    return foreignPct(a, cpuReading());
  };
  let busy = await sample(300);
  let said = false;
  while (busy > thresholdPct && performance.now() - t0 < maxWaitMs) {
    if (!said) log(`waiting for a quiet machine (other processes use ${busy.toFixed(0)} % of a core; at most ${(maxWaitMs / 1000).toFixed(0)} s)`);
    said = true;
    busy = await sample(1000);
  }
  return { waitedMs: performance.now() - t0 - 300, foreignPct: busy };
}
