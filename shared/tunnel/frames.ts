/**
 * Binary frames of the tunnel protocol. One frame is one WebSocket binary message:
 *
 *   [type u8][streamId u32 BE][payload]
 *
 * The WebSocket message boundary gives the payload length, so the header carries none.
 *
 * | type | name   | payload                                                      |
 * | ---- | ------ | ------------------------------------------------------------ |
 * | 1    | OPEN   | UTF-8 JSON object, the stream's metadata (≤ maxMetadata)     |
 * | 2    | DATA   | bytes, 1 ≤ length ≤ maxFrame                                 |
 * | 3    | END    | empty: the sender will send no more DATA on this stream      |
 * | 4    | RESET  | u16 BE code, then a UTF-8 reason (≤ MAX_RESET_REASON bytes)  |
 * | 5    | WINDOW | u32 BE credit increment, 1 ≤ increment ≤ MAX_WINDOW          |
 *
 * Stream id 0 is invalid. The decoder checks everything that can be checked without stream state;
 * the multiplexer checks the rest (ids, credit, ordering).
 */
import { SluiceError } from '../errors.js';

/** The tunnel protocol version, announced in the gateway's `hello`. */
export const TUNNEL_PROTOCOL_VERSION = 1;

/** Bytes before the payload: type (1) + stream id (4). */
export const FRAME_HEADER_SIZE = 5;

/** Largest stream id (u32). */
export const MAX_STREAM_ID = 0xffff_ffff;

/**
 * Largest credit a stream may hold, and so the largest WINDOW increment. 2^31 - 1 as in HTTP/2:
 * credit stays a small integer and a peer cannot make it overflow by granting repeatedly.
 */
export const MAX_WINDOW = 0x7fff_ffff;

/** Largest RESET reason in bytes; reasons are error codes, never free text. */
export const MAX_RESET_REASON = 256;

/** Default bound of OPEN metadata in bytes. */
export const DEFAULT_MAX_METADATA = 4096;

/** Wire values of the frame types. */
export const FRAME_TYPE = { open: 1, data: 2, end: 3, reset: 4, window: 5 } as const;

/** Metadata of an OPEN frame: a JSON object (e.g. `{client: "127.0.0.1:51234"}`). */
export type OpenMetadata = Record<string, unknown>;

/** A decoded frame. */
export type Frame =
  | { type: 'open'; streamId: number; meta: OpenMetadata }
  | { type: 'data'; streamId: number; data: Buffer }
  | { type: 'end'; streamId: number }
  | { type: 'reset'; streamId: number; code: number; reason: string }
  | { type: 'window'; streamId: number; increment: number };

/** Bounds the decoder enforces. */
export interface FrameLimits {
  /** Largest DATA payload in bytes. */
  maxFrame: number;
  /** Largest OPEN metadata in bytes. Default {@link DEFAULT_MAX_METADATA}. */
  maxMetadata?: number;
}

// fatal: invalid UTF-8 is malformed input, not something to paper over with U+FFFD. ignoreBOM: a leading
// U+FEFF is a character of the payload like any other; stripped, a RESET reason would not round-trip and
// OPEN metadata would be JSON only after the decoder had edited it.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function malformed(message: string): SluiceError {
  return new SluiceError('ERR_TUNNEL_PROTOCOL', { message: `Malformed tunnel frame: ${message}` });
}

function checkStreamId(streamId: number): void {
  if (!Number.isInteger(streamId) || streamId < 1 || streamId > MAX_STREAM_ID) {
    throw new RangeError(`stream id must be an integer in 1..${MAX_STREAM_ID}, got ${streamId}`);
  }
}

function header(type: number, streamId: number, payloadLength: number): Buffer {
  const buf = Buffer.allocUnsafe(FRAME_HEADER_SIZE + payloadLength);
  buf[0] = type;
  buf.writeUInt32BE(streamId, 1);
  return buf;
}

/**
 * A DATA frame with its header written and `length` payload bytes left for the caller to fill
 * (from offset {@link FRAME_HEADER_SIZE}), so a payload is copied once, straight into the frame.
 */
export function allocDataFrame(streamId: number, length: number): Buffer {
  return header(FRAME_TYPE.data, streamId, length);
}

