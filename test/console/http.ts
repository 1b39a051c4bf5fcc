// Test helpers for the console's HTTP side: raw requests with any header (Cookie, Origin, Sec-Fetch-Site — which
// fetch would refuse or rewrite), a console login, and a Server-Sent Events reader.

import http from 'node:http';

export interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: Record<string, unknown>;
}

export function request(url: string, options: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: options.method ?? 'GET', headers: options.headers ?? {} }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => {
        let json: Record<string, unknown> = {};
        try {
          json = JSON.parse(text) as Record<string, unknown>;
        } catch {
          // not JSON (a page, a script)
        }
        resolve({ status: res.statusCode!, headers: res.headers, text, json });
      });
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

export interface Login {
  cookie: string;
  csrf: string;
  answer: Answer;
}

/** Logs in as the console does: POST /admin/session from the console's own origin. */
export async function login(admin: string, token: string): Promise<Login> {
  const answer = await request(`${admin}/admin/session`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', origin: admin, 'sec-fetch-site': 'same-origin' },
    body: JSON.stringify({ token }),
  });
  const setCookie = answer.headers['set-cookie']?.[0] ?? '';
  return { cookie: setCookie.split(';')[0]!, csrf: String(answer.json.csrfToken ?? ''), answer };
}

/** The headers of a console call: the cookie, the CSRF token (unless null), and same-origin fetch metadata. */
export function consoleHeaders(admin: string, session: Login, csrf: string | null = session.csrf): Record<string, string> {
  return {
    cookie: session.cookie,
    origin: admin,
    'sec-fetch-site': 'same-origin',
    'content-type': 'application/json',
    ...(csrf !== null ? { 'x-csrf-token': csrf } : {}),
  };
}

export interface SseEvent {
  event: string;
  data: unknown;
}

export interface SseStream {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** Every event received so far. */
  events: SseEvent[];
  /** The raw text received so far (retry lines, heartbeats). */
  raw(): string;
  /** Resolves with the first event (from now on, or already received when `since` is 0) that matches. */
  next(match: (e: SseEvent) => boolean, timeoutMs?: number, since?: number): Promise<SseEvent>;
  ended: Promise<void>;
  close(): void;
}

export function openEvents(url: string, headers: Record<string, string>): Promise<SseStream> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers }, (res) => {
      const events: SseEvent[] = [];
      const waiters: { match: (e: SseEvent) => boolean; resolve: (e: SseEvent) => void }[] = [];
      let raw = '';
      let buffer = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        raw += d;
        buffer += d;
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let event = 'message';
          let data = '';
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) event = line.slice(7);
            else if (line.startsWith('data: ')) data += line.slice(6);
          }
          if (data === '') continue;
          const e = { event, data: JSON.parse(data) as unknown };
          events.push(e);
          for (const w of [...waiters]) {
            if (w.match(e)) {
              waiters.splice(waiters.indexOf(w), 1);
              w.resolve(e);
            }
          }
        }
      });
      const ended = new Promise<void>((done) => res.on('close', done));
      resolve({
        status: res.statusCode!,
        headers: res.headers,
        events,
        raw: () => raw,
        next(match, timeoutMs = 5000, since = events.length) {
          const found = events.slice(since).find(match);
          if (found) return Promise.resolve(found);
          return new Promise((ok, fail) => {
            const timer = setTimeout(() => fail(new Error(`no matching event in ${timeoutMs} ms; got ${events.map((e) => e.event).join(', ')}`)), timeoutMs);
            waiters.push({
              match,
              resolve: (e) => {
                clearTimeout(timer);
                ok(e);
              },
            });
          });
        },
        ended,
        close: () => req.destroy(),
      });
    });
    req.on('error', reject);
  });
}
