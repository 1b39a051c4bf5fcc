// The live-stream hub alone, behind a real HTTP server with short intervals: heartbeats between snapshots, a
// coalesced push after changes, the stream of an ended session closed with a reason, a slow reader dropped.

import test from 'ava';
import http from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { EventHub } from '../../src/admin/events.js';
import { createLogger } from '../../src/telemetry/log.js';
import { openEvents } from './http.js';

async function hubServer(options: { sessionLive?: (id: string) => boolean } = {}) {
  let built = 0;
  const live = new Set(['s1']);
  const hub = new EventHub({
    snapshot: () => ({ n: ++built }),
    history: () => ({ t: [] }),
    maxStreams: 4,
    sessionLive: options.sessionLive ?? ((id) => live.has(id)),
    log: createLogger('silent'),
    intervalMs: 200,
    heartbeatMs: 50,
  });
  const server = http.createServer((req, res) => {
    const session = req.headers['x-session'];
    const caller = { actor: { subject: 'x', kind: 'session' as const, role: 'read' as const } };
    const withSession =
      typeof session === 'string'
        ? {
            ...caller,
            session: { id: session, session: { subject: 'x', via: 'jwt' as const, role: 'read' as const, createdAt: 0, expiresAt: 0, csrfToken: '' } },
          }
        : caller;
    hub.open(req, res, { url: new URL('http://x/'), caller: withSession });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  return { hub, url, live, built: () => built, close: () => (hub.close(), server.close(), server.closeAllConnections()) };
}

test('heartbeats keep an idle connection alive between snapshots; snapshots come every interval; changes are pushed coalesced', async (t) => {
  const s = await hubServer();
  t.teardown(s.close);
  const stream = await openEvents(s.url, {});
  await stream.next((e) => e.event === 'snapshot', 2000, 0);
  await new Promise((r) => setTimeout(r, 450));
  t.true((stream.raw().match(/^: heartbeat$/gm) ?? []).length >= 4, 'heartbeats every 50 ms');
  const ticks = stream.events.filter((e) => e.event === 'snapshot').length;
  t.true(ticks >= 2 && ticks <= 4, `${ticks} snapshots in ~450 ms at 200 ms`);
  const before = s.built();
  for (let i = 0; i < 10; i++) s.hub.changed();
  await new Promise((r) => setTimeout(r, 60));
  t.is(s.built() - before, 1, 'ten changes in a burst: one snapshot');
});

test('a stream whose session ended is closed at the next tick with the reason; others go on', async (t) => {
  const s = await hubServer();
  t.teardown(s.close);
  const mine = await openEvents(s.url, { 'x-session': 's1' });
  const bearer = await openEvents(s.url, {});
  await mine.next((e) => e.event === 'snapshot', 2000, 0);
  s.live.delete('s1');
  t.deepEqual((await mine.next((e) => e.event === 'end', 2000)).data, { reason: 'session-ended' });
  await mine.ended;
  t.is(s.hub.size, 1);
  await bearer.next((e) => e.event === 'snapshot', 2000);
  bearer.close();
});
