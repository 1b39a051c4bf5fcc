// Reads a request body lazily with a hard size limit: 413 from Content-Length before reading, or as soon as the stream
// exceeds it. Every chunk is kept until the request ends, so the body can be read whole (bytes/json) or forwarded while
// it is still arriving — and forwarded again from its first byte (a retry, a failover to another version).

import type { IncomingMessage } from 'node:http';
import { GatewayError } from '../errors/gateway-error.js';
import type { BodyBudget } from './body-budget.js';

/** How a stream-backed body is admitted and announced. */
export interface BodyReading {
  /** The process-wide cap on buffered body bytes: the body reserves its bytes before they are read (503 when full). */
  readonly budget?: BodyBudget;
  /**
   * Called once, when the gateway starts reading the body and has admitted it: an `Expect: 100-continue` request gets
   * its `100 Continue` only then, so a request refused before its body is needed (404, 401, 429, 413, 503) is
   * answered instead of being invited to send the body.
   */
  readonly onRead?: () => void;
}

/**
 * Bodies up to this size are collected and forwarded as one buffer (one write, `content-length` known); larger ones,
 * and chunked ones, are forwarded as they arrive. Streaming a few kilobytes gains nothing and costs a chunked-body
 * iteration per request.
 */
export const STREAM_THRESHOLD_BYTES = 64 * 1024;

/**
 * What a JSON body the gateway decodes costs in memory per body byte, for admission by bytes: the parsed arrays and
 * boxed numbers, the tensor, the answer's JSON (measured: a 13 MiB iris body peaks at ≈ 20× its size in a process
 * whose heap is capped, docs/operations.md#overload-protection). A body only forwarded, or binary tensor data, costs
 * its size.
 */
export const JSON_DECODE_COST = 20;

/** A body still arriving: each `open()` yields it from its first byte and follows it to its end (or its error). */
export interface StreamedBody {
  open(): AsyncIterable<Buffer>;
  /** The client's declared `Content-Length`, when it sent one. */
  readonly length: number | undefined;
}

type State = 'unread' | 'reading' | 'done' | 'failed';

export class RequestBody {
  readonly #req: IncomingMessage | undefined;
  readonly #limit: number;
  #state: State = 'unread';
  readonly #chunks: Buffer[] = [];
  #size = 0;
  #error: GatewayError | undefined;
  #whole: Promise<Buffer> | undefined;
  #arrival: Promise<void> | undefined;
  /** Resolved (and replaced) at the next chunk, end or error: what readers of a body still arriving wait on. */
  #change: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  readonly #reading: BodyReading;
  /** Bytes this body holds of the budget. */
  #reserved = 0;
  /** True once the body was rejected unread or half-read: the connection must close after the reply. */
  abandoned = false;

