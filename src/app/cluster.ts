// Data-plane workers (server.workers > 1). The supervisor forks N gateway processes that share the data-plane port
// (Node's cluster: it accepts connections and hands them out round-robin), restarts any that dies, serves the admin
// API by relaying to theirs, and stops them together. Workers are replicas of one another: what they must share
// (rate limits, rollouts) goes through Redis, as between pods.

import cluster, { type Worker } from 'node:cluster';
import { randomBytes } from 'node:crypto';
import { AggregatorRegistry } from 'prom-client';
import { AuditTrail, auditPath } from '../admin/audit.js';
import { startAdminRelay } from '../admin/relay.js';
import { RELAY_SECRET_ENV } from '../admin/relayed.js';
import type { RunningAdmin } from '../admin/server.js';
import { adminToken } from '../admin/token.js';
import type { GatewayConfig } from '../config/schema.js';
import type { Logger } from '../telemetry/log.js';
import type { RunningGateway } from './gateway.js';

/** The environment variable telling a worker its number (1…N, kept when it is restarted). */
const WORKER_ENV = 'MODEL_GATEWAY_WORKER';
/** A worker that dies is forked again after this long, ms. */
const RESTART_DELAY_MS = 1_000;

type FromWorker = { type: 'model-gateway:ready'; number: number; admin: string | undefined; banner: string[] };
type ToWorker = { type: 'model-gateway:stop'; drainDelayMs: number };

const isFromWorker = (m: unknown): m is FromWorker => typeof m === 'object' && m !== null && (m as { type?: unknown }).type === 'model-gateway:ready';
const isToWorker = (m: unknown): m is ToWorker => typeof m === 'object' && m !== null && (m as { type?: unknown }).type === 'model-gateway:stop';

