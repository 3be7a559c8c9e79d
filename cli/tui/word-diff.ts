/** One run of a word diff: text both answers share, or text only the new (insert) or old (delete) has. */
export interface DiffPart {
  readonly op: 'equal' | 'insert' | 'delete';
  readonly text: string;
}

/**
 * Beyond this many edits the answers have little in common; a full replace says as much and bounds
 * the O((N+M)·D) time and the memory of the trace.
 */
const MAX_EDITS = 1000;

/** Splits text into words and the whitespace runs between them, so a diff keeps the spacing. */
export function wordTokens(text: string): string[] {
  return text.match(/\s+|[^\s]+/g) ?? [];
}

/** Word-level diff of two texts (Myers' O(ND) algorithm); adjacent runs of one op are merged. */
export function diffWords(oldText: string, newText: string): DiffPart[] {
  const a = wordTokens(oldText);
  const b = wordTokens(newText);
  const ops = myers(a, b);
  const parts: DiffPart[] = [];
  for (const [op, text] of ops) {
    const last = parts.at(-1);
    if (last !== undefined && last.op === op) parts[parts.length - 1] = { op, text: last.text + text };
    else parts.push({ op, text });
  }
  return reorderReplacements(parts);
}

type Op = [DiffPart['op'], string];

function myers(a: readonly string[], b: readonly string[]): Op[] {
  const n = a.length;
  const m = b.length;
  const max = n + m;
  const offset = max + 1;
  const v = new Int32Array(2 * max + 3);
  // trace[d] holds the diagonals -d-1 … d+1 of V as round d read them: O(D²) memory, not O(D·(N+M)).
  const trace: Int32Array[] = [];
  let found = false;
  for (let d = 0; d <= Math.min(max, MAX_EDITS); d++) {
    trace.push(v.slice(offset - d - 1, offset + d + 2));
    for (let k = -d; k <= d; k += 2) {
      let x: number;
      if (k === -d || (k !== d && (v[offset + k - 1] ?? 0) < (v[offset + k + 1] ?? 0))) x = v[offset + k + 1] ?? 0;
      else x = (v[offset + k - 1] ?? 0) + 1;
      let y = x - k;
      while (x < n && y < m && a[x] === b[y]) {
        x++;
        y++;
      }
      v[offset + k] = x;
      if (x >= n && y >= m) {
        found = true;
        break;
      }
    }
    if (found) break;
  }
  if (!found) return [...a.map((t): Op => ['delete', t]), ...b.map((t): Op => ['insert', t])];

  // Walk the trace back from (n, m), one edit per step, then reverse.
  const out: Op[] = [];
  let x = n;
  let y = m;
  for (let d = trace.length - 1; d >= 0; d--) {
    const saved = trace[d] ?? v;
    const at = (k: number): number => saved[k + d + 1] ?? 0;
    const k = x - y;
    let prevK: number;
    if (k === -d || (k !== d && at(k - 1) < at(k + 1))) prevK = k + 1;
    else prevK = k - 1;
    const prevX = d === 0 ? 0 : at(prevK);
    const prevY = d === 0 ? 0 : prevX - prevK;
    while (x > prevX && y > prevY) {
      out.push(['equal', a[x - 1] ?? '']);
      x--;
      y--;
    }
    if (d > 0) {
      if (x === prevX) out.push(['insert', b[y - 1] ?? '']);
      else out.push(['delete', a[x - 1] ?? '']);
    }
    x = prevX;
    y = prevY;
  }
  return out.reverse();
}

/** Puts a delete before the insert that replaces it, so "old → new" reads in that order. */
function reorderReplacements(parts: DiffPart[]): DiffPart[] {
  const out: DiffPart[] = [];
  for (const p of parts) {
    const last = out.at(-1);
    if (p.op === 'delete' && last?.op === 'insert') {
      out[out.length - 1] = p;
      out.push(last);
    } else out.push(p);
  }
  return out;
}

/** One side of a re-send comparison, as scripts receive it. */
export interface AnswerSide {
  readonly session: string;
  readonly exchange: number;
  readonly status: number;
  readonly model?: string;
  readonly text: string;
}

/** The `--json` shape of a re-send: both answers and their word diff. */
export interface ResendDiff {
  readonly old: AnswerSide;
  readonly new: AnswerSide;
  readonly diff: DiffPart[];
}

/** Builds the re-send comparison of an old and a new answer. */
export function resendDiff(oldSide: AnswerSide, newSide: AnswerSide): ResendDiff {
  return { old: oldSide, new: newSide, diff: diffWords(oldSide.text, newSide.text) };
}
