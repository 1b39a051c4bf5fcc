// Copies the Envoy ext_authz .proto files (and their imports) from the @grpc/grpc-js-xds devDependency into protos/ for runtime use.

import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Where the Envoy, googleapis, xds/udpa and validate protos live in the devDependency. */
export const ENVOY_PROTO_SOURCE_DIRS = ['envoy-api', 'googleapis', 'xds', 'protoc-gen-validate'].map((d) =>
  resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'node_modules', '@grpc', 'grpc-js-xds', 'deps', d),
);

/** The service the gateway implements; everything it imports is copied too. */
export const VENDORED_ROOT_PROTO = 'envoy/service/auth/v3/external_auth.proto';

/** Well-known types ship inside protobufjs/proto-loader, so they are not copied. */
const BUILT_IN = /^google\/protobuf\//;

/** The transitive import closure of `root`, as [relative path, absolute source file] pairs. */
export function importClosure(root: string, sourceDirs: readonly string[]): [string, string][] {
  const found = new Map<string, string>();
  const pending = [root];
  while (pending.length > 0) {
    const rel = pending.pop()!;
    if (found.has(rel) || BUILT_IN.test(rel)) continue;
    const file = sourceDirs.map((d) => join(d, rel)).find((f) => existsSync(f));
    if (file === undefined) throw new Error(`cannot find ${rel} in ${sourceDirs.join(', ')}`);
    found.set(rel, file);
    for (const m of readFileSync(file, 'utf8').matchAll(/^import\s+(?:public\s+|weak\s+)?"([^"]+)";/gm)) pending.push(m[1]!);
  }
  return [...found.entries()].sort(([a], [b]) => a.localeCompare(b));
}

function main(): void {
  const target = resolve(process.argv[2] ?? 'protos');
  const files = importClosure(VENDORED_ROOT_PROTO, ENVOY_PROTO_SOURCE_DIRS);
  for (const [rel, source] of files) {
    mkdirSync(dirname(join(target, rel)), { recursive: true });
    copyFileSync(source, join(target, rel));
  }
  console.log(`copied ${files.length} .proto files into ${target}`);
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
