// The wire contract of a .proto file as plain lines, to hold the gateway's gRPC protos against the upstream ones:
// `node dist/scripts/check-grpc-protos.js OURS UPSTREAM` compares two files; `--write OURS UPSTREAM` records the
// upstream file's contract next to ours (OURS with `.wire.txt`), which test/grpc/protos.test.ts then checks.

import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

/**
 * Every name, number and type a peer's encoder or decoder depends on, one sorted line each: messages and their
 * fields (number, label, type, map key, oneof), enums and their values, services and their methods (streaming
 * included). Comments, options and formatting are left out: they do not reach the wire.
 */
export function wireContract(file: string): string[] {
  const root = new protobuf.Root();
  root.loadSync(file, { keepCase: true });
  root.resolveAll();
  const lines: string[] = [];
  const walk = (ns: protobuf.NamespaceBase): void => {
    for (const item of ns.nestedArray) {
      const name = item.fullName.replace(/^\./, '');
      if (item instanceof protobuf.Type) {
        lines.push(`message ${name}`);
        for (const f of item.fieldsArray) {
          const label = f instanceof protobuf.MapField ? `map<${f.keyType}>` : f.repeated ? 'repeated' : 'single';
          const type = f.resolvedType ? f.resolvedType.fullName.replace(/^\./, '') : f.type;
          lines.push(`field ${name}.${f.name} = ${f.id} ${label} ${type}${f.partOf ? ` oneof ${f.partOf.name}` : ''}`);
        }
      } else if (item instanceof protobuf.Enum) {
        lines.push(`enum ${name}`);
        for (const [key, value] of Object.entries(item.values)) lines.push(`value ${name}.${key} = ${value}`);
      } else if (item instanceof protobuf.Service) {
        lines.push(`service ${name}`);
        for (const m of item.methodsArray) {
          const req = `${m.requestStream ? 'stream ' : ''}${m.resolvedRequestType?.fullName.replace(/^\./, '')}`;
          const res = `${m.responseStream ? 'stream ' : ''}${m.resolvedResponseType?.fullName.replace(/^\./, '')}`;
          lines.push(`rpc ${name}.${m.name}(${req}) returns (${res})`);
        }
      }
      if (item instanceof protobuf.Namespace || item instanceof protobuf.Type) walk(item);
    }
  };
  walk(root);
  return lines.sort();
}

/** Lines in one contract and not in the other, marked `-` (only in `expected`) and `+` (only in `actual`). */
export function contractDiff(expected: readonly string[], actual: readonly string[]): string[] {
  const a = new Set(actual);
  const e = new Set(expected);
  return [...expected.filter((l) => !a.has(l)).map((l) => `- ${l}`), ...actual.filter((l) => !e.has(l)).map((l) => `+ ${l}`)];
}

export const sha256 = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');

function main(argv: string[]): number {
  const write = argv[0] === '--write';
  const [ours, upstream] = write ? argv.slice(1) : argv;
  if (ours === undefined || upstream === undefined) {
    console.error('usage: check-grpc-protos [--write] OURS.proto UPSTREAM.proto');
    return 2;
  }
  const expected = wireContract(upstream);
  const diff = contractDiff(expected, wireContract(ours));
  if (write) {
    const target = ours.replace(/\.proto$/, '.wire.txt');
    writeFileSync(target, `${expected.join('\n')}\n`);
    console.log(`wrote ${target} (${expected.length} lines) from ${upstream} (sha256 ${sha256(upstream)})`);
  }
  if (diff.length > 0) {
    console.error(`${ours} differs from ${upstream} on the wire:\n${diff.join('\n')}`);
    return 1;
  }
  console.log(`${ours} matches ${upstream} on the wire (${expected.length} lines)`);
  return 0;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) process.exitCode = main(process.argv.slice(2));
