// docs/configuration.md against the schema, both ways (as fastify checks its error docs): every key of the schema has
// a row, every row names a key the schema has, and every default shown is the one the gateway applies.

import test from 'ava';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { documentedDefault, effectiveDefaults, referenceRows, schemaKeys } from '../helpers/config-reference.js';
import { ROOT } from '../helpers/gateway.js';

const page = await readFile(path.join(ROOT, 'docs/configuration.md'), 'utf8');
const rows = referenceRows(page);
const keys = schemaKeys();
const defaults = effectiveDefaults();
const at = (line: number) => `docs/configuration.md:${line}`;
const literal = (value: unknown) => (typeof value === 'string' ? value : JSON.stringify(value));

test('every key of the schema has a row in the reference', (t) => {
  const documented = new Set(rows.map((r) => r.key));
  const missing = [...keys]
    .filter(([key, { leaf }]) => leaf && !documented.has(key))
    .map(([key]) => `${key} (default: ${defaults.has(key) ? literal(defaults.get(key)) : 'none'})`);
  t.deepEqual(missing, []);
});

test('every row names a key the schema has, once', (t) => {
  t.deepEqual(
    rows.filter((r) => !keys.has(r.key)).map((r) => `${at(r.line)}: ${r.key}`),
    [],
  );
  const seen = new Map<string, number>();
  const twice = rows
    .filter((r) => (seen.has(r.key) ? true : (seen.set(r.key, r.line), false)))
    .map((r) => `${at(r.line)}: ${r.key} (also line ${seen.get(r.key)})`);
  t.deepEqual(twice, []);
});

test('every default shown is the one the schema applies, and every default the schema applies is shown', (t) => {
  const wrong: string[] = [];
  for (const row of rows) {
    const shown = documentedDefault(row.defaultCell);
    const applied = defaults.has(row.key) ? { value: defaults.get(row.key) } : undefined;
    if (applied && !shown) wrong.push(`${at(row.line)}: ${row.key} shows no default; the schema's is \`${literal(applied.value)}\``);
    else if (shown && !applied)
      wrong.push(`${at(row.line)}: ${row.key} shows \`${literal(shown.value)}\`, but the schema has no default (write "same as …" or "unset")`);
    else if (shown && applied && JSON.stringify(shown.value) !== JSON.stringify(applied.value)) {
      wrong.push(`${at(row.line)}: ${row.key} shows \`${literal(shown.value)}\`; the schema's default is \`${literal(applied.value)}\``);
    }
  }
  t.deepEqual(wrong, []);
});

test('the checks see what they should: keys, defaults and the table format', (t) => {
  t.deepEqual(keys.get('server.port'), { leaf: true });
  t.deepEqual(keys.get('models.*.versions.*.backend'), { leaf: false });
  t.is(defaults.get('auth.admin.read.scopes') !== undefined, true);
  t.deepEqual(defaults.get('auth.admin.read.scopes'), ['gateway:admin']);
  t.is(defaults.get('models.*.versions.*.backend.validate'), 'remote');
  t.false(defaults.has('models.*.versions.*.backend.url'));
  t.deepEqual(referenceRows('## Reference\n| key | default |\n|---|---|\n| `models.<m>.timeoutMs` (x) | `30000` | ms | y |'), [
    { line: 4, key: 'models.*.timeoutMs', defaultCell: '`30000`' },
  ]);
  t.deepEqual(documentedDefault('`[5, 25]` steps'), { value: [5, 25] });
  t.deepEqual(documentedDefault('`0.0.0.0`'), { value: '0.0.0.0' });
  t.is(documentedDefault('unset → `$X`'), undefined);
});
