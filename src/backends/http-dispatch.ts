// One HTTP exchange over an undici dispatcher with its own abort signal, recording how far the request got, so a
// retry is only ever made for a request the remote cannot have acted on.

import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';

export interface ExchangeRequest {
  method: 'GET' | 'POST';
  path: string;
  headers: Record<string, string>;
  /** A buffer, or a stream of chunks (sent with the headers' `content-length` if given, else chunked). */
  body?: Buffer | Readable;
  /** Aborts this exchange only (its socket is destroyed, so a hung remote does not keep it). */
  signal: AbortSignal;
}

export interface ExchangeResponse {
  status: number;
  /** Lower-case names; repeated headers joined with ", ". */
  headers: Record<string, string>;
  body: Buffer;
}

/** A failed exchange: the underlying error and how far the request got. */
export class ExchangeError extends Error {
  /** undici handed the whole request to the socket: the remote may have received it. */
  readonly sent: boolean;
  /** Response headers had arrived. */
  readonly responded: boolean;
  /** Our own signal aborted it (deadline, client gone); `cause` is the signal's reason. */
  readonly aborted: boolean;

  constructor(cause: unknown, progress: { sent: boolean; responded: boolean; aborted: boolean }) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
    this.name = 'ExchangeError';
    this.sent = progress.sent;
    this.responded = progress.responded;
    this.aborted = progress.aborted;
  }

  /** The error code of the cause (`ECONNREFUSED`, `UND_ERR_HEADERS_TIMEOUT`, ...), if it has one. */
  get code(): string | undefined {
    const code = (this.cause as { code?: unknown } | undefined)?.code;
    return typeof code === 'string' ? code : undefined;
  }
}

function asError(reason: unknown): Error {
  return reason instanceof Error ? reason : new Error(String(reason));
}

/**
 * Sends one request and buffers the whole response (bounded by the dispatcher's maxResponseSize). Uses undici's
 * dispatch API rather than request(): only the dispatch handler learns when the request was completely written
 * (`onRequestSent`), which is what tells a safe retry from an unsafe one.
 */
export function exchange(dispatcher: Dispatcher, req: ExchangeRequest): Promise<ExchangeResponse> {
  const { signal } = req;
  return new Promise<ExchangeResponse>((resolve, reject) => {
    const progress = { sent: false, responded: false, aborted: false };
    let settled = false;
    let abortSocket: ((err?: Error) => void) | undefined;
    let status = 0;
    const headers: Record<string, string> = {};
    const chunks: Buffer[] = [];

    const settle = (): boolean => {
      if (settled) return false;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      return true;
    };
    const fail = (err: unknown) => {
      if (settle()) reject(new ExchangeError(err, progress));
    };
    function onAbort(): void {
      progress.aborted = true;
      // Before onConnect the request is still queued in the pool; onConnect aborts it as soon as it is dispatched.
      abortSocket?.(asError(signal.reason));
      fail(signal.reason);
    }
    if (signal.aborted) {
      progress.aborted = true;
      fail(signal.reason);
      return;
    }
    signal.addEventListener('abort', onAbort, { once: true });

    // onRequestSent exists at run time on every undici version we support but is missing from the handler typings.
    const handler: Dispatcher.DispatchHandler & { onRequestSent(): void } = {
      onConnect(abort) {
        if (signal.aborted) abort(asError(signal.reason));
        else abortSocket = abort;
      },
      onRequestSent() {
        progress.sent = true;
      },
      onHeaders(statusCode, raw) {
        if (statusCode < 200) return true; // 1xx interim responses
        progress.responded = true;
        status = statusCode;
        for (let i = 0; i + 1 < raw.length; i += 2) {
          const name = raw[i]!.toString('latin1').toLowerCase();
          const value = raw[i + 1]!.toString('latin1');
          headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
        }
        return true;
      },
      onData(chunk) {
        chunks.push(chunk);
        return true;
      },
      onComplete() {
        if (settle()) resolve({ status, headers, body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks) });
      },
      onError(err) {
        fail(err);
      },
    };
    try {
      dispatcher.dispatch({ method: req.method, path: req.path, headers: req.headers, body: req.body ?? null, blocking: true }, handler);
    } catch (err) {
      fail(err);
    }
  });
}
