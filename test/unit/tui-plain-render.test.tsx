import { describe, expect, it } from 'vitest';
import { renderExchange, renderSessionTable, renderTcpTimeline } from '../../cli/tui/plain-render.js';
import { FIXTURES, fixtureSession } from './tui-fixtures.js';

describe('plain renderers (off a TTY)', () => {
  it('renderSessionTable: a header and one aligned row per session, no escape codes', () => {
    const out = renderSessionTable(FIXTURES.map((f) => fixtureSession(f).summary));
    expect(out).not.toMatch(/\u001B/);
    const lines = out.split('\n');
    expect(lines).toHaveLength(5);
    expect(lines[0]).toMatch(/^TIME\s+USER\s+CONNECTION\s+REQ\s+MODEL\s+TOKENS\s+D\/H\/M$/);
    expect(lines[1]).toMatch(/^2025-06-02 09:14\s+alice@example\.com\s+llm\s+1\s+gpt-5-mini-2025-08-07\s+41\/52\s+0\/1\/0$/);
    expect(lines[4]).toMatch(/^2025-06-02 16:00\s+dave@example\.com\s+redis\s+1\s+–\s+0\/0\s+0\/0\/0$/);
    // Columns line up: every row has USER where the header has it.
    const userCol = lines[0]!.indexOf('USER');
    for (const l of lines.slice(1)) expect(l.slice(userCol)).toMatch(/^\w+@example\.com/);
  });

  it('renderSessionTable of nothing is just the header', () => {
    expect(renderSessionTable([])).toBe('TIME  USER  CONNECTION  REQ  MODEL  TOKENS  D/H/M');
  });

  it('renderExchange: summary, pretty request JSON, response, masking notes', () => {
    const out = renderExchange(fixtureSession('http-masked').exchanges[0]!);
    const lines = out.split('\n');
    expect(lines[0]).toBe('#1 POST /v1/chat/completions → 200');
    expect(lines[1]).toBe('latency 894ms · ttfb 891ms · model gpt-4o-mini-2024-07-18 · tokens 58/27 · finish stop');
    expect(lines[2]).toBe('policy allow · masked EMAIL×2, PHONE×1, ACCOUNT×1, CREDIT_CARD×2');
    expect(out).toContain('── request · body recorded masked\ncontent-type: application/json\n{\n  "model": "gpt-4o-mini",');
    expect(out).toContain('"content": "Dear customer, we refunded the duplicate charge on card ****4242. A confirmation went to [EMAIL]."');
  });

  it('renderExchange of a streamed answer shows its text, not SSE frames', () => {
    const out = renderExchange(fixtureSession('http-streamed').exchanges[0]!);
    expect(out).toContain('waits: review hold 3.0s · first token 1.2s');
    expect(out).toContain('── answer (streamed, 27 chunks)\nSure. The nightly batch job');
    expect(out).not.toContain('data:');
  });

  it('renderTcpTimeline: one line per read or write', () => {
    const lines = renderTcpTimeline(fixtureSession('tcp-redis').timeline).split('\n');
    expect(lines).toHaveLength(9);
    expect(lines[0]).toBe('   10ms  →     14 B  *1↵$4↵PING↵');
    expect(lines[1]).toBe('   12ms  ←      7 B  +PONG↵');
  });
});
