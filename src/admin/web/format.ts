// How the console writes numbers and times: fixed, short, and "–" for a figure that does not exist (never a 0 that
// was not measured).

export const NONE = '–';

export const pct = (x: number | null | undefined, digits = 1): string => (x === null || x === undefined ? NONE : `${(x * 100).toFixed(digits)}%`);

export const ms = (x: number | null | undefined): string =>
  x === null || x === undefined ? NONE : `${x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : Math.round(x)} ms`;

export const rate = (x: number | null | undefined): string => (x === null || x === undefined ? NONE : x < 10 ? x.toFixed(2) : x.toFixed(1));

export const clock = (iso: string | null | undefined): string => (iso ? new Date(iso).toLocaleTimeString([], { hour12: false }) : NONE);

export const dateTime = (iso: string | null | undefined): string =>
  iso ? `${new Date(iso).toLocaleDateString([], { month: 'short', day: 'numeric' })} ${clock(iso)}` : NONE;

export function weightsText(weights: Record<string, number> | null | undefined): string {
  if (!weights) return NONE;
  return Object.entries(weights)
    .map(([v, w]) => `${v}=${w}`)
    .join(' ');
}

/** A compact one-line rendering of an audit entry's before/after state. */
export function stateText(state: unknown): string {
  if (state === null || state === undefined) return NONE;
  if (typeof state !== 'object') return String(state);
  const s = state as Record<string, unknown>;
  if (s.weights && typeof s.weights === 'object') return `${weightsText(s.weights as Record<string, number>)} (${String(s.weightsSource ?? '')})`;
  if (typeof s.status === 'string' && typeof s.position === 'string') return `${s.status}, ${s.position}`;
  if (typeof s.role === 'string' && typeof s.expiresAt === 'string') return `${s.role} session until ${dateTime(s.expiresAt)}`;
  if (Array.isArray(state))
    return (
      state.map((p: { pair?: string; compared?: number; agreed?: number }) => `${p.pair ?? '?'}: ${p.agreed ?? 0}/${p.compared ?? 0} agreed`).join(', ') ||
      'no pairs'
    );
  if (typeof s.generation === 'number') return `generation ${s.generation}${typeof s.configHash === 'string' ? `, config ${s.configHash.slice(0, 12)}` : ''}`;
  return JSON.stringify(state).slice(0, 160);
}
