// Rewriting a few top-level fields of a JSON object in place, without parsing the rest: a remote's inference answer
// gets the gateway's model name and version while its tensors (most of its bytes) pass through untouched.

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const COLON = 0x3a;
const COMMA = 0x2c;

const isSpace = (b: number): boolean => b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;

/** A top-level member: its key and the byte span of its value. */
export interface Member {
  readonly key: string;
  readonly start: number;
  readonly end: number;
}

/** The index just past the string opening at `i` (a quote), or -1 when it never closes. */
function skipString(bytes: Uint8Array, i: number): number {
  for (let j = i + 1; j < bytes.length; j++) {
    const b = bytes[j]!;
    if (b === BACKSLASH) j++;
    else if (b === QUOTE) return j + 1;
  }
  return -1;
}

/** The index just past the value starting at `i`, or -1 when it is cut off or its brackets do not match. */
function skipValue(bytes: Uint8Array, i: number): number {
  const first = bytes[i];
  if (first === QUOTE) return skipString(bytes, i);
  if (first === OPEN_BRACE || first === OPEN_BRACKET) {
    const stack: number[] = [];
    for (let j = i; j < bytes.length; j++) {
      const b = bytes[j]!;
      if (b === QUOTE) {
        j = skipString(bytes, j) - 1;
        if (j < 0) return -1;
      } else if (b === OPEN_BRACE || b === OPEN_BRACKET) stack.push(b === OPEN_BRACE ? CLOSE_BRACE : CLOSE_BRACKET);
      else if (b === CLOSE_BRACE || b === CLOSE_BRACKET) {
        if (stack.pop() !== b) return -1;
        if (stack.length === 0) return j + 1;
      }
    }
    return -1;
  }
  // A number or a literal: up to the next delimiter.
  let j = i;
  while (j < bytes.length && !isSpace(bytes[j]!) && bytes[j] !== COMMA && bytes[j] !== CLOSE_BRACE && bytes[j] !== CLOSE_BRACKET) j++;
  return j > i ? j : -1;
}

/**
 * The top-level members of the JSON object in `bytes`, in order; undefined when the bytes are not one object (cut off,
 * unbalanced, or something other than whitespace around it). Values are skipped, not parsed or checked.
 */
export function topLevelMembers(bytes: Uint8Array): Member[] | undefined {
  let i = 0;
  const ws = () => {
    while (i < bytes.length && isSpace(bytes[i]!)) i++;
  };
  ws();
  if (bytes[i] !== OPEN_BRACE) return undefined;
  i++;
  const members: Member[] = [];
  ws();
  if (bytes[i] === CLOSE_BRACE) i++;
  else {
    for (;;) {
      ws();
      if (bytes[i] !== QUOTE) return undefined;
      const keyEnd = skipString(bytes, i);
      if (keyEnd < 0) return undefined;
      const raw = Buffer.from(bytes.buffer, bytes.byteOffset + i, keyEnd - i).toString('utf8');
      let key: string;
      try {
        key = raw.includes('\\') ? (JSON.parse(raw) as string) : raw.slice(1, -1);
      } catch {
        return undefined;
      }
      i = keyEnd;
      ws();
      if (bytes[i] !== COLON) return undefined;
      i++;
      ws();
      const end = skipValue(bytes, i);
      if (end < 0) return undefined;
      members.push({ key, start: i, end });
      i = end;
      ws();
      if (bytes[i] === COMMA) {
        i++;
        continue;
      }
      if (bytes[i] !== CLOSE_BRACE) return undefined;
      i++;
      break;
    }
  }
  ws();
  return i === bytes.length ? members : undefined;
}

/**
 * `bytes` (one JSON object, its members found by topLevelMembers) with the values of `fields` replaced — every
 * occurrence of a key — and the ones it lacks added first. The result is the chunks to send, in order; no byte of the
 * untouched members is copied.
 */
export function replaceTopLevel(bytes: Buffer, members: readonly Member[], fields: Readonly<Record<string, string>>): Buffer[] {
  const chunks: Buffer[] = [];
  const missing = Object.keys(fields).filter((k) => !members.some((m) => m.key === k));
  const open = bytes.indexOf(OPEN_BRACE) + 1;
  let at = open;
  chunks.push(bytes.subarray(0, open));
  if (missing.length > 0) {
    const added = missing.map((k) => `${JSON.stringify(k)}:${JSON.stringify(fields[k])}`).join(',');
    chunks.push(Buffer.from(members.length > 0 ? `${added},` : added));
  }
  for (const m of members) {
    const value = fields[m.key];
    if (value === undefined || !Object.hasOwn(fields, m.key)) continue;
    chunks.push(bytes.subarray(at, m.start), Buffer.from(JSON.stringify(value)));
    at = m.end;
  }
  chunks.push(bytes.subarray(at));
  return chunks.filter((c) => c.length > 0);
}
