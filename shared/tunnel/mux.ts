/**
 * The stream multiplexer both ends of a tunnel use: many TunnelStreams (Node Duplexes) over one
 * `ws` WebSocket, with per-stream credit so a slow reader stalls only its own stream.
 *
 * Flow control: each side grants its peer `window` bytes per stream when the stream opens; a sender
 * sends DATA only against credit, and a receiver returns credit (WINDOW) as its consumer reads, from
 * `_read`, not when bytes arrive. So a stream nobody reads holds at most one window on the receiver,
 * and its writer's callbacks wait: backpressure reaches the original writer. DATA is also held back
 * while the WebSocket's own buffer (`bufferedAmount`) is over `maxBufferedAmount`, so many streams
 * with credit cannot fill the socket buffer either.
 *
 * Both ends must use the same `window` and `maxFrame`: the gateway announces its own in `hello`
 * ({@link muxOptionsFromHello}); the CLI creates its mux from them.
 *
 * Decisions:
 * - Only the client opens streams. Its ids start at 1 and increase by one; they are never reused
 *   (a u32 lasts for 4 billion streams; the client then needs a new tunnel). An OPEN whose id is not
 *   above every id seen so far, including a duplicate of a live stream, is a protocol error that
 *   closes the tunnel: the two stream tables disagree, and bytes of one local connection must never
 *   be delivered to another.
 * - An OPEN while `maxStreams` streams are open is refused with RESET(4429, "ERR_TUNNEL_LIMIT");
 *   the tunnel stays up. The client sees the stream fail with SluiceError ERR_TUNNEL_LIMIT.
 * - Frames for an id that was opened and has since closed (reset by us, or ended) are ignored: they
 *   were in flight when it closed. Frames for an id never opened are a protocol error.
 * - RESET carries a code and an error code string, never a message (no internals cross the tunnel):
 *   see {@link RESET_CODE}. A RESET whose reason is a code of shared/errors.ts fails the stream with
 *   that SluiceError; any other with a {@link StreamResetError} (`code` ECONNRESET).
 * - A malformed frame, a control message that fails validation, DATA beyond the granted credit or
 *   after END: the mux sends an `error` control message, closes the WebSocket with 4400 and fails
 *   every stream with the SluiceError ERR_TUNNEL_PROTOCOL.
 */
import { EventEmitter } from 'node:events';
import { Duplex } from 'node:stream';
import { WebSocket, type RawData } from 'ws';
import { ERRORS, SluiceError, type ErrorCode } from '../errors.js';
import { encodeControl, parseControl, MAX_CONTROL_BYTES, type ControlMessage, type HelloMessage } from './control.js';
import {
  allocDataFrame,
  decodeFrame,
  encodeFrame,
  DEFAULT_MAX_METADATA,
  FRAME_HEADER_SIZE,
  MAX_RESET_REASON,
  MAX_STREAM_ID,
  MAX_WINDOW,
  type Frame,
  type FrameLimits,
  type OpenMetadata,
} from './frames.js';

/** Options of a {@link TunnelMux}. */
export interface TunnelMuxOptions {
  /** Which end this is: only the client opens streams. */
  role: 'client' | 'server';
  /** Credit per stream in bytes, granted to the peer and assumed from it. Default 256 KiB. */
  window?: number;
  /** Largest DATA payload in bytes; larger writes are split. Default 1 MiB. */
  maxFrame?: number;
  /** Streams open at once; the server refuses more with RESET 4429, the client throws. Default 256. */
  maxStreams?: number;
  /** DATA waits while the WebSocket buffers more than this many bytes. Default 1 MiB. */
  maxBufferedAmount?: number;
  /** Largest OPEN metadata in bytes. Default 4 KiB. */
  maxMetadata?: number;
}

/** The defaults of {@link TunnelMuxOptions}. */
export const MUX_DEFAULTS = {
  window: 256 * 1024,
  maxFrame: 1024 * 1024,
  maxStreams: 256,
  maxBufferedAmount: 1024 * 1024,
  maxMetadata: DEFAULT_MAX_METADATA,
} as const;

/** RESET codes. Codes of shared/errors.ts travel as their WebSocket close code (e.g. 4429). */
export const RESET_CODE = {
  /** The stream was destroyed without an error (e.g. the local client hung up). */
  cancel: 0,
  /** The stream was destroyed with an error that is not a SluiceError; the reason is its `code`, if any. */
  error: 1,
  /** Refused: the tunnel already carries `maxStreams` streams. */
  limit: ERRORS.ERR_TUNNEL_LIMIT.close,
} as const;

