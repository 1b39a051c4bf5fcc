// The ops console's entry: log in (the token is exchanged for a session cookie and forgotten), then follow the
// admin API's live stream (Server-Sent Events) and keep every panel current without reloading the page.

import { currentSession, forgetSession, login, logout, resumeSession } from './api.js';
import { renderActivity } from './activity.js';
import { SeriesStore } from './charts.js';
import { notify } from './dialogs.js';
import { byId, setAttr, setText } from './dom.js';
import { clock } from './format.js';
import { ModelPanel, structureOf } from './model-panel.js';
import type { History, Role, Snapshot } from './types.js';

/** A snapshot older than this means the stream is stalled: say so rather than show stale figures as live. */
const STALE_MS = 3000;

const store = new SeriesStore();
const panels = new Map<string, ModelPanel>();
let stream: EventSource | undefined;
let lastSnapshotAt = 0;
let metrics = true;
let reconnectTimer: number | undefined;

const role = (): Role => currentSession()?.role ?? 'read';

function show(view: 'login' | 'console'): void {
  byId('login').hidden = view !== 'login';
  byId('console').hidden = view !== 'console';
  byId('session-bar').hidden = view !== 'console';
}

function showLogin(message = ''): void {
  closeStream();
  forgetSession();
  show('login');
  setText(byId('login-error'), message);
  byId<HTMLInputElement>('token').focus();
}

function closeStream(): void {
  stream?.close();
  stream = undefined;
  window.clearTimeout(reconnectTimer);
}

function setConnection(state: 'live' | 'connecting' | 'stale' | 'stopped', detail: string): void {
  const el = byId('connection');
  setAttr(el, 'data-state', state);
  setText(el, detail);
}

function startConsole(): void {
  const s = currentSession();
  if (!s) return showLogin();
  show('console');
  setText(byId('who'), `${s.subject} · ${s.role === 'write' ? 'operator (read and write)' : 'viewer (read-only)'}`);
  setText(byId('session-expiry'), `session until ${clock(s.expiresAt)}`);
  byId('read-only').hidden = s.role === 'write';
  openStream();
}

function openStream(): void {
  closeStream();
  setConnection('connecting', 'connecting…');
  const es = new EventSource('/admin/events');
  stream = es;
  es.addEventListener('history', (e) => {
    const history = JSON.parse((e as MessageEvent<string>).data) as History;
    metrics = history.metrics;
    store.load(history);
  });
  es.addEventListener('snapshot', (e) => render(JSON.parse((e as MessageEvent<string>).data) as Snapshot));
  // Behind the workers' relay: say whose figures these are.
  es.addEventListener('relay', (e) => {
    const { worker, workers } = JSON.parse((e as MessageEvent<string>).data) as { worker: number; workers: number };
    const note = byId('workers-note');
    note.hidden = false;
    setText(
      note,
      `This gateway runs ${workers} data-plane workers. Live figures, breakers and shadow statistics below are worker ${worker}'s own (about 1/${workers} of the traffic); weights, rollouts, reloads and the audit trail are the same for every worker, and every action here is applied by all of them.`,
    );
  });
  es.addEventListener('end', (e) => {
    const { reason } = JSON.parse((e as MessageEvent<string>).data) as { reason: string };
    closeStream();
    if (reason === 'session-ended') return showLogin('Your session ended (it expired, you logged out elsewhere, or the admin token changed). Log in again.');
    setConnection('stopped', 'the gateway is stopping; reconnecting…');
    reconnectLater();
  });
  es.onerror = () => {
    if (es.readyState !== EventSource.CLOSED) return setConnection('connecting', 'connection lost; reconnecting…');
    // Closed for good: a refusal (the session ended) or the gateway is gone.
    closeStream();
    reconnectLater();
  };
}

/** Every 2 s: is the session still good? Then stream again; a 401 shows the login form. */
function reconnectLater(): void {
  window.clearTimeout(reconnectTimer);
  reconnectTimer = window.setTimeout(() => {
    resumeSession().then(
      (s) => (s ? startConsole() : showLogin('Your session ended. Log in again.')),
      () => {
        setConnection('stopped', 'the gateway cannot be reached; retrying…');
        reconnectLater();
      },
    );
  }, 2000);
}

function render(s: Snapshot): void {
  lastSnapshotAt = Date.now();
  setConnection('live', `live · ${clock(s.at)}`);
  if (s.chart) store.add(s.chart.t, s.chart.points);
  byId('metrics-off').hidden = s.gateway.metrics;
  const container = byId('models');
  const seen = new Set<string>();
  for (const m of s.models) {
    seen.add(m.name);
    let panel = panels.get(m.name);
    if (!panel || panel.structure !== structureOf(m)) {
      const fresh = new ModelPanel(m, role);
      if (panel) {
        panel.charts.destroy();
        panel.element.replaceWith(fresh.element);
      } else container.append(fresh.element);
      panels.set(m.name, fresh);
      panel = fresh;
      fresh.update(m, metrics, store);
      fresh.charts.resize();
    }
    panel.update(m, metrics, store);
  }
  for (const [name, panel] of panels) {
    if (seen.has(name)) continue;
    panel.charts.destroy();
    panel.element.remove();
    panels.delete(name);
  }
  renderActivity(s);
}

function boot(): void {
  byId<HTMLFormElement>('login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const input = byId<HTMLInputElement>('token');
    const token = input.value.trim();
    const button = byId<HTMLButtonElement>('login-button');
    button.disabled = true;
    login(token).then(
      () => {
        input.value = ''; // the token is not kept anywhere once the session exists
        button.disabled = false;
        setText(byId('login-error'), '');
        startConsole();
      },
      (err: Error) => {
        button.disabled = false;
        setText(byId('login-error'), `Login refused: ${err.message}`);
        input.select();
      },
    );
  });
  byId('logout').addEventListener('click', () => {
    logout().then(
      () => showLogin('You logged out.'),
      (err: Error) => notify('error', `Logout failed: ${err.message}`),
    );
  });
  window.setInterval(() => {
    if (stream && lastSnapshotAt > 0 && Date.now() - lastSnapshotAt > STALE_MS)
      setConnection('stale', `STALE: no update since ${clock(new Date(lastSnapshotAt).toISOString())}`);
  }, 1000);
  let resizing: number | undefined;
  window.addEventListener('resize', () => {
    window.clearTimeout(resizing);
    resizing = window.setTimeout(() => {
      for (const p of panels.values()) p.charts.resize();
    }, 100);
  });
  resumeSession().then(
    (s) => (s ? startConsole() : showLogin()),
    (err: Error) => showLogin(`Cannot reach the gateway: ${err.message}`),
  );
}

boot();
