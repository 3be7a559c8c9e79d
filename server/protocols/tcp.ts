import { connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { pipeline, Transform } from 'node:stream';
import { SluiceError, toSluiceError } from '../../shared/errors.js';
import type { TcpConnectionConfig } from '../config/schema.js';
import { parseDuration } from '../config/duration.js';
import { checkAccess } from '../pipeline/access.js';
import { newRequestId, type Exchange } from '../pipeline/exchange.js';
import { allowAllPolicy, type PolicyStage } from '../pipeline/policy-stage.js';
import { discardRecorder, type Recorder } from '../pipeline/recorder.js';
import type { StreamContext } from './stream-context.js';

/** What the TCP protocol needs; the recorder defaults to one that keeps nothing. */
export interface TcpProtocolOptions {
  readonly recorder?: Recorder;
  /** Rules over identity, connection and session; a TCP stream has no request body to show them. */
  readonly policy?: PolicyStage;
}

/** Context of a stream that carries opaque TCP bytes. */
export type TcpStreamContext = StreamContext<TcpConnectionConfig>;

/** Carries opaque bytes between tunnel streams and TCP upstreams. */
export interface TcpProtocol {
  /** Connects `stream` to the connection's upstream; errors on either side reset both. */
  handle(stream: Duplex, context: TcpStreamContext): void;
  /** Destroys every open pair of streams. */
  close(): Promise<void>;
}

function ignore(): void {}

/** Resets a stream: a TCP RST for sockets (the peer must not mistake it for a clean end), an error-destroy otherwise. */
function reset(stream: Duplex, err: Error): void {
  if (stream.destroyed) return;
  const socket = stream as Partial<Socket>;
  if (typeof socket.resetAndDestroy === 'function' && (socket as Socket).readyState !== 'opening') socket.resetAndDestroy();
  else stream.destroy(err);
}

/** Splits `tcp://host:port` into what `net.connect` takes. */
export function tcpTargetOf(upstream: string): { host: string; port: number } {
  const url = new URL(upstream);
  return { host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(url.port) };
}

/**
 * Creates the TCP protocol. One stream is one exchange of method CONNECT: recorded before connecting,
 * its bytes each way through the recorder's tap (a chunk that cannot be recorded resets the stream),
 * and at the end with byte counts.
 */
export function createTcpProtocol(options: TcpProtocolOptions = {}): TcpProtocol {
  const recorder = options.recorder ?? discardRecorder;
  const policy = options.policy ?? allowAllPolicy;
  const open = new Set<Duplex>();
  let closed = false;

  async function start(stream: Duplex, ctx: TcpStreamContext, exchange: Exchange): Promise<void> {
    checkAccess(exchange);
    const decision = await policy.decide(exchange);
    if (decision.action !== 'allow') {
      await recorder.emit({ type: 'policy.decision', exchange, decision });
      // No reviewer can be asked to hold a raw byte stream: a review rule refuses it, as a deny does.
      throw new SluiceError('ERR_POLICY_DENIED', {
        message:
          decision.action === 'deny'
            ? (decision.reason ?? `Policy "${decision.rule ?? 'default'}" denies connection "${ctx.connection.name}"`)
            : `Policy "${decision.rule}" requires a review, which tcp connection "${ctx.connection.name}" cannot wait for`,
        details: { connection: ctx.connection.name },
      });
    }
    await recorder.emit({ type: 'exchange.request', exchange, decision });
    if (stream.destroyed) {
      // The caller left while the request was recorded: the record still needs its end.
      await recorder.emit({ type: 'exchange.end', exchange, status: 0, complete: false, requestBytes: 0, responseBytes: 0, durationMs: Date.now() - exchange.startedAt });
      return;
    }

    const target = tcpTargetOf(ctx.connection.upstream);
    // Half-close travels both ways: the end of one direction must not end the other.
    const upstream: Socket = connect({ host: target.host, port: target.port, allowHalfOpen: true, noDelay: true });
    open.add(upstream);
    const timer = setTimeout(() => {
      upstream.destroy(
        new SluiceError('ERR_UPSTREAM_TIMEOUT', {
          message: `The upstream of connection "${ctx.connection.name}" did not accept the connection in time`,
          details: { connection: ctx.connection.name },
        }),
      );
    }, parseDuration(ctx.connection.connect_timeout));
    upstream.once('connect', () => clearTimeout(timer));

    let failed = false;
    let finished = false;
    let pending = 2;
    const finish = (): void => {
      if (finished) return;
      finished = true;
      open.delete(upstream);
      if (failed) return;
      recorder
        .emit({
          type: 'exchange.end',
          exchange,
          status: 0,
          complete: true,
          requestBytes: upstream.bytesWritten,
          responseBytes: upstream.bytesRead,
          durationMs: Date.now() - exchange.startedAt,
        })
        .catch(() => undefined);
    };
    const fail = (err: Error): void => {
      if (failed) return;
      failed = true;
      clearTimeout(timer);
      // A failure on either side resets the other; nothing half-delivered may look like a clean close.
      reset(stream, err);
      reset(upstream, err);
      const e =
        err instanceof SluiceError
          ? err
          : new SluiceError('ERR_UPSTREAM_UNAVAILABLE', {
              message: `The stream of connection "${ctx.connection.name}" failed (${err.message})`,
              details: { connection: ctx.connection.name },
              cause: err,
            });
      recorder.emit({ type: 'exchange.error', exchange, code: e.code, message: e.message, afterResponseHead: upstream.bytesRead > 0 }).catch(() => undefined);
      finish();
    };
    // Registered before pipeline()'s own listeners, which would destroy the other side with a clean close first.
    stream.on('error', fail);
    upstream.on('error', fail);
    const done = (err: Error | null | undefined): void => {
      if (err) fail(err);
      else if (--pending === 0) finish();
    };
    const tap = recorder.tap?.(exchange, fail) ?? null;
    if (tap === null) {
      pipeline(stream, upstream, done);
    } else {
      // The caller's bytes go upstream only once the recording holds them.
      const recorded = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          tap.upRecorded(chunk).then(() => callback(null, chunk), callback);
        },
      });
      recorded.on('error', fail);
      pipeline(stream, recorded, upstream, done);
    }
    pipeline(upstream, stream, done);
    // Listening after pipeline() is set up: the extra listener sees the same chunks and changes no flow.
    if (tap !== null) upstream.on('data', (chunk: Buffer) => tap.down(chunk));
  }

  return {
    handle(stream, ctx) {
      if (closed) {
        stream.destroy();
        return;
      }
      open.add(stream);
      stream.once('close', () => open.delete(stream));
      // From here on the protocol owns the stream's failures; they end in reset(), never in an uncaught 'error'.
      stream.on('error', ignore);
      const target = ctx.connection.upstream;
      const exchange: Exchange = {
        id: newRequestId(),
        principal: ctx.principal,
        connection: ctx.connection,
        session: ctx.session,
        clientAddress: ctx.clientAddress,
        via: 'tunnel',
        method: 'CONNECT',
        path: target.slice('tcp://'.length).replace(/\/$/, ''),
        headers: {},
        startedAt: Date.now(),
      };
      start(stream, ctx, exchange).catch((error: unknown) => {
        const err = toSluiceError(error);
        recorder.emit({ type: 'exchange.error', exchange, code: err.code, message: err.message, afterResponseHead: false }).catch(() => undefined);
        reset(stream, err);
      });
    },
    async close() {
      closed = true;
      for (const s of open) s.destroy();
      open.clear();
    },
  };
}
