// The OIP REST paths: which endpoint a path names. Shared by the data plane and ext_authz checks, which must agree.

import type { Operation } from './oip.js';

export type Route =
  | { kind: 'live' | 'ready' | 'server-metadata'; methods: readonly string[] }
  | { kind: 'model'; operation: Operation; model: string; version: string | undefined; methods: readonly string[] }
  /** A model path whose name or version cannot be canonicalised (bad percent-encoding, an encoded `/`, controls): 400. */
  | { kind: 'bad-name'; message: string };

const GET = ['GET', 'HEAD'] as const;
const POST = ['POST'] as const;

/**
 * A path segment as a name: percent-decoded once, so `ir%69s` and `iris` are the same model for authorisation,
 * limits and routing alike (the name everything after this sees is the canonical one). Undefined when it cannot be one
 * name: malformed escapes, an encoded `/` (a name never spans segments), or control characters.
 */
export function canonicalName(segment: string): string | undefined {
  let name = segment;
  if (segment.includes('%')) {
    try {
      name = decodeURIComponent(segment);
    } catch {
      return undefined;
    }
  }
  if (name === '') return undefined;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c < 0x20 || c === 0x7f || c === 0x2f) return undefined; // controls, and `/` (a name never spans segments)
  }
  return name;
}

/**
 * Maps a path (without its query) to an OIP endpoint; undefined when it is none of them. Model and version segments are
 * canonicalised once here, for the data plane and ext_authz alike.
 */
export function matchRoute(path: string): Route | undefined {
  const s = path.split('/');
  if (s[0] !== '' || s[1] !== 'v2') return undefined;
  // `GET /v2/` is how the official OpenAPI file writes server metadata.
  if (s.length === 2 || (s.length === 3 && s[2] === '')) return { kind: 'server-metadata', methods: GET };
  if (s[2] === 'health' && s.length === 4) {
    if (s[3] === 'live') return { kind: 'live', methods: GET };
    if (s[3] === 'ready') return { kind: 'ready', methods: GET };
    return undefined;
  }
  if (s[2] !== 'models' || s.length < 4 || !s[3]) return undefined;
  const model = canonicalName(s[3]);
  if (model === undefined) return { kind: 'bad-name', message: `the model name in the path is not a valid name: '${s[3].slice(0, 128)}'` };
  let rest = s.slice(4);
  let version: string | undefined;
  if (rest[0] === 'versions') {
    if (!rest[1]) return undefined;
    version = canonicalName(rest[1]);
    if (version === undefined) return { kind: 'bad-name', message: `the version in the path is not a valid name: '${rest[1].slice(0, 64)}'` };
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
