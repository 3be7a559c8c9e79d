/**
 * Tunnel frames built by hand, apart from the codec in shared/tunnel/frames.ts: any type byte, any stream
 * id and any payload, so that tests can send (and check the decoder refuses) what the encoder never builds.
 */
import { FRAME_HEADER_SIZE } from '../../shared/tunnel/frames.js';

/** The bytes of one frame: its type byte, its 32-bit stream id, then `payload` as given. */
export function rawFrame(type: number, streamId: number, payload: Uint8Array = Buffer.alloc(0)): Buffer {
  const buf = Buffer.alloc(FRAME_HEADER_SIZE + payload.length);
  buf[0] = type;
  buf.writeUInt32BE(streamId, 1);
  buf.set(payload, FRAME_HEADER_SIZE);
  return buf;
}

/** `n` as four big-endian bytes: a WINDOW frame's increment. */
export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}
