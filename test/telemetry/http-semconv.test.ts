// The OpenTelemetry HTTP attributes the gateway's spans carry, from URLs and request headers at their edges.

import test from 'ava';
import { GatewayError } from '../../src/errors/gateway-error.js';
import { errorTypeOf, httpClientAttributes, httpServerAttributes, methodAttributes } from '../../src/telemetry/http-semconv.js';

test('client attributes: address and port (default per scheme), the full URL without credentials, the scheme', (t) => {
  t.deepEqual(httpClientAttributes('POST', new URL('http://runtime:8000/v2/models/iris/infer')), {
    'http.request.method': 'POST',
    'server.address': 'runtime',
    'server.port': 8000,
    'url.full': 'http://runtime:8000/v2/models/iris/infer',
    'url.scheme': 'http',
  });
  t.like(httpClientAttributes('POST', new URL('https://triton.ml.svc/v2/models/m/infer')), { 'server.port': 443, 'url.scheme': 'https' });
  t.like(httpClientAttributes('POST', new URL('http://[::1]:9000/x')), { 'server.address': '::1', 'server.port': 9000 });
  t.is(httpClientAttributes('POST', new URL('http://user:secret@runtime/x'))['url.full'], 'http://REDACTED:REDACTED@runtime/x');
});

test('server attributes: url.scheme from X-Forwarded-Proto or http, server.* from Host, unknown methods as _OTHER', (t) => {
  t.deepEqual(httpServerAttributes('POST', { host: 'gateway.ml:8080' }, '1.1'), {
    'http.request.method': 'POST',
    'url.scheme': 'http',
    'network.protocol.version': '1.1',
    'server.address': 'gateway.ml',
    'server.port': 8080,
  });
  t.like(httpServerAttributes('GET', { host: 'gateway.ml', 'x-forwarded-proto': 'https' }, '1.1'), { 'url.scheme': 'https', 'server.port': 443 });
  t.like(httpServerAttributes('GET', { host: '[fd00::1]:80', 'x-forwarded-proto': 'HTTPS, http' }, '1.1'), {
    'url.scheme': 'https',
    'server.address': 'fd00::1',
  });
  t.like(httpServerAttributes('GET', { 'x-forwarded-proto': 'gopher' }, '1.0'), { 'url.scheme': 'http' });
  t.false('server.address' in httpServerAttributes('GET', { host: 'bad host' }, '1.1'));
  t.deepEqual(methodAttributes('BREW'), { 'http.request.method': '_OTHER', 'http.request.method_original': 'BREW' });
});

test('error.type: the gateway error code, else the error code or class, else _OTHER', (t) => {
  t.is(errorTypeOf(new GatewayError('GW_ERR_BACKEND_TIMEOUT')), 'GW_ERR_BACKEND_TIMEOUT');
  t.is(errorTypeOf(Object.assign(new Error('x'), { code: 'ECONNRESET' })), 'ECONNRESET');
  t.is(errorTypeOf(new TypeError('x')), 'TypeError');
  t.is(errorTypeOf('a string'), '_OTHER');
});
