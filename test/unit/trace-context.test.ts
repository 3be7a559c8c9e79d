import { describe, expect, it } from 'vitest';
import { formatTraceparent, parseTraceparent, withExchangeTrace } from '../../server/telemetry/trace-context.js';
import { RequestModelScanner } from '../../server/telemetry/request-model-scanner.js';
import { tracesUrl } from '../../server/telemetry/telemetry-config.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN = '00f067aa0ba902b7';

describe('traceparent (W3C Trace Context)', () => {
  it('reads a valid one, with its tracestate', () => {
    expect(parseTraceparent(`00-${TRACE}-${SPAN}-01`, 'a=1, b=2')).toEqual({ traceId: TRACE, parentSpanId: SPAN, flags: 1, tracestate: 'a=1, b=2' });
    expect(parseTraceparent(`00-${TRACE}-${SPAN}-00`, ['a=1', 'b=2'])).toEqual({ traceId: TRACE, parentSpanId: SPAN, flags: 0, tracestate: 'a=1,b=2' });
    // a later version may append fields, which are skipped
    expect(parseTraceparent(`01-${TRACE}-${SPAN}-01-whatever`, undefined)).toMatchObject({ traceId: TRACE, flags: 1 });
  });

  it.each([
    ['absent', undefined],
    ['upper-case hex', `00-${TRACE.toUpperCase()}-${SPAN}-01`],
    ['all-zero trace id', `00-${'0'.repeat(32)}-${SPAN}-01`],
    ['all-zero parent id', `00-${TRACE}-${'0'.repeat(16)}-01`],
    ['version ff', `ff-${TRACE}-${SPAN}-01`],
    ['version 00 with extra fields', `00-${TRACE}-${SPAN}-01-extra`],
    ['short trace id', `00-${TRACE.slice(1)}-${SPAN}-01`],
    ['bad flags', `00-${TRACE}-${SPAN}-1`],
    ['two headers joined', `00-${TRACE}-${SPAN}-01, 00-${TRACE}-${SPAN}-01`],
    ['two headers', [`00-${TRACE}-${SPAN}-01`, `00-${TRACE}-${SPAN}-01`]],
    ['garbage', 'hello'],
  ])('ignores a malformed one (%s), and its tracestate with it', (_name, value) => {
    expect(parseTraceparent(value, 'a=1')).toBeUndefined();
  });

  it('formats the gateway’s span as the parent, and replaces the caller’s context in metadata', () => {
    expect(formatTraceparent(TRACE, SPAN, 1)).toBe(`00-${TRACE}-${SPAN}-01`);
    const metadata = { traceparent: 'caller', tracestate: 'caller=1', other: 'x' };
    expect(withExchangeTrace(metadata, undefined)).toBe(metadata);
    expect(withExchangeTrace(metadata, { traceparent: 'gateway' })).toEqual({ traceparent: 'gateway', other: 'x' });
    expect(withExchangeTrace(metadata, { traceparent: 'gateway', tracestate: 'caller=1' })).toEqual({ traceparent: 'gateway', tracestate: 'caller=1', other: 'x' });
  });

  it('posts to /v1/traces under the collector’s base URL', () => {
    expect(tracesUrl('http://collector:4318')).toBe('http://collector:4318/v1/traces');
    expect(tracesUrl('http://collector:4318/otel/')).toBe('http://collector:4318/otel/v1/traces');
    expect(tracesUrl('https://collector/v1/traces')).toBe('https://collector/v1/traces');
  });
});

describe('RequestModelScanner', () => {
  const scan = (...chunks: string[]): string | undefined => {
    const s = new RequestModelScanner();
    for (const c of chunks) s.push(Buffer.from(c));
    return s.model;
  };

  it('finds the top-level model, wherever it is and however the body is cut', () => {
    expect(scan('{"model":"gpt-4o","messages":[]}')).toBe('gpt-4o');
    const body = JSON.stringify({ messages: [{ role: 'user', content: 'use "model": "evil" and {"model":"nested"}' }], metadata: { model: 'nested' }, model: 'demo-small' });
    expect(scan(body)).toBe('demo-small');
    expect(scan(...body.split(''))).toBe('demo-small');
    expect(scan(' {\n "model" : "a\\"b" }')).toBe('a"b');
  });

  it('finds none where there is none to find', () => {
    expect(scan('{"messages":[{"model":"nested"}]}')).toBeUndefined();
    expect(scan('{"model":42}')).toBeUndefined();
    expect(scan('{"models":"x","mode":"y"}')).toBeUndefined();
    expect(scan('["model","x"]')).toBeUndefined();
    expect(scan(`{"model":"${'x'.repeat(300)}"}`)).toBeUndefined();
    expect(scan('\u0000\u0000\u0000\u0000\u0005')).toBeUndefined();
  });
});
