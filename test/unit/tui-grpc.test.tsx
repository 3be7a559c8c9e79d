/**
 * gRPC calls in the TUI, built from events in the recorder's shape as the sessions API streams them: the
 * exchange view names service, method and status and shows each message decoded (BYTES tensors as text),
 * and playback plays a server stream's messages at their recorded pace.
 */
import { cleanup, render } from 'ink-testing-library';
import { afterEach, describe, expect, it } from 'vitest';
import { ExchangeView } from '../../cli/tui/exchange-view.js';
import { fromEvents } from '../../cli/tui/from-events.js';
import { PlaybackView } from '../../cli/tui/playback-view.js';
import { SessionView } from '../../cli/tui/session-view.js';
import { settle } from './tui-fixtures.js';
import { ManualClock } from './tui-manual-clock.js';

afterEach(() => cleanup());

const b64 = (s: string): string => Buffer.from(s).toString('base64');
const SVC = 'inference.GRPCInferenceService';

/** A KServe answer carrying `text` as one BYTES output, as protobuf's JSON form (and the recording) holds it. */
const inferResponse = (text: string) => ({ model_name: 'llama', id: 'r1', outputs: [{ name: 'text_output', datatype: 'BYTES', shape: ['1'], contents: { bytes_contents: [b64(text)] } }] });

function grpcSession(): unknown[] {
  let seq = 0;
  const ev = (t: number, type: string, fields: Record<string, unknown>) => ({ seq: seq++, t, type, fields });
  return [
    ev(0, 'session.start', {
      session: 'ses_g',
      started_at: 1_700_000_000_000,
      user: { sub: 'alice', groups: [], issuer: 'x' },
      connection: { name: 'triton', type: 'grpc' },
      via: 'proxy',
      client_address: '127.0.0.1',
      record: { request_body: 'raw', response_body: 'raw', raw: false },
    }),
    // A unary ModelInfer.
    ev(10, 'exchange.request', { exchange: 'x1', method: 'POST', path: `/${SVC}/ModelInfer`, headers: { 'content-type': 'application/grpc', 'x-team': 'search' }, decision: { action: 'allow' } }),
    ev(11, 'grpc.message', { exchange: 'x1', dir: 'up', index: 0, bytes: 40, json: { model_name: 'llama', inputs: [{ name: 'text_input', datatype: 'BYTES', contents: { bytes_contents: [b64('hello')] } }] } }),
    ev(30, 'exchange.response', { exchange: 'x1', status: 200, headers: { 'content-type': 'application/grpc' } }),
    ev(31, 'grpc.message', { exchange: 'x1', dir: 'down', index: 0, bytes: 52, json: inferResponse('HELLO') }),
    ev(32, 'exchange.end', { exchange: 'x1', status: 200, complete: true, duration_ms: 22, bytes_up: 45, bytes_down: 57, trailers: { 'grpc-status': '0', 'grpc-message': 'OK' } }),
    // A server stream of three messages, 100 ms apart, that ends with an error status.
    ev(100, 'exchange.request', { exchange: 'x2', method: 'POST', path: `/${SVC}/ModelStreamInfer`, headers: { 'content-type': 'application/grpc' }, decision: { action: 'allow' } }),
    ev(101, 'grpc.message', { exchange: 'x2', dir: 'up', index: 0, bytes: 30, json: { model_name: 'llama' } }),
    ev(110, 'exchange.response', { exchange: 'x2', status: 200, headers: { 'content-type': 'application/grpc' } }),
    ev(200, 'grpc.message', { exchange: 'x2', dir: 'down', index: 0, bytes: 50, json: { error_message: '', infer_response: inferResponse('once ') } }),
    ev(300, 'grpc.message', { exchange: 'x2', dir: 'down', index: 1, bytes: 50, json: { error_message: '', infer_response: inferResponse('upon ') } }),
    ev(400, 'grpc.message', { exchange: 'x2', dir: 'down', index: 2, bytes: 50, json: { error_message: '', infer_response: inferResponse('a time') } }),
    ev(410, 'exchange.end', { exchange: 'x2', status: 200, complete: true, duration_ms: 310, bytes_up: 35, bytes_down: 165, trailers: { 'grpc-status': '9', 'grpc-message': 'model%20unloaded' } }),
    ev(500, 'session.end', { reason: 'closed', exchanges: 2 }),
  ];
}

describe('gRPC exchanges in the TUI', () => {
  const session = fromEvents(grpcSession());

  it('the exchange view shows service/method, status, metadata and each message decoded, BYTES outputs as text', async () => {
    const { lastFrame } = render(<ExchangeView exchange={session.exchanges[0]!} height={80} width={200} onBack={() => {}} />);
    await settle();
    const frame = lastFrame() ?? '';
    expect(frame).toContain(`#1 grpc ${SVC}/ModelInfer → OK (0)`);
    expect(frame).toContain('messages 1 up / 1 down');
    expect(frame).toContain('model llama');
    expect(frame).toContain('x-team: search');
    expect(frame).toMatch(/── ↑ request #0 at \S+ · 40 bytes/);
    expect(frame).toMatch(/── ↓ answer #0 at \S+ · 52 bytes/);
    expect(frame).toContain('text: HELLO');
    expect(frame).toContain('"datatype": "BYTES"');
  });

  it('a stream that failed shows its status name and the decoded grpc-message', async () => {
    const { lastFrame } = render(<ExchangeView exchange={session.exchanges[1]!} height={120} width={200} onBack={() => {}} />);
    await settle();
    const frame = lastFrame() ?? '';
    expect(frame).toContain(`#2 grpc ${SVC}/ModelStreamInfer → FAILED_PRECONDITION (9)`);
    expect(frame).toContain('grpc-message: model unloaded');
    expect(frame).toContain('── answer (streamed, 3 messages)');
    expect(frame).toContain('once upon a time');
  });

  it('the session view lists the calls with their gRPC status', async () => {
    const { lastFrame } = render(<SessionView session={session} onOpenExchange={() => {}} onPlay={() => {}} onBack={() => {}} />);
    await settle();
    expect(lastFrame()).toMatch(/#1 +POST +\/inference\.GRPCInferenceService\/ModelInfer +OK \(0\)/);
    expect(lastFrame()).toMatch(/#2 .*FAILED_PRECONDITION \(9\)/);
  });

  it('playback plays a server stream message by message at the recorded pace', async () => {
    const stream = session.exchanges[1]!;
    expect(stream.chunks.map((c) => [c.t, c.text])).toEqual([
      [100, 'once '],
      [200, 'upon '],
      [300, 'a time'],
    ]);
    const clock = new ManualClock();
    const { lastFrame } = render(<PlaybackView exchange={stream} clock={clock} onBack={() => {}} />);
    await settle();
    expect(lastFrame()).toContain(`Playback #2 grpc ${SVC}/ModelStreamInfer`);
    expect(lastFrame()).toContain('chunk 0/3');
    clock.advance(100);
    await settle();
    expect(lastFrame()).toContain('chunk 1/3');
    expect(lastFrame()).toContain('once');
    expect(lastFrame()).not.toContain('upon');
    clock.advance(99);
    await settle();
    expect(lastFrame()).not.toContain('upon');
    clock.advance(1);
    await settle();
    expect(lastFrame()).toContain('once upon');
    clock.advance(100);
    await settle();
    expect(lastFrame()).toContain('chunk 3/3');
    expect(lastFrame()).toContain('once upon a time');
  });
});
