// `model-gateway check-config FILE`: the validation `start` and reload run, without starting anything.

import { loadConfig } from '../config/load.js';
import type { CommandIo } from './io.js';

export const CHECK_CONFIG_USAGE = `  model-gateway check-config FILE
      Validate a config file without starting: the schema and \${VAR}s, that every file it reads (onnx model paths,
      jwks.file) exists and is readable, and that the disagreement log's directory exists and is writable.
      Exit 0 if valid, 1 if not.
`;

export async function checkConfigCommand(argv: string[], io: CommandIo): Promise<number> {
  const file = argv[0];
  if (!file || argv.length > 1) {
    io.stderr(`usage: model-gateway check-config FILE\n`);
    return 2;
  }
  const { config, file: absolute } = await loadConfig(file, io.env);
  const versions = Object.values(config.models).reduce((n, m) => n + Object.keys(m.versions).length, 0);
  const count = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;
  io.stdout(`${absolute}: OK (${count(Object.keys(config.models).length, 'model')}, ${count(versions, 'version')})\n`);
  return 0;
}
