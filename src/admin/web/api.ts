// The console's calls to the admin API: the session cookie goes by itself (HttpOnly, never readable here); the CSRF
// token is kept in this module's memory only — never in a URL, never in local storage — and sent on every change.

import type { Session } from './types.js';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

let session: Session | undefined;

export function currentSession(): Session | undefined {
  return session;
}

async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && session) headers['x-csrf-token'] = session.csrfToken;
  let res: Response;
  try {
    res = await fetch(path, { method, headers, credentials: 'same-origin', cache: 'no-store', ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  } catch {
    throw new ApiError(0, 'the gateway cannot be reached');
  }
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = text === '' ? {} : JSON.parse(text);
  } catch {
    throw new ApiError(res.status, `the gateway answered ${res.status} with a body that is not JSON`);
  }
  if (!res.ok) {
    const error =
      typeof parsed === 'object' && parsed !== null && typeof (parsed as { error?: unknown }).error === 'string'
        ? (parsed as { error: string }).error
        : `HTTP ${res.status}`;
    throw new ApiError(res.status, error);
  }
  return parsed as T;
}

/** The session the cookie carries, if any (after a page load). */
export async function resumeSession(): Promise<Session | undefined> {
  try {
    session = await request<Session>('GET', '/admin/session');
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) session = undefined;
    else throw err;
  }
  return session;
}

export async function login(token: string): Promise<Session> {
  session = await request<Session>('POST', '/admin/session', { token });
  return session;
}

export async function logout(): Promise<void> {
  try {
    await request('DELETE', '/admin/session');
  } finally {
    session = undefined;
  }
}

export function forgetSession(): void {
  session = undefined;
}

export const api = {
  get: <T>(path: string) => request<T>('GET', path),
  put: <T>(path: string, body: unknown) => request<T>('PUT', path, body),
  post: <T>(path: string, body?: unknown) => request<T>('POST', path, body),
  del: <T>(path: string) => request<T>('DELETE', path),
};
