// Exact OIP JSON: 64-bit integers keep every digit, NaN/±Infinity are refused (never null), the message layout is OIP's.

import test from 'ava';
import { oipMessageJson, tensorDataJson } from '../../src/protocol/json-wire.js';
import type { Tensor } from '../../src/protocol/oip.js';
import { floatToHalf } from '../../src/protocol/tensor.js';

const t64 = (datatype: 'INT64' | 'UINT64', values: bigint[]): Tensor => ({
  name: 'y',
  datatype,
  shape: [values.length],
  data: datatype === 'INT64' ? new BigInt64Array(values) : new BigUint64Array(values),
});

test('64-bit integers beyond 2^53 are written with their exact digits', (t) => {
  t.is(tensorDataJson(t64('INT64', [2n ** 60n + 1n, -(2n ** 63n), 1n]), 'output'), '[1152921504606846977,-9223372036854775808,1]');
  t.is(tensorDataJson(t64('UINT64', [2n ** 64n - 1n, 2n ** 53n + 1n]), 'output'), '[18446744073709551615,9007199254740993]');
  // Within ±(2^53 - 1) they are plain numbers too (the same text either way).
  t.is(tensorDataJson(t64('INT64', [2n ** 53n - 1n, -(2n ** 53n - 1n), 0n]), 'output'), '[9007199254740991,-9007199254740991,0]');
});

const refuses = test.macro((t, tensor: Tensor, pattern: RegExp) => {
  const err = t.throws(() => tensorDataJson(tensor, 'output'));
  t.like(err, { code: 'GW_ERR_NOT_REPRESENTABLE_IN_JSON', status: 422 });
  t.regex(err!.message, pattern);
  t.regex(err!.message, /binary_data_output/);
});
test(
  'NaN in FP32 is refused, not written as null',
  refuses,
  { name: 'p', datatype: 'FP32', shape: [2], data: new Float32Array([1, NaN]) },
  /output 'p' element 1 is NaN/,
);
test('+Infinity in FP64 is refused', refuses, { name: 'p', datatype: 'FP64', shape: [1], data: new Float64Array([Infinity]) }, /element 0 is Infinity/);
test('-Infinity in FP16 is refused', refuses, { name: 'h', datatype: 'FP16', shape: [1], data: new Uint16Array([floatToHalf(-Infinity)]) }, /is -Infinity/);

test('other datatypes: BOOL as booleans, FP16 widened, BYTES as escaped strings', (t) => {
  t.is(tensorDataJson({ name: 'b', datatype: 'BOOL', shape: [2], data: new Uint8Array([1, 0]) }, 'output'), '[true,false]');
  t.is(tensorDataJson({ name: 'h', datatype: 'FP16', shape: [1], data: new Uint16Array([0x3c00]) }, 'output'), '[1]');
  t.is(tensorDataJson({ name: 's', datatype: 'BYTES', shape: [2], data: ['a"b', '\u0000'] }, 'output'), '["a\\"b","\\u0000"]');
});

test('a message: head members, then the tensor list with exact data, then the tail; it parses as the same OIP body', (t) => {
  const text = oipMessageJson({ model_name: 'm', model_version: '1', id: 'r"1' }, 'outputs', [
    { fields: { name: 'a', datatype: 'INT64', shape: [1] }, data: t64('INT64', [5n]) },
    { fields: { name: 'b', datatype: 'FP32', shape: [1], parameters: { binary_data_size: 4 } } },
  ]);
  t.is(
    text,
    '{"model_name":"m","model_version":"1","id":"r\\"1","outputs":[{"name":"a","datatype":"INT64","shape":[1],"data":[5]},{"name":"b","datatype":"FP32","shape":[1],"parameters":{"binary_data_size":4}}]}',
  );
  const request = oipMessageJson({}, 'inputs', [{ fields: { name: 'x', shape: [1], datatype: 'INT64' }, data: t64('INT64', [2n ** 60n + 1n]) }], {
    outputs: [{ name: 'y' }],
  });
  t.is(request, '{"inputs":[{"name":"x","shape":[1],"datatype":"INT64","data":[1152921504606846977]}],"outputs":[{"name":"y"}]}');
});
