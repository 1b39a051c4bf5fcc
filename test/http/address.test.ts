// The address a listener reports: wildcards are dialled on the loopback, IPv6 literals go in brackets.

import test from 'ava';
import { dialAddress } from '../../src/http/address.js';

test('wildcard binds are reached on 127.0.0.1; names and IPv4 pass through; IPv6 is bracketed', (t) => {
  t.is(dialAddress('0.0.0.0', 8080), '127.0.0.1:8080');
  t.is(dialAddress('::', 8080), '127.0.0.1:8080');
  t.is(dialAddress('127.0.0.1', 9), '127.0.0.1:9');
  t.is(dialAddress('localhost', 9), 'localhost:9');
  t.is(dialAddress('::1', 8001), '[::1]:8001');
  t.is(dialAddress('fd00::5', 8001), '[fd00::5]:8001');
});