/** Counters for live display. */
export interface TunnelMuxStats {
  /** Streams open now. */
  streamsOpen: number;
  /** Streams opened since the tunnel started (including refused ones). */
  streamsOpened: number;
  /** Streams the server refused because `maxStreams` were open. */
  streamsRefused: number;
  /** DATA payload bytes received. */
  bytesIn: number;
  /** DATA payload bytes sent. */
  bytesOut: number;
}

/** Events of a {@link TunnelMux}. */
export interface TunnelMuxEvents {
  /** Server only: the client opened a stream. */
  stream: [stream: TunnelStream, meta: OpenMetadata];
  /** A valid control message arrived. */
  control: [message: ControlMessage];
  /** The tunnel failed (protocol error, socket error); emitted only when someone listens. */
  error: [error: Error];
  /** The WebSocket closed; every stream has been destroyed. */
  close: [code: number, reason: string];
}

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

/** `window`, `maxFrame` and `maxStreams` as the gateway announced them in `hello`. */
export function muxOptionsFromHello(hello: HelloMessage): Pick<TunnelMuxOptions, 'window' | 'maxFrame' | 'maxStreams'> {
  return { window: hello.window, maxFrame: hello.max_frame, maxStreams: hello.max_streams };
}

// compress: false because a negotiated permessage-deflate would otherwise deflate every frame of the data path
const SEND_BINARY = { binary: true, compress: false } as const;
const SEND_TEXT = { binary: false, compress: false } as const;

const ERROR_CODE_PATTERN = /^[A-Z][A-Z0-9_]{0,63}$/;

/** What a stream needs from its mux; kept out of the public API. */
interface StreamLink {
  readonly window: number;
  readonly maxFrame: number;
  readonly waiting: Set<TunnelStream>;
  isClosed(): boolean;
  canSendData(): boolean;
  sendData(frame: Buffer, payloadLength: number): void;
  sendFrame(frame: Frame): void;
  release(stream: TunnelStream): void;
}

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

function protocolError(message: string): SluiceError {
  return new SluiceError('ERR_TUNNEL_PROTOCOL', { message });
}

