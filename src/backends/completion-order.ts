// Worker threads' answers are handed to their callers in the order the workers finished them. The event loop services
// the workers' message ports in a fixed order (the order they were created) and runs each port's callbacks — and the
// replies they complete — before it looks at the next port, so under load the answers of a version created later
// always wait behind an earlier one's: its callers see higher latency for nothing the version did.

/** The process-wide monotonic clock, the same in every thread: when a worker finished, µs. */
export function completedAtUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

const due: { at: number; deliver: () => void }[] = [];
let scheduled = false;

function drain(): void {
  scheduled = false;
  const batch = due.splice(0).sort((a, b) => a.at - b.at);
  for (const d of batch) d.deliver();
}

/**
 * Hands an answer over once every message that reached the event loop in the same turn has been received, earliest
 * finished first (setImmediate runs right after the turn's I/O, so this costs no wait of its own).
 */
export function deliverInCompletionOrder(completedAt: number, deliver: () => void): void {
  due.push({ at: completedAt, deliver });
  if (scheduled) return;
  scheduled = true;
  setImmediate(drain);
}
