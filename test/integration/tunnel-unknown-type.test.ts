/**
 * A connection type the CLI does not know (a newer gateway's, such as grpc): `openTunnel` still opens a raw
 * local port and carries its bytes as they are, with no HTTP guard in front that would refuse them.
 */
import { once } from 'node:events';
import { connect, type AddressInfo } from 'node:net';
import { PassThrough } from 'node:stream';
import { describe, expect, it, onTestFinished } from 'vitest';
import { WebSocketServer } from 'ws';
import type { CliContext } from '../../cli/context.js';
import { openTunnel } from '../../cli/tunnel/open-tunnel.js';
import { encodeControl } from '../../shared/tunnel/control.js';
import { TUNNEL_PROTOCOL_VERSION } from '../../shared/tunnel/frames.js';
import { TunnelMux } from '../../shared/tunnel/mux.js';

/** A gateway as far as the tunnel goes: its hello names a `grpc` connection, and each stream's bytes come back. */
async function startEchoingGateway(): Promise<string> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, path: '/v1/tunnel' });
  await once(wss, 'listening');
  onTestFinished(() => new Promise<void>((r) => wss.close(() => r())));
  wss.on('connection', (ws, req) => {
    ws.send(
      encodeControl({
        type: 'hello',
        version: TUNNEL_PROTOCOL_VERSION,
        session_id: 'ses_unknown_type',
        connection: { name: 'rpc', type: 'grpc' },
        window: 256 * 1024,
        max_frame: 64 * 1024,
        max_streams: 8,
      }),
    );
    const mux = new TunnelMux(ws, { role: 'server', upgradeSocket: req.socket, window: 256 * 1024, maxFrame: 64 * 1024, maxStreams: 8 });
    mux.on('error', () => undefined);
    mux.on('stream', (stream) => {
      stream.on('error', () => undefined);
      stream.pipe(stream);
    });
  });
  return `http://127.0.0.1:${(wss.address() as AddressInfo).port}`;
}

describe('a connection type the CLI does not know', () => {
  it('opens a raw local port that carries the bytes as they are', async () => {
    const gateway = await startEchoingGateway();
    const stderr = new PassThrough().resume();
    const ctx: CliContext = {
      out: { stdout: new PassThrough().resume(), stderr },
      env: { SLUICE_TOKEN: 'a-token', SLUICE_GATEWAY: gateway, XDG_CONFIG_HOME: '/nonexistent', SLUICE_TOKEN_STORE: 'file' },
      profile: () => 'default',
      json: () => false,
    };
    const tunnel = await openTunnel(ctx, { connection: 'rpc', port: 0, bind: '127.0.0.1', localAuth: true });
    onTestFinished(() => tunnel.close());
    expect(tunnel.hello.connection).toEqual({ name: 'rpc', type: 'grpc' });
    // An address, not an HTTP URL; no local token: nothing on this port is read as HTTP.
    expect(tunnel.localUrl).toBe(`127.0.0.1:${tunnel.listener.port}`);
    expect(tunnel.localToken).toBeNull();

    // The HTTP/2 connection preface and a frame: an HTTP/1 guard would answer 400 and close.
    const bytes = Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]);
    const socket = connect({ host: '127.0.0.1', port: tunnel.listener.port, allowHalfOpen: true });
    onTestFinished(() => void socket.destroy());
    const received: Buffer[] = [];
    socket.on('data', (c: Buffer) => received.push(c));
    await once(socket, 'connect');
    socket.end(bytes);
    await once(socket, 'end');
    expect(Buffer.concat(received).equals(bytes)).toBe(true);
  });
});