// the codecs throw only ERR_TUNNEL_PROTOCOL; anything else would be a codec bug, still the peer's input
function asProtocolError(err: unknown): SluiceError {
  return err instanceof SluiceError ? err : new SluiceError('ERR_TUNNEL_PROTOCOL', { cause: err });
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

  /** Created by {@link TunnelMux}; not for direct use. */
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

/** Carries TunnelStreams and control messages over one `ws` WebSocket (client or server side). */
export class TunnelMux extends EventEmitter<TunnelMuxEvents> {
  /** Which end this is. */
  readonly role: 'client' | 'server';

  private readonly ws: WebSocket;
  private readonly options: Required<Omit<TunnelMuxOptions, 'role'>>;
  private readonly limits: FrameLimits;
  private readonly streams = new Map<number, TunnelStream>();
  private readonly waiting = new Set<TunnelStream>();
  private readonly link: StreamLink;
  private nextId = 1;
  private highestId = 0;
  private closed = false;
  private pumping = false;
  /** The socket is corked until the end of this turn of the event loop (see `send`). */
  private corked = false;
  // DATA frames handed to ws whose send callback has not run; each callback is a chance to resume
  private inflight = 0;
  private readonly counters: TunnelMuxStats = { streamsOpen: 0, streamsOpened: 0, streamsRefused: 0, bytesIn: 0, bytesOut: 0 };

  private readonly onMessage = (data: RawData, isBinary: boolean): void => this.receive(data, isBinary);
  private readonly onClose = (code: number, reason: Buffer): void => this.handleClose(code, reason.toString('utf8'));
  private readonly onError = (err: Error): void => {
    if (this.listenerCount('error') > 0) this.emit('error', err);
  };
  private readonly onDataSent = (): void => {
    this.inflight--;
    if (this.waiting.size > 0) this.pump();
  };

  /** Takes over an open WebSocket's messages; the caller keeps ping/pong and authentication. */
  constructor(ws: WebSocket, options: TunnelMuxOptions) {
    super();
    if (ws.readyState !== WebSocket.OPEN) throw new TypeError('TunnelMux needs an open WebSocket');
    this.role = options.role;
    this.options = {
      window: options.window ?? MUX_DEFAULTS.window,
      maxFrame: options.maxFrame ?? MUX_DEFAULTS.maxFrame,
      maxStreams: options.maxStreams ?? MUX_DEFAULTS.maxStreams,
      maxBufferedAmount: options.maxBufferedAmount ?? MUX_DEFAULTS.maxBufferedAmount,
      maxMetadata: options.maxMetadata ?? MUX_DEFAULTS.maxMetadata,
    };
    for (const [name, value] of Object.entries(this.options)) {
      if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer, got ${value}`);
    }
    if (this.options.window > MAX_WINDOW) throw new RangeError(`window must be at most ${MAX_WINDOW}`);
    this.limits = { maxFrame: this.options.maxFrame, maxMetadata: this.options.maxMetadata };
    this.ws = ws;
    ws.binaryType = 'nodebuffer';
    const mux = this;
    this.link = {
      window: this.options.window,
      maxFrame: this.options.maxFrame,
      waiting: this.waiting,
      isClosed: () => mux.closed,
      canSendData: () => mux.canSendData(),
      sendData: (frame, payloadLength) => mux.sendData(frame, payloadLength),
      sendFrame: (frame) => mux.sendFrame(frame),
      release: (stream) => mux.release(stream),
    };
    ws.on('message', this.onMessage);
    ws.on('close', this.onClose);
    ws.on('error', this.onError);
  }

  /** Counters for live display (a snapshot). */
  get stats(): TunnelMuxStats {
    return { ...this.counters, streamsOpen: this.streams.size };
  }

  /** True once the tunnel closed or failed; no stream can be opened any more. */
  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Client only: opens a stream. Throws SluiceError ERR_TUNNEL_LIMIT when `maxStreams` are open or the
   * ids are used up, StreamResetError when the tunnel is closed, RangeError when `meta` is too large.
   */
  openStream(meta: OpenMetadata = {}): TunnelStream {
    if (this.role !== 'client') throw new TypeError('Only the client end of a tunnel opens streams');
    if (this.closed) throw new StreamResetError('The tunnel is closed');
    if (this.streams.size >= this.options.maxStreams) {
      throw new SluiceError('ERR_TUNNEL_LIMIT', { message: `The tunnel already carries ${this.options.maxStreams} streams` });
    }
    if (this.nextId > MAX_STREAM_ID) throw new SluiceError('ERR_TUNNEL_LIMIT', { message: 'The tunnel has used up its stream ids' });
    const streamId = this.nextId;
    const frame = encodeFrame({ type: 'open', streamId, meta });
    if (frame.length - FRAME_HEADER_SIZE > this.options.maxMetadata) {
      throw new RangeError(`Stream metadata exceeds ${this.options.maxMetadata} bytes`);
    }
    this.nextId++;
    const stream = new TunnelStream(this.link, streamId, meta);
    this.streams.set(streamId, stream);
    this.counters.streamsOpened++;
    this.send(frame, SEND_BINARY);
    return stream;
  }

  /** Validates and sends a control message; false when the WebSocket is no longer open. */
  sendControl(message: ControlMessage): boolean {
    const text = encodeControl(message);
    if (this.ws.readyState !== WebSocket.OPEN) return false;
    this.send(text, SEND_TEXT);
    return true;
  }

  /** Destroys every stream and closes the WebSocket with `code` (default 1000) and `reason`. */
  close(code = 1000, reason = ''): void {
    if (!this.closed) this.shutdown(new StreamResetError(`The tunnel was closed (code ${code})`, { closeCode: code }));
    this.ws.close(code, reason);
  }

  private receive(data: RawData, isBinary: boolean): void {
    if (this.closed) return;
    const buf = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
    if (!isBinary) {
      if (buf.length > MAX_CONTROL_BYTES) return this.fail(protocolError(`Control message of ${buf.length} bytes exceeds ${MAX_CONTROL_BYTES}`));
      let message: ControlMessage;
      try {
        message = parseControl(buf);
      } catch (err) {
        return this.fail(asProtocolError(err));
      }
      this.emit('control', message);
      return;
    }
    let frame: Frame;
    try {
      frame = decodeFrame(buf, this.limits);
    } catch (err) {
      return this.fail(asProtocolError(err));
    }
    if (frame.type === 'open') return this.receiveOpen(frame.streamId, frame.meta);
    const stream = this.streams.get(frame.streamId);
    if (stream === undefined) {
      const known = this.role === 'client' ? frame.streamId < this.nextId : frame.streamId <= this.highestId;
      // an id that was open: the frame crossed our RESET or END on the wire
      if (known) return;
      return this.fail(protocolError(`Frame for stream ${frame.streamId}, which was never opened`));
    }
    let failure: SluiceError | undefined;
    switch (frame.type) {
      case 'data':
        this.counters.bytesIn += frame.data.length;
        failure = stream.receiveData(frame.data);
        break;
      case 'end':
        failure = stream.receiveEnd();
        break;
      case 'window':
        failure = stream.receiveWindow(frame.increment);
        break;
      case 'reset':
        stream.receiveReset(frame.code, frame.reason);
        break;
    }
    if (failure) this.fail(failure);
  }

  private receiveOpen(streamId: number, meta: OpenMetadata): void {
    if (this.role === 'client') return this.fail(protocolError(`The gateway opened stream ${streamId}; only the client opens streams`));
    if (streamId <= this.highestId) {
      return this.fail(protocolError(`OPEN of stream ${streamId}, not above the last opened id ${this.highestId}`));
    }
    this.highestId = streamId;
    this.counters.streamsOpened++;
    if (this.streams.size >= this.options.maxStreams) {
      this.counters.streamsRefused++;
      this.sendFrame({ type: 'reset', streamId, code: RESET_CODE.limit, reason: 'ERR_TUNNEL_LIMIT' });
      return;
    }
    const stream = new TunnelStream(this.link, streamId, meta);
    this.streams.set(streamId, stream);
    this.emit('stream', stream, meta);
  }

  private canSendData(): boolean {
    if (this.ws.readyState !== WebSocket.OPEN) return false;
    // with nothing in flight no send callback would come to resume waiting streams, so send anyway
    return this.inflight === 0 || this.ws.bufferedAmount < this.options.maxBufferedAmount;
  }

  private sendData(frame: Buffer, payloadLength: number): void {
    this.inflight++;
    this.counters.bytesOut += payloadLength;
    this.send(frame, SEND_BINARY, this.onDataSent);
  }

  /**
   * The WebSocket messages of one turn of the event loop leave in one write: the socket is corked at the
   * first and uncorked once the turn's I/O callbacks have run. A busy tunnel sends many small frames per
   * turn (DATA, WINDOW, END of many streams, each answered in its own callback); one system call for all
   * of them instead of one each. An idle loop turns at once, so a lone frame is not held back.
   */
  private send(data: Buffer | string, options: typeof SEND_BINARY | typeof SEND_TEXT, cb?: (err?: Error) => void): void {
    const socket = (this.ws as unknown as { _socket?: Duplex })._socket;
    if (!this.corked && socket !== undefined) {
      this.corked = true;
      socket.cork();
      setImmediate(() => {
        this.corked = false;
        socket.uncork();
      });
    }
    this.ws.send(data, options, cb);
  }

  private sendFrame(frame: Frame): void {
    if (this.ws.readyState === WebSocket.OPEN) this.send(encodeFrame(frame), SEND_BINARY);
  }

  // one frame per stream per round, so one busy stream cannot starve the others
  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.waiting.size > 0 && this.canSendData()) {
        const stream = this.waiting.values().next().value as TunnelStream;
        this.waiting.delete(stream);
        stream.flush(1);
      }
    } finally {
      this.pumping = false;
    }
  }

  private release(stream: TunnelStream): void {
    if (this.streams.get(stream.id) === stream) this.streams.delete(stream.id);
    this.waiting.delete(stream);
  }

  private fail(err: SluiceError): void {
    if (this.closed) return;
    if (this.ws.readyState === WebSocket.OPEN) {
      this.send(encodeControl({ type: 'error', code: err.code, message: err.message.slice(0, 4096) }), SEND_TEXT);
    }
    this.shutdown(err);
    this.ws.close(err.closeCode, err.code);
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  private shutdown(err: Error): void {
    this.closed = true;
    this.waiting.clear();
    for (const stream of [...this.streams.values()]) stream.destroy(err);
    this.streams.clear();
  }

  private handleClose(code: number, reason: string): void {
    if (!this.closed) this.shutdown(new StreamResetError(`The tunnel closed (code ${code})`, { closeCode: code }));
    this.ws.off('message', this.onMessage);
    this.ws.off('close', this.onClose);
    this.ws.off('error', this.onError);
    this.emit('close', code, reason);
  }
}
