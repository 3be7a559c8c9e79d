/**
 * The stream multiplexer both ends of a tunnel use: many TunnelStreams (./mux-stream.ts) over one
 * `ws` WebSocket. This file owns what is shared by all streams of a tunnel: the stream table and ids,
 * decoding and routing frames, control messages, the bound on the WebSocket's buffer, the order in
 * which waiting streams send, batching a turn's frames into one write, and closing the tunnel. What
 * one stream does with its frames (credit, half-close, reset) is the stream's.
 *
 * DATA is held back while the WebSocket's own buffer (`bufferedAmount`) is over `maxBufferedAmount`,
 * so many streams with credit cannot fill the socket buffer either; waiting streams then send one
 * frame each in turn, so one busy stream cannot starve the others.
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
 * - A malformed frame, a control message that fails validation, DATA beyond the granted credit or
 *   after END: the mux sends an `error` control message, closes the WebSocket with 4400 and fails
 *   every stream with the SluiceError ERR_TUNNEL_PROTOCOL.
 * - The socket under the WebSocket is corked to batch writes. ws does not expose it, so the owner,
 *   who saw the upgrade, passes it in (`upgradeSocket`): ws's private fields may change in any minor
 *   release.
 */
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { WebSocket, type RawData } from 'ws';
import { SluiceError } from '../errors.js';
import { encodeControl, parseControl, MAX_CONTROL_BYTES, type ControlMessage, type HelloMessage } from './control.js';
import {
  decodeFrame,
  encodeFrame,
  DEFAULT_MAX_METADATA,
  FRAME_HEADER_SIZE,
  MAX_STREAM_ID,
  MAX_WINDOW,
  type Frame,
  type FrameLimits,
  type OpenMetadata,
} from './frames.js';
import { protocolError, RESET_CODE, StreamResetError, TunnelStream, type StreamLink } from './mux-stream.js';

/** Options of a {@link TunnelMux}. */
export interface TunnelMuxOptions {
  /** Which end this is: only the client opens streams. */
  role: 'client' | 'server';
  /**
   * The socket the WebSocket was upgraded on and runs on: on the gateway the upgrade request's
   * `req.socket`, on the client the `upgrade` response's `res.socket`. Corked for one turn of the event
   * loop so the turn's frames leave in one write. Without it each frame is a write of its own (correct,
   * but a system call each).
   */
  upgradeSocket?: Duplex;
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

/** `window`, `maxFrame` and `maxStreams` as the gateway announced them in `hello`. */
export function muxOptionsFromHello(hello: HelloMessage): Pick<TunnelMuxOptions, 'window' | 'maxFrame' | 'maxStreams'> {
  return { window: hello.window, maxFrame: hello.max_frame, maxStreams: hello.max_streams };
}

// compress: false because a negotiated permessage-deflate would otherwise deflate every frame of the data path
const SEND_BINARY = { binary: true, compress: false } as const;
const SEND_TEXT = { binary: false, compress: false } as const;

// the codecs throw only ERR_TUNNEL_PROTOCOL; anything else would be a codec bug, still the peer's input
function asProtocolError(err: unknown): SluiceError {
  return err instanceof SluiceError ? err : new SluiceError('ERR_TUNNEL_PROTOCOL', { cause: err });
}

/** Carries TunnelStreams and control messages over one `ws` WebSocket (client or server side). */
export class TunnelMux extends EventEmitter<TunnelMuxEvents> {
  /** Which end this is. */
  readonly role: 'client' | 'server';

  private readonly ws: WebSocket;
  private readonly upgradeSocket: Duplex | undefined;
  private readonly options: Required<Omit<TunnelMuxOptions, 'role' | 'upgradeSocket'>>;
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
    this.upgradeSocket = options.upgradeSocket;
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
    const socket = this.upgradeSocket;
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
