// Reads a request body lazily with a hard size limit: 413 from Content-Length before reading, or as soon as the stream exceeds it.

import type { IncomingMessage } from 'node:http';
import { GatewayError } from '../errors/gateway-error.js';

export class RequestBody {
  #read: Promise<Buffer> | undefined;
  /** True once the body was rejected unread or half-read: the connection must close after the reply. */
  abandoned = false;

  constructor(
    private readonly req: IncomingMessage,
    private readonly limit: number,
  ) {}

  /** The whole body as bytes (read once, then cached). */
  bytes(): Promise<Buffer> {
    this.#read ??= this.#readAll();
    return this.#read;
  }

  /** The body parsed as JSON; an empty or malformed body is a 400. */
  async json(): Promise<unknown> {
    const bytes = await this.bytes();
    if (bytes.length === 0) throw new GatewayError('GW_ERR_BAD_JSON', 'request body is empty; expected a JSON object');
    try {
      return JSON.parse(bytes.toString('utf8'));
    } catch (err) {
      throw new GatewayError('GW_ERR_BAD_JSON', `request body is not valid JSON: ${(err as Error).message}`);
    }
  }

  #tooLarge(): GatewayError {
    this.abandoned = true;
    return new GatewayError('GW_ERR_BODY_TOO_LARGE', `request body exceeds the limit of ${this.limit} bytes`);
  }

  #readAll(): Promise<Buffer> {
    const declared = this.req.headers['content-length'];
    if (declared !== undefined && Number(declared) > this.limit) return Promise.reject(this.#tooLarge());
    return new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      const cleanup = () => {
        this.req.off('data', onData);
        this.req.off('end', onEnd);
        this.req.off('error', onError);
        this.req.off('aborted', onAborted);
      };
      const onData = (chunk: Buffer) => {
        size += chunk.length;
        if (size > this.limit) {
          cleanup();
          this.req.pause();
          reject(this.#tooLarge());
          return;
        }
        chunks.push(chunk);
      };
      const onEnd = () => {
        cleanup();
        resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
      };
      const onError = (err: Error) => {
        cleanup();
        this.abandoned = true;
        reject(new GatewayError('GW_ERR_CLIENT_CLOSED', 'request body could not be read', { cause: err }));
      };
      const onAborted = () => onError(new Error('client aborted the request'));
      this.req.on('data', onData);
      this.req.on('end', onEnd);
      this.req.on('error', onError);
      this.req.on('aborted', onAborted);
    });
  }
}
