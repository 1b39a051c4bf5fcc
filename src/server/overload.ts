// Process-wide overload protection (Envoy's overload manager in spirit), shared by the HTTP and gRPC data planes:
// a cap on connections, admission of request bodies by bytes, and shedding new inference above an RSS threshold —
// each refusal a 503 with Retry-After, each counted, so the pod stays under its memory limit with the worst inputs.

import type { Server } from 'node:net';
import { Counter, Gauge } from 'prom-client';
import { GatewayError } from '../errors/gateway-error.js';
import { BodyBudget } from '../http/body-budget.js';
import type { GatewayMetrics } from '../telemetry/metrics.js';

export interface OverloadSettings {
  /** Connections per listener at most (0: no limit); beyond it Node closes new connections at once. */
  readonly maxConnections: number;
  /** Request-body bytes held at once, process-wide (0: no limit). */
  readonly maxBufferedBodyBytes: number;
  /** Shed new inference while the RSS is above this, bytes (0: off). */
  readonly shedAboveRssBytes: number;
}

/** How often the RSS is read while shedding is configured, ms: cheap, and well inside a burst's growth. */
const RSS_SAMPLE_MS = 100;

export class Overload {
  readonly budget: BodyBudget;
  readonly #settings: OverloadSettings;
  readonly #readRss: () => number;
  #timer: NodeJS.Timeout | undefined;
  #shedding = false;
  /** Inference requests refused for memory since start. */
  shed = 0;
  /** Connections closed at once because a listener was full, since start. */
  dropped = 0;

  constructor(settings: OverloadSettings, readRss: () => number = () => process.memoryUsage.rss()) {
    this.#settings = settings;
    this.#readRss = readRss;
    this.budget = new BodyBudget(settings.maxBufferedBodyBytes);
    if (settings.shedAboveRssBytes > 0) {
      this.sample();
      this.#timer = setInterval(() => this.sample(), RSS_SAMPLE_MS);
      this.#timer.unref();
    }
  }

  /** Reads the RSS now (the timer does it every 100 ms; tests call it directly). */
  sample(): void {
    if (this.#settings.shedAboveRssBytes > 0) this.#shedding = this.#readRss() > this.#settings.shedAboveRssBytes;
  }

  get shedding(): boolean {
    return this.#shedding;
  }

  /** Throws the 503 a new inference gets while the process is above its RSS threshold; counts it. */
  admitInference(): void {
    if (!this.#shedding) return;
    this.shed++;
    throw new GatewayError(
      'GW_ERR_MEMORY_PRESSURE',
      `the gateway's memory is above server.shedAboveRssBytes (${this.#settings.shedAboveRssBytes} bytes): new inference is shed; retry shortly`,
      { headers: { 'retry-after': '1' } },
    );
  }

  /** Applies the connection cap to a listener and counts what it drops. */
  guard(server: Server): void {
    if (this.#settings.maxConnections > 0) server.maxConnections = this.#settings.maxConnections;
    server.on('drop', () => this.dropped++);
  }

  /** Gauges and counters read at scrape time: nothing on the request path. */
  register(metrics: GatewayMetrics): void {
    const registers = [metrics.registry];
    const budget = this.budget;
    const shedding = () => this.#shedding;
    new Gauge({
      name: 'model_gateway_request_body_bytes_buffered',
      help: 'Request-body bytes the gateway holds now (admission by bytes; server.maxBufferedBodyBytes caps it).',
      registers,
      collect() {
        this.set(budget.used);
      },
    });
    new Gauge({
      name: 'model_gateway_memory_shedding',
      help: '1 while new inference is shed because the RSS is above server.shedAboveRssBytes, else 0.',
      registers,
      collect() {
        this.set(shedding() ? 1 : 0);
      },
    });
    // Totals kept here, exported by their increase since the last scrape: the counter only ever goes up.
    const exported = new Map<string, number>();
    const totals = (): [string, number][] => [
      ['body_budget', budget.refused],
      ['memory', this.shed],
      ['connection', this.dropped],
    ];
    new Counter({
      name: 'model_gateway_overload_refused_total',
      help: 'Requests refused by process-wide overload protection, by reason: body_budget (503 before the body was read), memory (503 while the RSS is above server.shedAboveRssBytes), connection (closed at once by server.maxConnections).',
      labelNames: ['reason'] as const,
      registers,
      collect() {
        for (const [reason, total] of totals()) {
          this.inc({ reason }, total - (exported.get(reason) ?? 0));
          exported.set(reason, total);
        }
      },
    });
  }

  close(): void {
    clearInterval(this.#timer);
  }
}
