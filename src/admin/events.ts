// The console's live stream (GET /admin/events, Server-Sent Events): a snapshot every second and at once after a
// change, the chart history on connect, heartbeats, a bounded number of streams, and a clean end on logout, session
// expiry and shutdown.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { HandlerContext } from './routes.js';
import { GatewayError } from '../errors/gateway-error.js';

/** Browsers reconnect after this long when a stream drops, ms. */
export const RETRY_MS = 2000;
/** A stream whose client reads slower than this many bytes behind is dropped (it reconnects and starts afresh). */
const MAX_BUFFERED_BYTES = 1024 * 1024;

export interface EventHubOptions {
  /** The snapshot every stream gets (built once per tick). */
  snapshot: () => unknown;
  /** Sent once when a stream opens (the charts' history). */
  history: () => unknown;
  maxStreams: number;
  /** Whether a console session is still live (false after logout, expiry or a token rotation). */
  sessionLive: (id: string) => boolean;
  log: Logger;
  intervalMs?: number;
  heartbeatMs?: number;
  /** Security headers of every admin response. */
  headers?: Record<string, string>;
}

interface Stream {
  res: ServerResponse;
  sessionId: string | undefined;
}

export class EventHub {
  readonly #o: Required<EventHubOptions>;
  readonly #streams = new Set<Stream>();
  #tick: NodeJS.Timeout | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  #soon: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: EventHubOptions) {
    this.#o = { intervalMs: 1000, heartbeatMs: 15_000, headers: {}, ...options };
  }

  get size(): number {
    return this.#streams.size;
  }

  /** Opens a stream for an authorised caller; throws (before any byte is written) when too many are open. */
  open(req: IncomingMessage, res: ServerResponse, context: HandlerContext): void {
    if (this.#closed) throw new GatewayError('GW_ERR_SHUTTING_DOWN');
    if (this.#streams.size >= this.#o.maxStreams) {
      throw new GatewayError('GW_ERR_ADMIN_STREAMS_FULL', `${this.#o.maxStreams} live streams are open already (admin.console.maxStreams)`, {
        headers: { 'retry-after': '5' },
      });
    }
    res.writeHead(200, {
      ...this.#o.headers,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-accel-buffering': 'no',
    });
    req.socket.setNoDelay(true);
    req.socket.setTimeout(0);
    const stream: Stream = { res, sessionId: context.caller.session?.id };
    this.#streams.add(stream);
    const gone = () => this.#drop(stream);
    res.on('close', gone);
    const { caller } = context;
    const session = caller.session?.session;
    res.write(`retry: ${RETRY_MS}\n\n`);
    this.#send(stream, 'hello', {
      actor: caller.actor,
      session: session ? { subject: session.subject, role: session.role, via: session.via, expiresAt: new Date(session.expiresAt).toISOString() } : null,
    });
    this.#send(stream, 'history', this.#o.history());
    this.#send(stream, 'snapshot', this.#o.snapshot());
    this.#arm();
  }

  /** Sends a snapshot to every stream soon (coalescing bursts): after an admin change, a reload, an audit entry. */
  changed(): void {
    if (this.#streams.size === 0 || this.#soon) return;
    this.#soon = setTimeout(() => {
      this.#soon = undefined;
      this.#broadcast();
    }, 20);
  }

  /** Ends every stream with a last event saying why (shutdown), and stops the timers. */
  close(reason = 'shutdown'): void {
    this.#closed = true;
    for (const stream of [...this.#streams]) this.#end(stream, reason);
    this.#disarm();
  }

  #arm(): void {
    if (this.#tick) return;
    this.#tick = setInterval(() => this.#broadcast(), this.#o.intervalMs);
    this.#heartbeat = setInterval(() => {
      for (const stream of this.#streams) stream.res.write(': heartbeat\n\n');
    }, this.#o.heartbeatMs);
    this.#tick.unref();
    this.#heartbeat.unref();
  }

  #disarm(): void {
    clearInterval(this.#tick);
    clearInterval(this.#heartbeat);
    clearTimeout(this.#soon);
    this.#tick = this.#heartbeat = this.#soon = undefined;
  }

  #broadcast(): void {
    if (this.#streams.size === 0) return;
    let payload: string;
    try {
      payload = JSON.stringify(this.#o.snapshot());
    } catch (err) {
      this.#o.log.error({ err }, 'cannot build the console snapshot');
      return;
    }
    for (const stream of [...this.#streams]) {
      if (stream.sessionId !== undefined && !this.#o.sessionLive(stream.sessionId)) {
        this.#end(stream, 'session-ended');
        continue;
      }
      this.#write(stream, `event: snapshot\ndata: ${payload}\n\n`);
    }
  }

  #send(stream: Stream, event: string, data: unknown): void {
    this.#write(stream, `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  #write(stream: Stream, text: string): void {
    if (stream.res.writableLength > MAX_BUFFERED_BYTES) {
      this.#o.log.warn('console stream dropped: its client is not reading');
      stream.res.destroy();
      this.#drop(stream);
      return;
    }
    stream.res.write(text);
  }

  #end(stream: Stream, reason: string): void {
    this.#send(stream, 'end', { reason });
    stream.res.end();
    this.#drop(stream);
  }

  #drop(stream: Stream): void {
    this.#streams.delete(stream);
    if (this.#streams.size === 0) this.#disarm();
  }
}
