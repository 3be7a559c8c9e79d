import { describe, expect, it } from 'vitest';
import { SluiceError } from '../../shared/errors.js';
import { encodeControl, MAX_CONTROL_BYTES, parseControl, type ControlMessage } from '../../shared/tunnel/control.js';
import { TUNNEL_PROTOCOL_VERSION } from '../../shared/tunnel/frames.js';

const hello: ControlMessage = {
  type: 'hello',
  version: TUNNEL_PROTOCOL_VERSION,
  session_id: 's_01J9ZK',
  connection: { name: 'llm', type: 'http' },
  window: 262144,
  max_frame: 1048576,
  max_streams: 256,
};

function protocolError(input: string | Buffer): SluiceError {
  try {
    parseControl(input);
  } catch (err) {
    expect(err).toBeInstanceOf(SluiceError);
    expect((err as SluiceError).code).toBe('ERR_TUNNEL_PROTOCOL');
    return err as SluiceError;
  }
  throw new Error(`parseControl accepted ${String(input).slice(0, 80)}`);
}

describe('tunnel control messages', () => {
  it.each<ControlMessage>([
    hello,
    { type: 'notice', level: 'info', message: 'waiting for approval r_123' },
    { type: 'notice', level: 'warn', message: 'token expires in 60s', code: 'token_expiring' },
    { type: 'reauth', token: 'eyJhbGciOiJFUzI1NiJ9.e30.sig' },
    { type: 'reauth_ok', expires_at: 1767225600 },
    { type: 'error', code: 'ERR_TOKEN_EXPIRED', message: 'The token has expired' },
  ])('round-trips $type', (message) => {
    const text = encodeControl(message);
    expect(JSON.parse(text)).toEqual(message);
    expect(parseControl(text)).toEqual(message);
    expect(parseControl(Buffer.from(text))).toEqual(message);
  });

  it('drops unknown fields, so a newer peer can add some', () => {
    expect(parseControl(JSON.stringify({ ...hello, extra: 1 }))).toEqual(hello);
  });

  it("takes a connection type it does not know, so a newer gateway's type still reaches the CLI", () => {
    const grpc = { ...hello, connection: { name: 'rpc', type: 'grpc' } };
    expect(parseControl(JSON.stringify(grpc))).toEqual(grpc);
  });

  it.each([
    ['not JSON', '{"type":'],
    ['a JSON array', '[]'],
    ['JSON null', 'null'],
    ['no type', '{"message":"x"}'],
    ['an unknown type', '{"type":"shell","cmd":"id"}'],
    ['hello without a session id', JSON.stringify({ ...hello, session_id: undefined })],
    ['hello with an empty session id', JSON.stringify({ ...hello, session_id: '' })],
    ['hello with a fractional window', JSON.stringify({ ...hello, window: 1.5 })],
    ['hello with window 0', JSON.stringify({ ...hello, window: 0 })],
    ['hello with a malformed connection type', JSON.stringify({ ...hello, connection: { name: 'llm', type: 'FTP over IP' } })],
    ['hello with a string version', JSON.stringify({ ...hello, version: '1' })],
    ['a notice with an unknown level', JSON.stringify({ type: 'notice', level: 'debug', message: 'x' })],
    ['reauth without a token', JSON.stringify({ type: 'reauth' })],
    ['reauth_ok with expires_at as a string', JSON.stringify({ type: 'reauth_ok', expires_at: '2026' })],
    ['an error with a code outside the ERR_ form', JSON.stringify({ type: 'error', code: 'oops', message: 'x' })],
  ])('rejects %s with ERR_TUNNEL_PROTOCOL', (_name, text) => {
    protocolError(text);
  });

  it('rejects a message over 64 KiB before parsing it', () => {
    const big = JSON.stringify({ type: 'notice', level: 'info', message: 'x'.repeat(MAX_CONTROL_BYTES) });
    expect(protocolError(big).message).toMatch(/exceeds/);
    // counted in UTF-8 bytes, not characters
    const wide = JSON.stringify({ type: 'notice', level: 'info', message: 'é'.repeat(MAX_CONTROL_BYTES / 2) });
    expect(wide.length).toBeLessThan(MAX_CONTROL_BYTES);
    expect(protocolError(wide).message).toMatch(/exceeds/);
  });

  it('refuses to encode an invalid message', () => {
    expect(() => encodeControl({ type: 'notice', level: 'loud', message: 'x' } as unknown as ControlMessage)).toThrow(SluiceError);
    expect(() => encodeControl({ type: 'bogus' } as unknown as ControlMessage)).toThrow(SluiceError);
  });

  it('never throws anything but ERR_TUNNEL_PROTOCOL on random input', () => {
    const samples = ['', ' ', '{}', '{"type":null}', '{"type":"hello"}', '"hello"', '1e999', '{"type":"error","code":"ERR_X"}'];
    for (let i = 0; i < 2000; i++) {
      const base = encodeControl(hello);
      const at = i % base.length;
      samples.push(base.slice(0, at) + String.fromCharCode(32 + (i % 95)) + base.slice(at + 1));
    }
    for (const text of samples) {
      try {
        parseControl(text);
      } catch (err) {
        expect(err).toBeInstanceOf(SluiceError);
        expect((err as SluiceError).code).toBe('ERR_TUNNEL_PROTOCOL');
      }
    }
  });
});