/** Encodes a frame; throws RangeError on a frame the decoder would reject (a bug of the sender). */
export function encodeFrame(frame: Frame): Buffer {
  checkStreamId(frame.streamId);
  switch (frame.type) {
    case 'open': {
      const json = Buffer.from(JSON.stringify(frame.meta), 'utf8');
      const buf = header(FRAME_TYPE.open, frame.streamId, json.length);
      json.copy(buf, FRAME_HEADER_SIZE);
      return buf;
    }
    case 'data': {
      if (frame.data.length === 0) throw new RangeError('DATA frames carry at least one byte');
      const buf = header(FRAME_TYPE.data, frame.streamId, frame.data.length);
      frame.data.copy(buf, FRAME_HEADER_SIZE);
      return buf;
    }
    case 'end':
      return header(FRAME_TYPE.end, frame.streamId, 0);
    case 'reset': {
      if (!Number.isInteger(frame.code) || frame.code < 0 || frame.code > 0xffff) {
        throw new RangeError(`reset code must be a u16, got ${frame.code}`);
      }
      const reason = Buffer.from(frame.reason, 'utf8');
      if (reason.length > MAX_RESET_REASON) throw new RangeError(`reset reason exceeds ${MAX_RESET_REASON} bytes`);
      const buf = header(FRAME_TYPE.reset, frame.streamId, 2 + reason.length);
      buf.writeUInt16BE(frame.code, FRAME_HEADER_SIZE);
      reason.copy(buf, FRAME_HEADER_SIZE + 2);
      return buf;
    }
    case 'window': {
      if (!Number.isInteger(frame.increment) || frame.increment < 1 || frame.increment > MAX_WINDOW) {
        throw new RangeError(`window increment must be in 1..${MAX_WINDOW}, got ${frame.increment}`);
      }
      const buf = header(FRAME_TYPE.window, frame.streamId, 4);
      buf.writeUInt32BE(frame.increment, FRAME_HEADER_SIZE);
      return buf;
    }
  }
}

/**
 * Decodes one frame (one WebSocket binary message). DATA payloads are views into `buf`, not copies.
 * Throws SluiceError ERR_TUNNEL_PROTOCOL on any malformed input, and nothing else.
 */
export function decodeFrame(buf: Buffer, limits: FrameLimits): Frame {
  if (buf.length < FRAME_HEADER_SIZE) throw malformed(`${buf.length} bytes is shorter than the ${FRAME_HEADER_SIZE}-byte header`);
  const type = buf[0];
  const streamId = buf.readUInt32BE(1);
  if (streamId === 0) throw malformed('stream id 0');
  const length = buf.length - FRAME_HEADER_SIZE;
  switch (type) {
    case FRAME_TYPE.data:
      if (length === 0) throw malformed('empty DATA');
      if (length > limits.maxFrame) throw malformed(`DATA of ${length} bytes exceeds max frame ${limits.maxFrame}`);
      return { type: 'data', streamId, data: buf.subarray(FRAME_HEADER_SIZE) };
    case FRAME_TYPE.window: {
      if (length !== 4) throw malformed(`WINDOW payload of ${length} bytes (expected 4)`);
      const increment = buf.readUInt32BE(FRAME_HEADER_SIZE);
      if (increment === 0) throw malformed('WINDOW increment 0');
      if (increment > MAX_WINDOW) throw malformed(`WINDOW increment ${increment} exceeds ${MAX_WINDOW}`);
      return { type: 'window', streamId, increment };
    }
    case FRAME_TYPE.end:
      if (length !== 0) throw malformed(`END with a ${length}-byte payload`);
      return { type: 'end', streamId };
    case FRAME_TYPE.open: {
      const max = limits.maxMetadata ?? DEFAULT_MAX_METADATA;
      if (length > max) throw malformed(`OPEN metadata of ${length} bytes exceeds ${max}`);
      let meta: unknown;
      try {
        meta = JSON.parse(utf8.decode(buf.subarray(FRAME_HEADER_SIZE)));
      } catch {
        throw malformed('OPEN metadata is not UTF-8 JSON');
      }
      if (meta === null || typeof meta !== 'object' || Array.isArray(meta)) {
        throw malformed('OPEN metadata is not a JSON object');
      }
      return { type: 'open', streamId, meta: meta as OpenMetadata };
    }
    case FRAME_TYPE.reset: {
      if (length < 2) throw malformed(`RESET payload of ${length} bytes (at least 2)`);
      if (length - 2 > MAX_RESET_REASON) throw malformed(`RESET reason exceeds ${MAX_RESET_REASON} bytes`);
      const code = buf.readUInt16BE(FRAME_HEADER_SIZE);
      let reason: string;
      try {
        reason = utf8.decode(buf.subarray(FRAME_HEADER_SIZE + 2));
      } catch {
        throw malformed('RESET reason is not UTF-8');
      }
      return { type: 'reset', streamId, code, reason };
    }
    default:
      throw malformed(`unknown type ${type}`);
  }
}
