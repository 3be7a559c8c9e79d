/**
 * A tunnel frame larger than `tunnel.max_frame`, sent to a real gateway over a raw WebSocket: the gateway
 * answers with an `error` control message and closes the tunnel with 4400 ERR_TUNNEL_PROTOCOL, as the
 * error table says, at the default frame size and a configured one; a frame of exactly max_frame is carried.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { FRAME_TYPE } from '../../shared/tunnel/frames.js';
import { gatewayFixture, openRawTunnel, type RawTunnel, type TestGateway } from '../helpers/gateway.js';
import { rawFrame } from '../helpers/raw-frames.js';

const gateways = gatewayFixture();

/** Opens a tunnel to `sink`, waits for hello, opens stream 1 and sends one DATA frame of `size` bytes on it. */
async function sendData(gw: TestGateway, size: number): Promise<{ tunnel: RawTunnel; maxFrame: number }> {
  const tunnel = openRawTunnel(gw.tunnelUrl('sink'), await gw.token('alice'));
  await tunnel.opened;
  const hello = await tunnel.hello;
  tunnel.ws.send(rawFrame(FRAME_TYPE.open, 1, Buffer.from('{}')), { binary: true });
  tunnel.ws.send(rawFrame(FRAME_TYPE.data, 1, Buffer.alloc(size, 0x5a)), { binary: true });
  return { tunnel, maxFrame: hello.max_frame };
}

async function closedWithin(tunnel: RawTunnel, ms: number) {
  return Promise.race([tunnel.closed, sleep(ms).then(() => null)]);
}

describe('an oversized tunnel frame', () => {
  for (const [label, tunnel] of [
    // Windows wider than the frame, so that only the frame's size is at fault, not the stream's credit.
    ['the default max_frame (1 MiB)', { window: 4 * 1024 * 1024 }],
    ['a configured max_frame of 4096', { max_frame: 4096, window: 65_536 }],
  ] as const) {
    it(`closes the tunnel with 4400 and an ERR_TUNNEL_PROTOCOL error message, at ${label}`, async () => {
      const gw = await gateways.start({ tunnel });
      const maxFrame = gw.config.tunnel.max_frame;
      const { tunnel: t, maxFrame: announced } = await sendData(gw, maxFrame + 1);
      expect(announced).toBe(maxFrame);

      const closed = await closedWithin(t, 10_000);
      expect(closed).toMatchObject({ code: 4400, reason: 'ERR_TUNNEL_PROTOCOL' });
      const error = t.texts.at(-1) as { type?: string; code?: string };
      expect(error).toMatchObject({ type: 'error', code: 'ERR_TUNNEL_PROTOCOL' });
    });
  }

  it('carries a frame of exactly max_frame bytes: the tunnel stays open', async () => {
    const gw = await gateways.start({ tunnel: { max_frame: 4096, window: 65_536 } });
    const { tunnel: t } = await sendData(gw, 4096);
    expect(await closedWithin(t, 500)).toBeNull();
    expect(t.texts.filter((m) => (m as { type?: string }).type === 'error')).toEqual([]);
  });
});
