// One live config generation: its config, catalog, routing and a count of its requests in flight (to know when it drained).

import type { GatewayConfig } from '../config/schema.js';
import type { ModelCatalog } from '../models/catalog.js';
import type { Pipeline } from '../pipeline/stage.js';
import type { RoutingTable } from '../routing/table.js';

export class LiveGeneration {
  readonly number: number;
  readonly config: GatewayConfig;
  readonly catalog: ModelCatalog;
  readonly routing: RoutingTable;
  readonly createdAt = new Date();
  /** Resolves once the generation was replaced and its last request finished. */
  readonly drained: Promise<void>;
  #inFlight = 0;
  #retired = false;
  #resolveDrained!: () => void;

  constructor(number: number, config: GatewayConfig, catalog: ModelCatalog, routing: RoutingTable) {
    this.number = number;
    this.config = config;
    this.catalog = catalog;
    this.routing = routing;
    this.drained = new Promise((resolve) => (this.#resolveDrained = resolve));
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /** Wraps the generation's pipeline so every request is counted from start to reply. */
  counted(pipeline: Pipeline): Pipeline {
    return (ctx) => {
      this.#inFlight++;
      let reply: Promise<Awaited<ReturnType<Pipeline>>>;
      try {
        reply = pipeline(ctx);
      } catch (err) {
        reply = Promise.reject(err);
      }
      return reply.finally(() => {
        if (--this.#inFlight === 0 && this.#retired) this.#resolveDrained();
      });
    };
  }

  /** Marks the generation replaced: no new request will reach it, so it has drained once in-flight ones end. */
  retire(): void {
    this.#retired = true;
    if (this.#inFlight === 0) this.#resolveDrained();
  }
}
