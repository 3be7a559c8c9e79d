import { cleanup, render } from 'ink-testing-library';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { renderDiff } from '../../cli/tui/plain-render.js';
import { ResendDiffView } from '../../cli/tui/resend-diff-view.js';
import { diffWords, resendDiff } from '../../cli/tui/word-diff.js';
import { ANSI, plain } from '../helpers/terminal-colour.js';
import { KEY, press, settle } from './tui-fixtures.js';

// The diff is shown in colour and inverse video; let chalk emit them off a terminal.
await vi.hoisted(async () => (await import('../helpers/terminal-colour.js')).forceColourForThisFile());
afterEach(() => cleanup());

const RED = '\u001B[31m';
const GREEN = '\u001B[32m';

/** Inverse runs of a frame with the colour they were drawn in. */
function highlighted(frame: string | undefined): { color: 'red' | 'green' | 'other'; text: string }[] {
  return [...(frame ?? '').matchAll(/((?:\u001B\[[0-9;]*m)*)\u001B\[7m((?:(?!\u001B\[27m).)*)\u001B\[27m/g)].map((m) => {
    const codes = `${m[1] ?? ''}${m[2] ?? ''}`;
    return { color: codes.includes(RED) ? 'red' : codes.includes(GREEN) ? 'green' : 'other', text: (m[2] ?? '').replace(ANSI, '') };
  });
}

const OLD = 'Paris is the capital of France. It has about 2.1 million inhabitants.';
const NEW = 'Paris is the capital and largest city of France. It has about 2.1 million residents.';

describe('diffWords', () => {
  it('finds the words that changed, keeping the spacing', () => {
    expect(diffWords(OLD, NEW)).toEqual([
      { op: 'equal', text: 'Paris is the capital ' },
      { op: 'insert', text: 'and largest city ' },
      { op: 'equal', text: 'of France. It has about 2.1 million ' },
      { op: 'delete', text: 'inhabitants.' },
      { op: 'insert', text: 'residents.' },
    ]);
  });

  it('old text = equal + delete, new text = equal + insert, for any pair', () => {
    const pairs: [string, string][] = [
      ['', 'a b'],
      ['a b', ''],
      ['same', 'same'],
      ['a  b\nc', 'a b\n\nc d'],
      ['one two three four five', 'five four three two one'],
    ];
    for (const [a, b] of pairs) {
      const d = diffWords(a, b);
      expect(d.filter((p) => p.op !== 'insert').map((p) => p.text).join('')).toBe(a);
      expect(d.filter((p) => p.op !== 'delete').map((p) => p.text).join('')).toBe(b);
    }
    expect(diffWords('same', 'same')).toEqual([{ op: 'equal', text: 'same' }]);
  });

  it('the --json shape carries both answers and the diff', () => {
    const data = resendDiff(
      { session: 'ses_old', exchange: 0, status: 200, model: 'gpt-4o-mini', text: OLD },
      { session: 'ses_new', exchange: 0, status: 200, model: 'gpt-4o', text: NEW },
    );
    expect(JSON.parse(JSON.stringify(data))).toEqual({
      old: { session: 'ses_old', exchange: 0, status: 200, model: 'gpt-4o-mini', text: OLD },
      new: { session: 'ses_new', exchange: 0, status: 200, model: 'gpt-4o', text: NEW },
      diff: diffWords(OLD, NEW),
    });
    expect(renderDiff(data.diff)).toBe(
      'Paris is the capital {+and largest city +}of France. It has about 2.1 million [-inhabitants.-]{+residents.+}',
    );
  });
});

describe('ResendDiffView', () => {
  const data = resendDiff(
    { session: 'ses_old', exchange: 1, status: 200, model: 'gpt-4o-mini', text: OLD },
    { session: 'ses_new', exchange: 0, status: 200, model: 'gpt-4o', text: NEW },
  );

  it('side by side on a wide terminal, deletions red on the old side, insertions green on the new', async () => {
    const { lastFrame } = render(<ResendDiffView diff={data} width={120} onBack={() => {}} />);
    await settle();
    const lines = plain(lastFrame()).split('\n');
    expect(plain(lastFrame())).toContain('1 word removed, 4 added');
    const heads = lines.findIndex((l) => l.includes('old: ses_old #2'));
    expect(lines[heads]).toMatch(/^old: ses_old #2\s{3,}new: ses_new #1$/);
    expect(lines[heads + 1]).toMatch(/^status 200 · gpt-4o-mini\s{3,}status 200 · gpt-4o$/);
    // Both answers start on the same row.
    expect(lines[heads + 2]).toMatch(/^Paris is the capital of France\..*\s{3,}Paris is the capital and largest/);
    // Row by row, the columns interleave; compare as a set.
    expect(highlighted(lastFrame()).sort((a, b) => a.text.localeCompare(b.text))).toEqual([
      { color: 'green', text: 'and largest city ' },
      { color: 'red', text: 'inhabitants.' },
      { color: 'green', text: 'residents.' },
    ]);
  });

  it('stacked on a narrow terminal: old above new', async () => {
    const { lastFrame } = render(<ResendDiffView diff={data} width={60} onBack={() => {}} />);
    await settle();
    const lines = plain(lastFrame()).split('\n');
    const oldAt = lines.findIndex((l) => l.startsWith('old: ses_old'));
    const newAt = lines.findIndex((l) => l.startsWith('new: ses_new'));
    expect(oldAt).toBeGreaterThan(-1);
    expect(newAt).toBeGreaterThan(oldAt + 1);
    expect(lines[oldAt + 1]).toBe('status 200 · gpt-4o-mini');
    expect(lines.slice(oldAt + 1, newAt).join(' ')).toContain('inhabitants.');
    expect(lines.slice(newAt + 1).join(' ')).toContain('residents.');
    expect(highlighted(lastFrame()).map((h) => h.color)).toEqual(['red', 'green', 'green']);
  });

  it('says when the answers are identical; Esc goes back', async () => {
    let back = 0;
    const same = resendDiff({ session: 'a', exchange: 0, status: 200, text: OLD }, { session: 'b', exchange: 0, status: 200, text: OLD });
    const { lastFrame, stdin } = render(<ResendDiffView diff={same} width={120} onBack={() => back++} />);
    await settle();
    expect(plain(lastFrame())).toContain('answers are identical');
    expect(highlighted(lastFrame())).toEqual([]);
    await press(stdin, KEY.escape);
    expect(back).toBe(1);
  });
});
