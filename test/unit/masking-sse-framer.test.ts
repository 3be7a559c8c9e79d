/**
 * An SSE event that is one `data:` line and nothing else is rewritten whole when masked; any other
 * field or comment keeps its place. The framer says which events are of that kind, however the stream
 * is cut, and a masked stream keeps every other line of an event where it was.
 */
import { describe, expect, it } from 'vitest';
import { compileProfile } from '../../server/masking/compiled-profile.js';
import { MaskingCounter } from '../../server/masking/masking-summary.js';
import { maskingProfileSchema } from '../../server/masking/profile-schema.js';
import { isDataLine, SseFramer, withData } from '../../server/masking/sse-framer.js';
import { SseMasker } from '../../server/masking/sse-masker.js';

const LIMITS = { maxEvent: 1024, maxLine: 1024 };

describe('SSE events of one data line', () => {
  it('tells data lines by their field name alone', () => {
    expect(['data', 'data:', 'data: x', 'data:{"a":1}'].map(isDataLine)).toEqual([true, true, true, true]);
    expect(['dat', 'datum: x', 'database: x', 'Data: x', ' data: x', 'event: data', ''].map(isDataLine)).toEqual([false, false, false, false, false, false, false]);
  });

  it('marks an event of one data line so, whole or cut anywhere, and no other event', () => {
    const cases: [string, boolean][] = [
      ['data: {"a":1}\n\n', true],
      ['data\n\n', true],
      ['data: x\r\n\r\n', true],
      ['database: x\n\n', false],
      ['event: x\ndata: {"a":1}\n\n', false],
      ['data: a\ndata: b\n\n', false],
      [': note\ndata: y\n\n', false],
      ['id: 7\n\n', false],
    ];
    for (const [event, dataOnly] of cases) {
      for (let cut = 0; cut <= event.length; cut++) {
        const framer = new SseFramer(LIMITS);
        const events = [...framer.push(event.slice(0, cut)), ...framer.push(event.slice(cut))];
        expect(events.map((e) => e.dataOnly), `${JSON.stringify(event)} cut at ${cut}`).toEqual([dataOnly]);
      }
    }
  });

  it('rewrites an event of one data line whole and keeps the other lines of any other event', () => {
    const [single] = new SseFramer(LIMITS).push('data: {"a":1}\n\n');
    expect(withData(single!, '{"a":2}', true)).toBe('data: {"a":2}\n\n');
    const [named] = new SseFramer(LIMITS).push('event: delta\ndata: {"a":1}\n\n');
    expect(withData(named!, '{"a":2}', true)).toBe('event: delta\ndata: {"a":2}\n\n');
  });

  it('masks the data of an event with a name or a comment and keeps those lines in place', () => {
    const profile = compileProfile('t', maskingProfileSchema.parse({ detectors: ['email'] }), {});
    const counter = new MaskingCounter();
    const masker = new SseMasker(profile, counter);
    const stream = ': keep-alive\nevent: note\ndata: {"text":"write to jane.doe@example.org"}\n\ndata: [DONE]\n\n';
    const out = masker.write(Buffer.from(stream)) + masker.end();
    expect(out).toBe(': keep-alive\nevent: note\ndata: {"text":"write to [EMAIL]"}\n\ndata: [DONE]\n\n');
    expect(counter.total).toBe(1);
  });
});
