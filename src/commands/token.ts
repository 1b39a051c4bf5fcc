// `model-gateway token`: mints a JWT from a local development key so the example config works end to end, offline.

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { JWK } from 'jose';
import type { CommandIo } from './io.js';

/** The committed, published, development-only key (see examples/dev-keys/README.md). */
export const DEV_KEY_FILE = path.resolve(import.meta.dirname, '../../../examples/dev-keys/private.jwk.json');
export const DEV_ISSUER = 'model-gateway-dev';
export const DEV_AUDIENCE = 'model-gateway';

export const TOKEN_USAGE = `  model-gateway token [--sub S] [--scope "a b"] [--claim k=v]... [--ttl 1h] [--iss I] [--aud A]... [--key FILE]
      Print a JWT signed with a local key (default: the DEVELOPMENT-ONLY examples/dev-keys/private.jwk.json,
      trusted by examples/gateway.yaml as issuer '${DEV_ISSUER}').
`;

/** `90`, `90s`, `15m`, `1h`, `7d` → seconds. */
export function parseTtl(text: string): number {
  const m = /^(\d+)([smhd]?)$/.exec(text.trim());
  if (!m) throw new Error(`--ttl '${text}' is not a duration (e.g. 90s, 15m, 1h, 7d)`);
  const seconds = Number(m[1]) * { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
  if (seconds < 1) throw new Error('--ttl must be at least 1 second');
  return seconds;
}

/** A `k=v` claim; v is JSON when it parses as JSON (numbers, booleans, arrays), else a string. */
function parseClaim(text: string): [string, unknown] {
  const eq = text.indexOf('=');
  if (eq < 1) throw new Error(`--claim '${text}' must look like name=value`);
  const raw = text.slice(eq + 1);
  try {
    return [text.slice(0, eq), JSON.parse(raw)];
  } catch {
    return [text.slice(0, eq), raw];
  }
}

export async function mintToken(argv: string[], now: () => number = Date.now): Promise<string> {
  const { values } = parseArgs({
    args: argv,
    options: {
      sub: { type: 'string', default: 'dev-user' },
      scope: { type: 'string' },
      claim: { type: 'string', multiple: true, default: [] },
      ttl: { type: 'string', default: '1h' },
      iss: { type: 'string', default: DEV_ISSUER },
      aud: { type: 'string', multiple: true },
      key: { type: 'string', default: DEV_KEY_FILE },
    },
    strict: true,
  });
  let jwk: JWK;
  try {
    jwk = JSON.parse(await readFile(values.key!, 'utf8')) as JWK;
  } catch (err) {
    throw new Error(`cannot read the signing key ${values.key}: ${(err as Error).message}`, { cause: err });
  }
  if (typeof jwk.alg !== 'string' || jwk.d === undefined) throw new Error(`${values.key} must be a private JWK with an "alg"`);
  // jose is loaded here, not at start-up: `help` imports this module for its usage text.
  const { importJWK, SignJWT } = await import('jose');
  const key = await importJWK(jwk, jwk.alg);
  const claims: Record<string, unknown> = Object.fromEntries(values.claim!.map(parseClaim));
  if (values.scope !== undefined) claims.scope = values.scope;
  const issuedAt = Math.floor(now() / 1000);
  const audiences = values.aud && values.aud.length > 0 ? values.aud : [DEV_AUDIENCE];
  return new SignJWT(claims)
    .setProtectedHeader({ alg: jwk.alg, typ: 'JWT', ...(jwk.kid ? { kid: jwk.kid } : {}) })
    .setIssuer(values.iss!)
    .setSubject(values.sub!)
    .setAudience(audiences.length === 1 ? audiences[0]! : audiences)
    .setIssuedAt(issuedAt)
    .setExpirationTime(issuedAt + parseTtl(values.ttl!))
    .sign(key);
}

export async function tokenCommand(argv: string[], io: CommandIo): Promise<number> {
  const token = await mintToken(argv);
  if (!argv.includes('--key')) io.stderr('model-gateway token: signed with the DEVELOPMENT-ONLY key in examples/dev-keys (never trust it in production)\n');
  io.stdout(`${token}\n`);
  return 0;
}
