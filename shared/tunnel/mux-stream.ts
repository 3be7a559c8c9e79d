/**
 * One stream of a tunnel, as a Node Duplex: what both ends do for a single local connection while the
 * multiplexer (./mux.ts) carries its frames. This file owns the stream's flow control, half-close and
 * reset; the stream table, ids, the WebSocket and the order in which streams send belong to the mux.
 *
 * Flow control: each side grants its peer `window` bytes per stream when the stream opens; a sender
 * sends DATA only against credit, and a receiver returns credit (WINDOW) as its consumer reads, from
 * `_read`, not when bytes arrive. So a stream nobody reads holds at most one window on the receiver,
 * and its writer's callbacks wait: backpressure reaches the original writer.
 *
 * Decisions:
 * - RESET carries a code and an error code string, never a message (no internals cross the tunnel):
 *   see {@link RESET_CODE}. A RESET whose reason is a code of shared/errors.ts fails the stream with
 *   that SluiceError; any other with a {@link StreamResetError} (`code` ECONNRESET).
 * - DATA beyond the granted credit, DATA after END or a second END is not thrown here but returned
 *   to the mux as ERR_TUNNEL_PROTOCOL: the peer broke the protocol, so the whole tunnel closes.
 */
import { Duplex } from 'node:stream';
import { ERRORS, SluiceError, type ErrorCode } from '../errors.js';
import { allocDataFrame, FRAME_HEADER_SIZE, MAX_RESET_REASON, MAX_WINDOW, type Frame, type OpenMetadata } from './frames.js';

/** RESET codes. Codes of shared/errors.ts travel as their WebSocket close code (e.g. 4429). */
export const RESET_CODE = {
  /** The stream was destroyed without an error (e.g. the local client hung up). */
  cancel: 0,
  /** The stream was destroyed with an error that is not a SluiceError; the reason is its `code`, if any. */
  error: 1,
  /** Refused: the tunnel already carries `maxStreams` streams. */
  limit: ERRORS.ERR_TUNNEL_LIMIT.close,
} as const;

/** The error a stream fails with when the peer resets it or the tunnel closes under it. */
export class StreamResetError extends Error {
  /** Like a TCP reset, so code written for sockets handles it. */
  readonly code = 'ECONNRESET';
  /** The RESET code, when the peer reset the stream. */
  readonly resetCode?: number;
  /** The WebSocket close code, when the tunnel closed. */
  readonly closeCode?: number;

  constructor(message: string, info: { resetCode?: number; closeCode?: number } = {}) {
    super(message);
    this.name = 'StreamResetError';
    this.resetCode = info.resetCode;
    this.closeCode = info.closeCode;
  }
}

/**
 * @internal What a stream needs from its mux: the mux implements it and hands it to each stream it
 * creates; kept out of TunnelStream's public API so a stream's owner cannot send frames past the mux.
 */
export interface StreamLink {
  readonly window: number;
  readonly maxFrame: number;
  /** Streams with bytes to send that wait for the WebSocket buffer; the mux resumes them in turn. */
  readonly waiting: Set<TunnelStream>;
  isClosed(): boolean;
  canSendData(): boolean;
  sendData(frame: Buffer, payloadLength: number): void;
  sendFrame(frame: Frame): void;
  release(stream: TunnelStream): void;
}

const ERROR_CODE_PATTERN = /^[A-Z][A-Z0-9_]{0,63}$/;

function resetFor(err: Error | null): { code: number; reason: string } {
  if (err === null) return { code: RESET_CODE.cancel, reason: '' };
  if (err instanceof SluiceError) return { code: err.closeCode, reason: err.code };
  const code = (err as NodeJS.ErrnoException).code;
  const reason = typeof code === 'string' && ERROR_CODE_PATTERN.test(code) ? code : '';
  return { code: RESET_CODE.error, reason: reason.slice(0, MAX_RESET_REASON) };
}

function errorForReset(streamId: number, code: number, reason: string): Error {
  if (Object.hasOwn(ERRORS, reason)) {
    return new SluiceError(reason as ErrorCode, { details: { stream_id: streamId, reset_code: code } });
  }
  const why = reason === '' ? `code ${code}` : `code ${code}, ${reason}`;
  return new StreamResetError(`The peer reset tunnel stream ${streamId} (${why})`, { resetCode: code });
}

