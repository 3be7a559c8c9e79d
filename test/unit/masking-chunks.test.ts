import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../server/config/load.js';
import type { HttpConnectionConfig } from '../../server/config/schema.js';
import { loadMaskingProfiles } from '../../server/masking/load-profiles.js';
import { maskBody } from '../../server/masking/mask-body.js';
import { createMaskingStage } from '../../server/masking/masking-stage.js';
import { startExchange } from '../../server/pipeline/exchange.js';
import { MaskingFrames } from '../../server/pipeline/masking-frames.js';
import { discardSessionRecorder } from '../../server/pipeline/recorder.js';
import type { ResponseFrames, ResponseHead } from '../../server/pipeline/response-frames.js';
import { HTTP_RECORDING } from '../../server/protocols/http-carrier.js';
import { openAiChatStream, streamedText } from '../fixtures/masking/sse-streams.js';

const KEY = 'sk-injected-0123456789abcdef';
const config = validateConfig({
  identity: { issuer: 'https://idp.example.com', audience: 'sluice', cli_client_id: 'cli' },
  masking_profiles: { pii: { detectors: ['email', 'phone', 'credit_card', 'ssn', 'iban', 'ip_address', 'secret'] } },
  connections: [
    { name: 'llm', type: 'http', upstream: 'http://127.0.0.1:1', headers: { authorization: `Bearer ${KEY}` }, allow_groups: ['x'], masking: ['pii'] },
    { name: 'plain', type: 'http', upstream: 'http://127.0.0.1:1', headers: { authorization: `Bearer ${KEY}` }, allow_groups: ['x'] },
  ],
});
const profiles = await loadMaskingProfiles(config);
const stage = createMaskingStage({ profiles });
const masked = config.connections[0] as HttpConnectionConfig;
const plain = config.connections[1] as HttpConnectionConfig;

function exchange(connection = masked) {
  const principal = { sub: 'u', groups: ['x'], roles: [], expiresAt: 0, issuer: 'https://idp.example.com' };
  return startExchange(
    { principal, connection, session: { id: 'ses_test', recorder: discardSessionRecorder }, clientAddress: '127.0.0.1', via: 'proxy', method: 'POST', path: '/v1/chat/completions', headers: {} },
    HTTP_RECORDING,
  );
}

/**
 * One response through the masking frames as the pipeline drives them: `size`-byte chunks, a caller that
 * is full after every other chunk (and drains on the next turn), a producer that waits when told to.
 * `emptyOnResume`: the producer hands over an empty chunk each time it is resumed, and waits again when
 * that is refused, as undici does after a pause; capped, so a resume that never ends fails the test.
 */
async function throughFrames(
  head: ResponseHead,
  body: Buffer,
  size: number,
  options: { emptyOnResume?: boolean; connection?: HttpConnectionConfig } = {},
): Promise<{ out: string; summary: unknown; heads: ResponseHead[]; resumes: number }> {
  const plan = stage.responseMasking(exchange(options.connection))!;
  const out: Buffer[] = [];
  const heads: ResponseHead[] = [];
  let drain: () => void = () => undefined;
  let writes = 0;
  let done!: () => void;
  const ended = new Promise<void>((resolve) => (done = resolve));
  const caller: ResponseFrames = {
    head: (h) => void heads.push(h),
    data(chunk) {
      out.push(chunk);
      writes++;
      if (writes % 2 === 0) return true;
      setImmediate(() => drain());
      return false;
    },
    end: (_trailers, last) => {
      if (last !== undefined) out.push(last);
      done();
    },
    resumeWith: (resume) => void (drain = resume),
  };
  let failure: unknown;
  const frames = new MaskingFrames(plan, caller, (error) => (failure = error));
  let resumed: () => void = () => undefined;
  let resumes = 0;
  const maxResumes = 4 * Math.ceil(body.length / size) + 16;
  let stall!: (error: Error) => void;
  const stalled = new Promise<never>((_resolve, reject) => (stall = reject));
  stalled.catch(() => undefined);
  frames.resumeWith(() => {
    if (++resumes > maxResumes) stall(new Error(`resumed ${resumes} times for ${Math.ceil(body.length / size)} chunks`));
    else if (options.emptyOnResume !== true || frames.data(Buffer.alloc(0))) resumed();
  });
  frames.head(head);
  for (let at = 0; at < body.length; at += size) {
    if (!frames.data(body.subarray(at, at + size))) await Promise.race([new Promise<void>((resolve) => (resumed = resolve)), stalled]);
  }
  frames.end();
  await Promise.race([ended, stalled]);
  expect(failure).toBeUndefined();
  return { out: Buffer.concat(out).toString('utf8'), summary: plan.summary(), heads, resumes };
}

const SSE_HEAD = { status: 200, headers: { 'content-type': 'text/event-stream; charset=utf-8' } };
const sse = openAiChatStream(['Card 4111 1111 ', '1111 1111, mail ann@exa', 'mple.org, key ', KEY.slice(0, 9), KEY.slice(9), ' and more text to pass a step. '.repeat(40)]);