/** This process's worker number, when it is a data-plane worker of a supervisor. */
export function workerNumber(): number | undefined {
  if (!cluster.isWorker) return undefined;
  const n = Number(process.env[WORKER_ENV]);
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

/**
 * A worker's side: tells the supervisor it serves (its private admin URL, its banner lines), answers its metrics
 * requests, and stops when the supervisor says so — or when the supervisor is gone. SIGINT from a terminal reaches
 * the whole process group; the supervisor's stop message is what counts, so the worker ignores it.
 */
export function serveAsWorker(gw: RunningGateway, banner: string[], stop: (drainDelayMs: number) => void): void {
  if (gw.metrics) {
    new AggregatorRegistry(); // answers the supervisor's metrics requests from now on
    AggregatorRegistry.setRegistries([gw.metrics.registry]);
  }
  process.on('SIGINT', () => undefined);
  process.on('message', (m: unknown) => {
    if (isToWorker(m)) stop(m.drainDelayMs);
  });
  process.once('disconnect', () => stop(0));
  const message: FromWorker = { type: 'model-gateway:ready', number: workerNumber() ?? 0, admin: gw.admin?.url, banner };
  process.send?.(message);
}

export interface Supervisor {
  /** The admin API every operator call goes through (relayed to the workers); undefined when it does not start. */
  readonly admin: RunningAdmin | undefined;
  readonly workers: number;
  /** Worker 1's banner once every worker serves; rejects if a worker dies before all are up. */
  readonly ready: Promise<string[]>;
  /** Stops every worker (SIGTERM: with the drain delay), resolves with the exit code for the process. */
  stop(signal: NodeJS.Signals): Promise<number>;
}

export async function superviseWorkers(config: GatewayConfig, log: Logger, env: NodeJS.ProcessEnv, configFile?: string): Promise<Supervisor> {
  const count = config.server.workers;
  // Workers' admin APIs answer only calls that carry this (the relay's), so nothing reaches them around the audit trail.
  const relaySecret = randomBytes(32).toString('base64url');
  const admins = new Map<number, string>();
  const numbers = new Map<Worker, number>();
  const banners = new Map<number, string[]>();
  const exited = new Map<number, number | null>();
  let stopping = false;
  let up = false;
  let readyResolve!: (banner: string[]) => void;
  let readyReject!: (err: Error) => void;
  const ready = new Promise<string[]>((resolve, reject) => {
    readyResolve = resolve;
    readyReject = reject;
  });
  ready.catch(() => undefined);
  let allExited: (() => void) | undefined;

  const fork = (n: number): void => {
    const worker = cluster.fork({ [WORKER_ENV]: String(n), [RELAY_SECRET_ENV]: relaySecret });
    numbers.set(worker, n);
    worker.on('message', (m: unknown) => {
      if (!isFromWorker(m)) return;
      if (m.admin !== undefined) admins.set(n, m.admin);
      banners.set(n, m.banner);
      log.info({ worker: n, pid: worker.process.pid }, 'data-plane worker serving');
      if (!up && banners.size === count) {
        up = true;
        readyResolve(banners.get(1) ?? m.banner);
      }
    });
    worker.on('exit', (code, signal) => {
      numbers.delete(worker);
      admins.delete(n);
      exited.set(n, code);
      if (stopping) {
        if (numbers.size === 0) allExited?.();
        return;
      }
      if (!up) {
        // A worker that cannot start (a port in use, a model that does not load) fails the start, as one process would.
        readyReject(new Error(`data-plane worker ${n} exited (${signal ?? code}) before serving`));
        return;
      }
      log.error({ worker: n, code, signal }, `data-plane worker exited; starting it again in ${RESTART_DELAY_MS} ms`);
      setTimeout(() => {
        if (!stopping) fork(n);
      }, RESTART_DELAY_MS);
    });
  };
  // Workers accept from the one shared socket themselves (SCHED_NONE), not through this process: a worker that dies
  // leaves its share of new connections in the kernel's queue for the others, where round-robin hand-over could pass
  // one to a process that is already gone.
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  for (let n = 1; n <= count; n++) fork(n);

  // The relay starts when a worker's admin API would: enabled, and something to serve (a way to authorise, or metrics).
  const metricsOn = config.telemetry.metrics.enabled;
  const wanted = config.admin.enabled && (metricsOn || config.auth !== undefined || adminToken(config.admin, env) !== undefined);
  const aggregator = metricsOn ? new AggregatorRegistry() : undefined;
  // The one audit trail: the relay records each action once, from the first worker's account of it.
  const audit =
    wanted && config.admin.audit.enabled
      ? await AuditTrail.open({ path: auditPath(config.admin.audit, configFile), maxFileBytes: config.admin.audit.maxFileBytes, log })
      : undefined;
  const admin = wanted
    ? await startAdminRelay({
        config: config.admin,
        log,
        secret: relaySecret,
        ...(audit ? { audit } : {}),
        workers: () => admins,
        ...(aggregator ? { metrics: async () => ({ contentType: aggregator.contentType, body: await aggregator.clusterMetrics() }) } : {}),
      })
    : undefined;

  const stop = async (signal: NodeJS.Signals): Promise<number> => {
    stopping = true;
    const drainDelayMs = signal === 'SIGTERM' ? config.server.drainDelayMs : 0;
    const gone = new Promise<void>((resolve) => {
      allExited = resolve;
      if (numbers.size === 0) resolve();
    });
    const message: ToWorker = { type: 'model-gateway:stop', drainDelayMs };
    for (const worker of numbers.keys()) if (worker.isConnected()) worker.send(message);
    // Each worker keeps its own shutdown deadline; one that outlives it by a second is killed.
    const timer = setTimeout(() => {
      for (const worker of numbers.keys()) worker.process.kill('SIGKILL');
    }, config.server.shutdownTimeoutMs + 1_000);
    await gone;
    clearTimeout(timer);
    await admin?.close();
    await audit?.close();
    const failed = [...exited].filter(([, code]) => code !== 0);
    if (failed.length > 0) log.error({ workers: Object.fromEntries(failed) }, 'data-plane workers did not stop cleanly');
    return failed.length > 0 ? 1 : 0;
  };

  return { admin, workers: count, ready, stop };
}
