// grpc.health.v1.Health for Kubernetes gRPC probes and Envoy's gRPC health checks: the server's readiness under the
// names "" and "inference.GRPCInferenceService", each model's under "<model>", each version's under "<model>/<version>".

import type * as grpc from '@grpc/grpc-js';
import { GRPC_STATUS } from '../errors/codes.js';
import type { GatewayState } from '../pipeline/generation.js';
import { INFERENCE_SERVICE, type ServingStatus } from '../protocol/grpc-protos.js';

type Watcher = { call: grpc.ServerWritableStream<{ service: string }, { status: ServingStatus }>; service: string; last: ServingStatus | undefined };

/** How often Watch streams re-read readiness (loading and failing backends have no change events), ms. */
const WATCH_INTERVAL_MS = 1_000;

export class GrpcHealth {
  readonly #state: GatewayState;
  readonly #watchers = new Set<Watcher>();
  #timer: NodeJS.Timeout | undefined;

  constructor(state: GatewayState) {
    this.#state = state;
  }

  /**
   * The status of a service name, or undefined when the name is unknown. A draining gateway is NOT_SERVING under every
   * name at once, as its REST readiness fails: probes take the pod out while calls in flight finish.
   */
  status(service: string): Exclude<ServingStatus, 'SERVICE_UNKNOWN'> | undefined {
    const { catalog } = this.#state.current;
    const serving = (ready: boolean) => (ready && !this.#state.draining ? 'SERVING' : 'NOT_SERVING');
    if (service === '' || service === INFERENCE_SERVICE) return serving(catalog.ready());
    const slash = service.indexOf('/');
    const model = catalog.get(slash < 0 ? service : service.slice(0, slash));
    if (model === undefined) return undefined;
    // A model without a version: the version its unversioned metadata and readiness calls reach.
    const version = model.versions.get(slash < 0 ? model.defaultVersion : service.slice(slash + 1));
    return version === undefined ? undefined : serving(version.backend.ready());
  }

  /** Every name with its status: the server, each model and each version. */
  all(): Record<string, { status: ServingStatus }> {
    const out: Record<string, { status: ServingStatus }> = {};
    const names = ['', INFERENCE_SERVICE];
    for (const model of this.#state.current.catalog.all()) names.push(model.name, ...[...model.versions.keys()].map((v) => `${model.name}/${v}`));
    for (const name of names) out[name] = { status: this.status(name) ?? 'SERVICE_UNKNOWN' };
    return out;
  }

  readonly implementation: grpc.UntypedServiceImplementation = {
    Check: (call: grpc.ServerUnaryCall<{ service: string }, unknown>, callback: grpc.sendUnaryData<{ status: ServingStatus }>) => {
      const status = this.status(call.request.service);
      // Per the health protocol: an unknown name is NOT_FOUND for Check (SERVICE_UNKNOWN is Watch's answer).
      if (status === undefined) callback({ code: GRPC_STATUS.NOT_FOUND, details: `unknown health service '${call.request.service.slice(0, 128)}'` });
      else callback(null, { status });
    },
    List: (_call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<{ statuses: Record<string, { status: ServingStatus }> }>) => {
      callback(null, { statuses: this.all() });
    },
    Watch: (call: Watcher['call']) => {
      const watcher: Watcher = { call, service: call.request.service, last: undefined };
      this.#watchers.add(watcher);
      call.on('cancelled', () => this.#forget(watcher));
      call.on('error', () => this.#forget(watcher));
      this.#send(watcher);
      this.#timer ??= setInterval(() => this.notify(), WATCH_INTERVAL_MS).unref();
    },
  };

  /** Sends every watcher its status if it changed (called on a timer and at once when the gateway starts draining). */
  notify(): void {
    for (const watcher of this.#watchers) this.#send(watcher);
  }

  /** Ends every Watch stream (after a last status): a graceful server shutdown waits for open calls, and these never end on their own. */
  close(): void {
    this.notify();
    for (const watcher of [...this.#watchers]) {
      this.#forget(watcher);
      watcher.call.end();
    }
  }

  #send(watcher: Watcher): void {
    const status = this.status(watcher.service) ?? 'SERVICE_UNKNOWN';
    if (status === watcher.last) return;
    watcher.last = status;
    watcher.call.write({ status });
  }

  #forget(watcher: Watcher): void {
    this.#watchers.delete(watcher);
    if (this.#watchers.size === 0 && this.#timer !== undefined) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }
}