/** The error a peer's broken frame sequence fails the tunnel with (the mux closes it with 4400). */
export function protocolError(message: string): SluiceError {
  return new SluiceError('ERR_TUNNEL_PROTOCOL', { message });
}

/**
 * One stream of a tunnel: a Duplex (half-open allowed) that also looks enough like a net.Socket for
 * Node's http client and server to run over it.
 */
export class TunnelStream extends Duplex {
  /** Stream id, unique within the tunnel. */
  readonly id: number;
  /** The metadata of the OPEN frame. */
  readonly meta: OpenMetadata;
  /** Set by the owner for logs and `req.socket.remoteAddress`; the mux knows no addresses. */
  remoteAddress: string | undefined;
  /** Set by the owner, like {@link TunnelStream.remoteAddress}. */
  remotePort: number | undefined;
  /** Set by the owner, like {@link TunnelStream.remoteAddress}. */
  localAddress: string | undefined;
  /** Set by the owner, like {@link TunnelStream.remoteAddress}. */
  localPort: number | undefined;
  /** Payload bytes received from the peer. */
  bytesRead = 0;
  /** Payload bytes sent to the peer. */
  bytesSent = 0;

  private readonly link: StreamLink;
  private sendCredit: number;
  // credit the peer still holds: enforced so a peer cannot make us buffer more than one window
  private recvCredit: number;
  // bytes whose credit has gone back to the peer
  private granted = 0;
  // the write in progress (from _write/_writev), consumed in place without copying the list
  private pending: Buffer[] = [];
  private pendingIndex = 0;
  private pendingOffset = 0;
  private pendingBytes = 0;
  private pendingTotal = 0;
  private pendingCallback: ((error?: Error | null) => void) | undefined;
  private endSent = false;
  private endReceived = false;
  private resetReceived = false;
  private creditScheduled = false;

  /** Created by the mux (./mux.ts) when a stream opens; not for direct use. */
  constructor(link: StreamLink, id: number, meta: OpenMetadata) {
    // a readable buffer as large as the window: _read (and so credit) then runs on every read,
    // not only once the buffer has nearly drained
    super({ allowHalfOpen: true, readableHighWaterMark: link.window });
    this.link = link;
    this.id = id;
    this.meta = meta;
    this.sendCredit = link.window;
    this.recvCredit = link.window;
  }

  /** Bytes written so far, buffered included, like net.Socket's (http checks it before answering 400). */
  get bytesWritten(): number {
    // writableLength includes the write in progress, whose sent part bytesSent already counts
    return this.bytesSent + this.writableLength - (this.pendingTotal - this.pendingBytes);
  }

  /** No-op: idle and liveness checks belong to the tunnel owner (WebSocket ping), not to each stream. */
  setTimeout(_ms: number, _callback?: () => void): this {
    return this;
  }

  /** No-op: Nagle does not apply; each write is sent as soon as credit allows. */
  setNoDelay(_noDelay?: boolean): this {
    return this;
  }

  /** No-op: keepalive is the WebSocket's. */
  setKeepAlive(_enable?: boolean, _initialDelay?: number): this {
    return this;
  }

  /** No-op: a stream holds no handle of its own that could keep the event loop alive (http.Agent calls it). */
  ref(): this {
    return this;
  }

  /** No-op, see {@link TunnelStream.ref}. */
  unref(): this {
    return this;
  }

  override _read(): void {
    // Readable.read() calls _read before it takes the bytes out of the buffer: count them after
    if (this.creditScheduled || this.endReceived) return;
    this.creditScheduled = true;
    queueMicrotask(this.returnCredit);
  }

