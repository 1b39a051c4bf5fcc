// The shutdown timeline for a pod behind a mesh: not-ready at once, keep serving while endpoints propagate, then close.

import type http from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { GatewayState } from '../pipeline/generation.js';

export interface DrainPlan {
  /**
   * How long to keep accepting new connections after the signal, ms. Kubernetes removes the pod from Service
   * endpoints asynchronously; Envoys in the mesh keep sending to it until their EDS update arrives.
   */
  drainDelayMs: number;
  /** Everything must be finished this long after the signal (keep it below terminationGracePeriodSeconds), ms. */
  shutdownTimeoutMs: number;
  /**
   * After the drain delay, keep accepting until no request has arrived for this long, ms (0: stop at the delay). A
   * runtime container's only client is the gateway beside it, which keeps forwarding until its own drain ends: the
   * runtime closes once that traffic has stopped, so two containers signalled together lose nothing.
   */
  quietMs?: number;
}

/** Another data-plane listener (gRPC) drained on the same timeline as the HTTP server. */
export interface DrainableServer {
  /** Runs at once, when readiness starts failing (gRPC health watchers hear NOT_SERVING). */
  draining(): void;
  /** Stops accepting (GOAWAY for HTTP/2); resolves when the calls in flight have ended. */
  shutdown(): Promise<void>;
  /** Cuts whatever is still open. */
  forceShutdown(): void;
}

export interface DrainSteps {
  state: GatewayState;
  server: http.Server;
  /** More listeners of the data plane: they stop accepting with the HTTP server and their calls count as in flight. */
  alsoServing?: readonly DrainableServer[];
  log: Logger;
  /** Runs at once, before the delay: stop anything that could start new work on its own (config watching). */
  onDraining?: () => void;
  /** Runs when the data plane stops accepting (e.g. the admin API closes, so status stays readable during the delay). */
  onStopAccepting?: () => Promise<void>;
  /** Resolves when work started by finished requests (mirrored shadow calls) is done. */
  backgroundIdle?: () => Promise<void>;
  /** Releases everything else (aborts what is left in the background, closes backends and stores). */
  release: () => Promise<void>;
}

export interface DrainReport {
  /** ms after the signal at which the data plane stopped accepting connections. */
  stoppedAcceptingAtMs: number;
  /** ms after the signal at which the last connection ended. */
  connectionsClosedAtMs: number;
  /** ms after the signal at which background work settled (or was cut off). */
  backgroundSettledAtMs: number;
  /** Connections still open at the cut-off and closed by force. */
  forcedConnections: boolean;
  /** Background work still running at the cut-off (aborted by `release`). */
  forcedBackground: boolean;
}

/**
 * Time kept back from the deadline for releasing backends after the connections are cut: 10% of the budget, at most
 * one second, so a stuck request can never push the exit past the deadline.
 */
export function releaseReserveMs(shutdownTimeoutMs: number): number {
  return Math.min(1_000, Math.floor(shutdownTimeoutMs / 10));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

/** Resolves true when `work` settled before `ms`, false when the time ran out first. */
async function within(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), Math.max(0, ms))));
  try {
    return await Promise.race([
      work.then(
        () => true,
        () => true,
      ),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Runs the timeline:
 *   t=0            readiness answers 503, every reply carries `Connection: close` (clients reconnect, possibly elsewhere);
 *   t=drainDelay   (and, with quietMs, once no request arrived for quietMs) stop accepting; idle keep-alive sockets
 *                  close; in-flight requests finish;
 *   then           shadow calls started by those requests finish;
 *   deadline−reserve  whatever is still open is cut; `release` closes backends before the deadline.
 */
export async function drainGateway(steps: DrainSteps, plan: DrainPlan): Promise<DrainReport> {
  const started = performance.now();
  const elapsed = () => performance.now() - started;
  const cutOffAt = plan.shutdownTimeoutMs - releaseReserveMs(plan.shutdownTimeoutMs);
  steps.state.draining = true;
  for (const other of steps.alsoServing ?? []) other.draining();
  steps.onDraining?.();
  steps.log.info(
    { drainDelayMs: plan.drainDelayMs, shutdownTimeoutMs: plan.shutdownTimeoutMs },
    'draining: readiness fails; still accepting during the drain delay',
  );

  await sleep(Math.min(plan.drainDelayMs, cutOffAt));
  const quietMs = plan.quietMs ?? 0;
  if (quietMs > 0) {
    steps.state.lastArrivalMs ??= started;
    for (let quietFor = performance.now() - steps.state.lastArrivalMs; quietFor < quietMs && elapsed() < cutOffAt;) {
      await sleep(Math.min(quietMs - quietFor, cutOffAt - elapsed()));
      quietFor = performance.now() - steps.state.lastArrivalMs;
    }
  }
  const closed = Promise.all([
    new Promise<void>((resolve) => steps.server.close(() => resolve())),
    ...(steps.alsoServing ?? []).map((other) => other.shutdown()),
  ]);
  // Sockets idle since before the signal never saw a `Connection: close`; close them now. Busy ones close after their reply.
  steps.server.closeIdleConnections();
  const stoppedAcceptingAtMs = elapsed();
  await steps.onStopAccepting?.();
  steps.log.info({ atMs: Math.round(stoppedAcceptingAtMs) }, 'draining: stopped accepting; finishing in-flight requests');

  const forcedConnections = !(await within(closed, cutOffAt - elapsed()));
  if (forcedConnections) {
    steps.log.warn({ shutdownTimeoutMs: plan.shutdownTimeoutMs }, 'shutdown deadline near; closing remaining connections');
    steps.server.closeAllConnections();
    for (const other of steps.alsoServing ?? []) other.forceShutdown();
  }
  const connectionsClosedAtMs = elapsed();

  const forcedBackground = steps.backgroundIdle ? !(await within(steps.backgroundIdle(), cutOffAt - elapsed())) : false;
  if (forcedBackground) steps.log.warn('shutdown deadline near; aborting shadow calls still running');
  const backgroundSettledAtMs = elapsed();
  await steps.release();
  return { stoppedAcceptingAtMs, connectionsClosedAtMs, backgroundSettledAtMs, forcedConnections, forcedBackground };
}
