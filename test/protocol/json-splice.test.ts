// Splicing the gateway's names into a remote's JSON answer without parsing it: the result always parses to the answer
// with those two fields replaced (or added), and anything that is not one JSON object is refused.

import test from 'ava';
import fc from 'fast-check';
import { replaceTopLevel, topLevelMembers } from '../../src/protocol/json-splice.js';

const NAMES = { model_name: 'iris', model_version: '2' };

function splice(text: string): unknown {
  const bytes = Buffer.from(text);
  const members = topLevelMembers(bytes);
  if (!members) return undefined;
  return JSON.parse(Buffer.concat(replaceTopLevel(bytes, members, NAMES)).toString());
}

const cases: [string, string][] = [
  ['both names present', '{"model_name":"remote","model_version":"7","outputs":[{"data":[1,2,3]}]}'],
  ['names missing', '{"outputs":[]}'],
  ['an empty object', '{}'],
  ['whitespace everywhere', ' \n{ "outputs" : [ 1 , 2 ] ,\t"model_name" : "x" } \r\n'],
  ['strings with quotes, braces and escapes', '{"id":"a\\"}]{[\\\\","outputs":[{"name":"}\\"","data":["[","{"]}],"model_version":"1"}'],
  ['an escaped key spelling model_name', '{"model\\u005fname":"remote","outputs":[]}'],
  ['a duplicated key (JSON.parse keeps the last)', '{"model_name":"a","model_name":"b","outputs":[]}'],
  ['nested objects named like the fields', '{"parameters":{"model_name":"keep"},"outputs":[{"model_version":"keep"}]}'],
  ['literals and numbers', '{"a":true,"b":null,"c":-1.5e-3,"outputs":[false]}'],
];
for (const [name, text] of cases) {
  test(`spliced: ${name}`, (t) => {
    t.deepEqual(splice(text), { ...(JSON.parse(text) as object), ...NAMES });
  });
}

const refused: [string, string][] = [
  ['an array', '[1,2]'],
  ['a string', '"x"'],
  ['cut off', '{"outputs":[1,2'],
  ['an unclosed string', '{"outputs":"abc'],
  ['mismatched brackets', '{"outputs":[1,2}'],
  ['trailing bytes', '{"outputs":[]} x'],
  ['two objects', '{}{}'],
  ['a missing colon', '{"outputs" []}'],
  ['a missing comma', '{"a":1 "b":2}'],
  ['an unquoted key', '{outputs:[]}'],
  ['empty', ''],
];
for (const [name, text] of refused) {
  test(`refused: ${name}`, (t) => {
    t.is(topLevelMembers(Buffer.from(text)), undefined);
  });
}

test('any JSON object, compact or indented, splices to itself with the two names', (t) => {
  fc.assert(
    fc.property(fc.dictionary(fc.string(), fc.jsonValue()), fc.boolean(), (object, indent) => {
      const text = JSON.stringify(object, null, indent ? 2 : undefined);
      const expected = JSON.parse(JSON.stringify({ ...object, ...NAMES })) as unknown;
      return JSON.stringify(splice(text)) === JSON.stringify(expected) || deepEqualUnordered(splice(text), expected);
    }),
    { numRuns: 500 },
  );
  t.pass();
});

/** Key order may differ (added names come first); values may not. */
function deepEqualUnordered(a: unknown, b: unknown): boolean {
  if (typeof a !== 'object' || a === null || typeof b !== 'object' || b === null) return Object.is(a, b) || JSON.stringify(a) === JSON.stringify(b);
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return ka.length === kb.length && ka.every((k) => deepEqualUnordered((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

test('untouched members are not copied: the tensors are views of the remote body', (t) => {
  const bytes = Buffer.from('{"model_name":"r","outputs":[{"data":[1,2,3]}]}');
  const chunks = replaceTopLevel(bytes, topLevelMembers(bytes)!, NAMES);
  t.true(chunks.some((c) => c.buffer === bytes.buffer && c.toString().includes('"outputs"')));
});
