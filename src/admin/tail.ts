// Bounded reads of the end of a JSON Lines file (the audit trail at start, the disagreement log for the console):
// never more than a fixed number of bytes, whatever the file's size.

import { open } from 'node:fs/promises';

/**
 * The complete lines among the last `maxBytes` bytes of `file`, oldest first ([] when the file does not exist). A
 * line cut by the start of the window is left out, and so is a last line without its newline (still being written).
 */
export async function tailLines(file: string, maxBytes: number): Promise<string[]> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  try {
    const { size } = await handle.stat();
    const start = Math.max(0, size - maxBytes);
    const buffer = Buffer.alloc(size - start);
    let read = 0;
    while (read < buffer.length) {
      const { bytesRead } = await handle.read(buffer, read, buffer.length - read, start + read);
      if (bytesRead === 0) break;
      read += bytesRead;
    }
    const text = buffer.subarray(0, read).toString('utf8');
    const lines = text.split('\n');
    lines.pop(); // after the last newline: empty, or a line not finished yet
    if (start > 0) lines.shift(); // began before the window
    return lines.filter((l) => l.length > 0);
  } finally {
    await handle.close();
  }
}

/** Each line parsed as JSON; lines that are not (a torn write, a foreign line) are skipped. */
export function parseLines<T>(lines: readonly string[], accept: (value: unknown) => value is T): T[] {
  const out: T[] = [];
  for (const line of lines) {
    try {
      const value: unknown = JSON.parse(line);
      if (accept(value)) out.push(value);
    } catch {
      // skipped
    }
  }
  return out;
}