  /** `source`: the request whose body is read lazily, or a body that has already arrived whole (a gRPC message). */
  constructor(source: IncomingMessage | Buffer, limit: number, reading: BodyReading = {}) {
    this.#limit = limit;
    this.#reading = reading;
    if (Buffer.isBuffer(source)) {
      this.#req = undefined;
      this.#chunks.push(source);
      this.#size = source.length;
      this.#state = 'done';
      if (this.#size > limit) this.#fail(this.#tooLarge());
    } else {
      this.#req = source;
    }
  }

  /** A body that has already arrived whole. */
  static of(bytes: Buffer): RequestBody {
    return new RequestBody(bytes, Number.MAX_SAFE_INTEGER);
  }

  /** No body at all (ext_authz checks, metadata calls). */
  static empty(): RequestBody {
    return RequestBody.of(Buffer.alloc(0));
  }

  /** The whole body as bytes (read once, then cached). */
  bytes(): Promise<Buffer> {
    this.#whole ??= this.#readWhole(1);
    return this.#whole;
  }

  /** The body parsed as JSON; an empty or malformed body is a 400. Admitted at JSON_DECODE_COST × its size. */
  async json(): Promise<unknown> {
    this.#whole ??= this.#readWhole(JSON_DECODE_COST);
    const bytes = await this.#whole;
    if (bytes.length === 0) throw new GatewayError('GW_ERR_BAD_JSON', 'request body is empty; expected a JSON object');
    try {
      return JSON.parse(bytes.toString('utf8'));
    } catch (err) {
      throw new GatewayError('GW_ERR_BAD_JSON', `request body is not valid JSON: ${(err as Error).message}`);
    }
  }

  /**
   * The body to forward upstream: the whole buffer when it has arrived or is small (≤ STREAM_THRESHOLD_BYTES
   * declared), otherwise a StreamedBody that sends what has arrived and follows the rest. Rejects as bytes() does
   * when the declared length is over the limit.
   */
  async forwardable(): Promise<Buffer | StreamedBody> {
    const declared = this.#declaredLength();
    if (this.#state === 'done' || (declared !== undefined && declared <= STREAM_THRESHOLD_BYTES)) return this.bytes();
    this.#start();
    if (this.#state === 'failed') throw this.#error!;
    return { open: () => this.#replay(), length: declared };
  }

  /** True once the whole body has arrived (a gRPC message, an empty body, a body already read). */
  get complete(): boolean {
    return this.#state === 'done';
  }

  /** True until the gateway starts reading the body (it may never: a request refused before its body is needed). */
  get unread(): boolean {
    return this.#state === 'unread' && this.#req !== undefined;
  }

  /** Gives the body's bytes back to the budget (the request is answered); idempotent. */
  release(): void {
    if (this.#reserved === 0) return;
    this.#reading.budget?.release(this.#reserved);
    this.#reserved = 0;
  }

  /** Reserves `bytes` of the budget for this body; false (and the body failed with 503) when the budget is full. */
  #reserve(bytes: number): boolean {
    const budget = this.#reading.budget;
    if (budget === undefined || bytes === 0) return true;
    if (budget.tryReserve(bytes)) {
      this.#reserved += bytes;
      return true;
    }
    this.#fail(
      new GatewayError(
        'GW_ERR_BODY_BUDGET_FULL',
        `request bodies in flight already hold ${budget.used} of server.maxBufferedBodyBytes (${budget.limit} bytes; a JSON body the gateway decodes counts ${JSON_DECODE_COST}× its size); retry shortly`,
        { headers: { 'retry-after': '1' } },
      ),
    );
    return false;
  }

  /** Resolves once the whole body has arrived; rejects when it cannot be read (too large, client gone). */
  received(): Promise<void> {
    this.#arrival ??= this.#arrive();
    return this.#arrival;
  }

  #declaredLength(): number | undefined {
    if (this.#req === undefined) return this.#size;
    const declared = this.#req.headers['content-length'];
    return declared === undefined ? undefined : Number(declared);
  }

  async #arrive(): Promise<void> {
    this.#start();
    while (this.#state === 'reading') await this.#changed();
    if (this.#state === 'failed') throw this.#error!;
  }

  async #readWhole(cost: number): Promise<Buffer> {
    this.#start(cost);
    await this.received();
    return this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks, this.#size);
  }

  async *#replay(): AsyncGenerator<Buffer> {
    let next = 0;
    for (;;) {
      while (next < this.#chunks.length) yield this.#chunks[next++]!;
      if (this.#state === 'done') return;
      if (this.#state === 'failed') throw this.#error!;
      await this.#changed();
    }
  }

  #changed(): Promise<void> {
    this.#change ??= new Promise<void>((resolve) => {
      this.#wake = resolve;
    });
    return this.#change;
  }

  #notify(): void {
    const wake = this.#wake;
    this.#change = undefined;
    this.#wake = undefined;
    wake?.();
  }

  #fail(error: GatewayError): void {
    this.abandoned = true;
    this.#state = 'failed';
    this.#error = error;
    this.#notify();
  }

  #tooLarge(): GatewayError {
    return new GatewayError('GW_ERR_BODY_TOO_LARGE', `request body exceeds the limit of ${this.#limit} bytes`);
  }

  /**
   * Starts reading (once): chunks are kept, readers woken at each chunk, the end, or the first error. `cost`: memory
   * per body byte, for admission (JSON_DECODE_COST for a body that will be parsed, else 1).
   */
  #start(cost = 1): void {
    if (this.#state !== 'unread') return;
    const declared = this.#declaredLength();
    if (declared !== undefined && declared > this.#limit) return this.#fail(this.#tooLarge());
    // Admitted by its declared size before a byte is read; a chunked body reserves as its chunks arrive.
    if (declared !== undefined && !this.#reserve(declared * cost)) return;
    this.#reading.onRead?.();
    this.#state = 'reading';
    const req = this.#req!; // only a stream-backed body is ever 'unread'
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('aborted', onAborted);
      req.off('close', onClose);
    };
    const onData = (chunk: Buffer) => {
      this.#size += chunk.length;
      if (this.#size > this.#limit || (declared === undefined && !this.#reserve(chunk.length * cost))) {
        cleanup();
        req.pause();
        if (this.#state !== 'failed') this.#fail(this.#tooLarge());
        return;
      }
      this.#chunks.push(chunk);
      this.#notify();
    };
    const onEnd = () => {
      cleanup();
      this.#state = 'done';
      this.#notify();
    };
    const onError = (err: Error) => {
      cleanup();
      this.#fail(new GatewayError('GW_ERR_CLIENT_CLOSED', 'request body could not be read', { cause: err }));
    };
    const onAborted = () => onError(new Error('client aborted the request'));
    // A request destroyed without 'end' or 'error' must still release whoever waits for its next chunk.
    const onClose = () => onError(new Error('the request closed before its body ended'));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('aborted', onAborted);
    req.on('close', onClose);
  }
}