  private readonly returnCredit = (): void => {
    this.creditScheduled = false;
    if (this.endReceived || this.destroyed || this.link.isClosed()) return;
    const consumed = this.bytesRead - this.readableLength;
    const increment = consumed - this.granted;
    // while the peer still holds more than half a window it is not waiting on us: batch the credit
    if (increment > 0 && this.recvCredit <= this.link.window / 2) {
      this.granted = consumed;
      this.recvCredit += increment;
      this.link.sendFrame({ type: 'window', streamId: this.id, increment });
    }
  };

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.pending = [chunk];
    this.startWrite(chunk.length, callback);
  }

  override _writev(chunks: Array<{ chunk: Buffer; encoding: BufferEncoding }>, callback: (error?: Error | null) => void): void {
    let total = 0;
    const list = new Array<Buffer>(chunks.length);
    for (let i = 0; i < chunks.length; i++) {
      const chunk = chunks[i]!.chunk;
      list[i] = chunk;
      total += chunk.length;
    }
    this.pending = list;
    this.startWrite(total, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    // every write callback has run, so all DATA is already with the WebSocket, ahead of this END
    if (!this.link.isClosed()) this.link.sendFrame({ type: 'end', streamId: this.id });
    this.endSent = true;
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.link.release(this);
    const finished = this.endSent && this.endReceived;
    if (!this.resetReceived && !finished && !this.link.isClosed()) {
      const { code, reason } = resetFor(error);
      this.link.sendFrame({ type: 'reset', streamId: this.id, code, reason });
    }
    const pendingCallback = this.pendingCallback;
    this.clearPending();
    if (pendingCallback) {
      pendingCallback(error ?? Object.assign(new Error('Cannot write: the stream was destroyed'), { code: 'ERR_STREAM_DESTROYED' }));
    }
    callback(error);
  }

  /** @internal DATA from the peer; returns a protocol error instead of throwing. */
  receiveData(data: Buffer): SluiceError | undefined {
    if (this.endReceived) return protocolError(`DATA after END on stream ${this.id}`);
    if (data.length > this.recvCredit) {
      return protocolError(`DATA of ${data.length} bytes exceeds the ${this.recvCredit} bytes of credit of stream ${this.id}`);
    }
    this.recvCredit -= data.length;
    this.bytesRead += data.length;
    this.push(data);
    return undefined;
  }

  /** @internal END from the peer. */
  receiveEnd(): SluiceError | undefined {
    if (this.endReceived) return protocolError(`second END on stream ${this.id}`);
    this.endReceived = true;
    this.push(null);
    return undefined;
  }

  /** @internal WINDOW from the peer. */
  receiveWindow(increment: number): SluiceError | undefined {
    if (this.sendCredit + increment > MAX_WINDOW) return protocolError(`WINDOW overflows the credit of stream ${this.id}`);
    this.sendCredit += increment;
    if (this.pendingBytes > 0) this.flush(this.link.waiting.size > 0 ? 0 : Infinity);
    return undefined;
  }

  /** @internal RESET from the peer. */
  receiveReset(code: number, reason: string): void {
    this.resetReceived = true;
    this.destroy(errorForReset(this.id, code, reason));
  }

  /**
   * @internal Sends pending bytes as DATA while credit lasts and the WebSocket accepts more, at most
   * `budget` frames; a stream that could send more but may not now waits in the mux's queue.
   */
  flush(budget: number): void {
    const maxFrame = this.link.maxFrame;
    while (this.pendingBytes > 0) {
      if (this.sendCredit === 0) return; // the peer's WINDOW resumes us
      if (budget === 0 || !this.link.canSendData()) {
        this.link.waiting.add(this);
        return;
      }
      const n = Math.min(this.pendingBytes, this.sendCredit, maxFrame);
      const frame = allocDataFrame(this.id, n);
      this.copyPending(frame, n);
      this.sendCredit -= n;
      this.pendingBytes -= n;
      this.bytesSent += n;
      this.link.sendData(frame, n);
      budget--;
    }
    const callback = this.pendingCallback;
    if (callback) {
      this.clearPending();
      callback();
    }
  }

  private startWrite(total: number, callback: (error?: Error | null) => void): void {
    this.pendingIndex = 0;
    this.pendingOffset = 0;
    this.pendingBytes = total;
    this.pendingTotal = total;
    this.pendingCallback = callback;
    // join the queue rather than overtake streams already waiting for the WebSocket buffer
    this.flush(this.link.waiting.size > 0 ? 0 : Infinity);
  }

  private copyPending(frame: Buffer, n: number): void {
    let at = FRAME_HEADER_SIZE;
    let left = n;
    while (left > 0) {
      const head = this.pending[this.pendingIndex]!;
      const available = head.length - this.pendingOffset;
      const k = available < left ? available : left;
      head.copy(frame, at, this.pendingOffset, this.pendingOffset + k);
      at += k;
      left -= k;
      if (k === available) {
        this.pendingIndex++;
        this.pendingOffset = 0;
      } else {
        this.pendingOffset += k;
      }
    }
  }

  private clearPending(): void {
    this.pending = [];
    this.pendingIndex = 0;
    this.pendingOffset = 0;
    this.pendingBytes = 0;
    this.pendingTotal = 0;
    this.pendingCallback = undefined;
  }
}
