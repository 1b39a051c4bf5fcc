// The OIP REST paths: which endpoint a path names. Shared by the data plane and ext_authz checks, which must agree.

import type { Operation } from './oip.js';

export type Route =
  | { kind: 'live' | 'ready' | 'server-metadata'; methods: readonly string[] }
  | { kind: 'model'; operation: Operation; model: string; version: string | undefined; methods: readonly string[] };

const GET = ['GET', 'HEAD'] as const;
const POST = ['POST'] as const;

/** Maps a path (without its query) to an OIP endpoint; undefined when it is none of them. */
export function matchRoute(path: string): Route | undefined {
  const s = path.split('/');
  if (s[0] !== '' || s[1] !== 'v2') return undefined;
  if (s.length === 2) return { kind: 'server-metadata', methods: GET };
  if (s[2] === 'health' && s.length === 4) {
    if (s[3] === 'live') return { kind: 'live', methods: GET };
    if (s[3] === 'ready') return { kind: 'ready', methods: GET };
    return undefined;
  }
  if (s[2] !== 'models' || s.length < 4 || !s[3]) return undefined;
  const model = s[3];
  let rest = s.slice(4);
  let version: string | undefined;
  if (rest[0] === 'versions') {
    if (!rest[1]) return undefined;
    version = rest[1];
    rest = rest.slice(2);
  }
  if (rest.length === 0) return { kind: 'model', operation: 'model-metadata', model, version, methods: GET };
  if (rest.length === 1 && rest[0] === 'ready') return { kind: 'model', operation: 'model-ready', model, version, methods: GET };
  if (rest.length === 1 && rest[0] === 'infer') return { kind: 'model', operation: 'infer', model, version, methods: POST };
  return undefined;
}

/** A path with its query string removed. */
export function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}