describe('masking driven chunk by chunk, with no stream', () => {
  it('masks a streamed answer synchronously, chunk after chunk, whatever its length', () => {
    const body = stage.responseMasking(exchange())!.body(SSE_HEAD)!;
    const bytes = Buffer.from(sse);
    expect(bytes.length).toBeGreaterThan(2048);
    let text = '';
    for (let at = 0; at < bytes.length; at += 64) text += body.chunks!.write(bytes.subarray(at, at + 64)).toString('utf8');
    text += body.chunks!.end().toString('utf8');
    expect(streamedText(text)).toBe(streamedText(maskBody({ profile: profiles.forNames(['pii'])!, format: 'sse', body: bytes }).output.toString()).replace(KEY, '[CREDENTIAL]****************'));
    expect(text).not.toContain(KEY.slice(9));
  });

  it.each([1, 7, 64, 100_000])('passes on a masked SSE answer in %i-byte chunks as the Transform does, credential and held-back text included', async (size) => {
    const { out, summary, heads } = await throughFrames(SSE_HEAD, Buffer.from(sse), size);
    expect(heads[0]!.rewrite).toBe('masked');
    expect(out).not.toContain('4111');
    expect(out).not.toContain('ann@');
    expect(out).toContain('data: [DONE]\n\n');
    expect(streamedText(out)).toContain('Card [CREDIT_CARD], mail [EMAIL], key ');
    expect(summary).toEqual(expect.arrayContaining([{ entity: 'credit_card', rule: 'detector:credit_card', count: 1 }, { entity: 'email', rule: 'detector:email', count: 1 }]));
    // The same bytes as the stream form of the same plan.
    const viaTransform = await new Promise<string>((resolve, reject) => {
      const t = stage.responseMasking(exchange())!.body(SSE_HEAD)!.transform;
      const got: Buffer[] = [];
      t.on('data', (c: Buffer) => got.push(c));
      t.on('end', () => resolve(Buffer.concat(got).toString('utf8')));
      t.on('error', reject);
      t.end(Buffer.from(sse));
    });
    expect(out).toBe(viaTransform);
  });

  it.each([1, 5, 64])('keeps a connection credential out of an answer no profile masks, in %i-byte chunks', async (size) => {
    const json = JSON.stringify({ id: 'c', choices: [{ message: { content: `Your key is ${KEY}, mail jane.doe@example.com.` } }] });
    const { out, summary, heads } = await throughFrames({ status: 200, headers: { 'content-type': 'application/json' } }, Buffer.from(json), size, { connection: plain });
    expect(heads[0]!.rewrite).toBe('scanned');
    // Only the credential is replaced, by as many bytes: the rest of the answer is as the upstream sent it.
    expect(out).toBe(json.replace(KEY, '[CREDENTIAL]****************'));
    expect(summary).toEqual([{ entity: 'credential', rule: 'builtin:injected_credential', count: 1 }]);
  });

  it('keeps the producer paused while the caller is full, an empty chunk included, until the caller resumes', () => {
    const plan = stage.responseMasking(exchange())!;
    let drain: () => void = () => undefined;
    const passed: Buffer[] = [];
    const frames = new MaskingFrames(plan, { head: () => undefined, data: (c) => (passed.push(c), false), end: () => undefined, resumeWith: (r) => void (drain = r) }, () => undefined);
    let resumes = 0;
    frames.resumeWith(() => resumes++);
    frames.head(SSE_HEAD);
    expect(frames.data(Buffer.from(sse))).toBe(false);
    expect(passed.length).toBe(1);
    // undici hands over an empty chunk when it resumes: while the caller is full it must not run on.
    expect(frames.data(Buffer.alloc(0))).toBe(false);
    expect(resumes).toBe(0);
    drain();
    expect(resumes).toBe(1);
    expect(frames.data(Buffer.alloc(0))).toBe(true);
  });

  it('completes an SSE answer from a producer that hands over an empty chunk on every resume (as undici does)', async () => {
    const plainRun = await throughFrames(SSE_HEAD, Buffer.from(sse), 64);
    const { out, resumes } = await throughFrames(SSE_HEAD, Buffer.from(sse), 64, { emptyOnResume: true });
    expect(resumes).toBeGreaterThan(0);
    expect(out).toBe(plainRun.out);
    expect(out).not.toContain('ann@');
  });

  it('fails the exchange at once, and passes nothing more, when a chunk cannot be masked', () => {
    const plan = stage.responseMasking(exchange())!;
    const passed: string[] = [];
    const failures: unknown[] = [];
    const frames = new MaskingFrames(plan, { head: () => undefined, data: (c) => (passed.push(c.toString()), true), end: () => passed.push('END'), resumeWith: () => undefined }, (e) => failures.push(e));
    frames.resumeWith(() => undefined);
    frames.head(SSE_HEAD);
    const events = Buffer.from(sse);
    expect(frames.data(events)).toBe(true);
    const before = passed.join('');
    expect(before).toContain('[EMAIL]');
    // A line longer than max_line cannot be held whole to be masked: the stream is refused.
    expect(frames.data(Buffer.from(`data: ${'x'.repeat(profiles.forNames(['pii'])!.maxLine + 10)}`))).toBe(false);
    expect(failures).toEqual([expect.objectContaining({ code: 'ERR_MASKING_BLOCKED' })]);
    expect(frames.data(Buffer.from('\n\ndata: ann@example.org\n\n'))).toBe(false);
    frames.end(undefined, Buffer.from('data: [DONE]\n\n'));
    expect(passed.join('')).toBe(before);
    expect(failures).toHaveLength(1);
  });
});
