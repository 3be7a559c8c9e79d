import type { Duplex } from 'node:stream';
import type { FastifyBaseLogger } from 'fastify';
import type { WebSocket } from 'ws';
import { SluiceError, toSluiceError } from '../../shared/errors.js';
import type { TimedCall } from '../../shared/timers.js';
import { encodeControl, type ControlMessage } from '../../shared/tunnel/control.js';
import { TUNNEL_PROTOCOL_VERSION } from '../../shared/tunnel/frames.js';
import { TunnelMux } from '../../shared/tunnel/mux.js';
import { systemClock, type Clock } from '../clock.js';
import type { Config, ConnectionConfig } from '../config/schema.js';
import { parseDuration } from '../config/duration.js';
import { inAnyGroup, type Principal } from '../identity/principal.js';
import type { TokenVerifier } from '../identity/token-verifier.js';
import type { SessionRef } from '../pipeline/exchange.js';
import { discardSessionRecorder } from '../pipeline/recorder.js';
import type { ConnectionProtocols } from '../protocols/connection-types.js';
import type { Recording } from '../recording/recording.js';

/**
 * Emitted on a tunnel's WebSocket (`ws.emit`) when the gateway drains: the tunnel sends the CLI a `drain`
 * notice. An event on the socket rather than a registry of tunnels: whoever drains holds only the sockets.
 */
export const TUNNEL_DRAIN_EVENT = 'sluice:drain';

export interface GatewayTunnelOptions {
  ws: WebSocket;
  /** The socket `ws` was upgraded on (the request's `req.raw.socket`); the mux batches its writes on it. */
  upgradeSocket: Duplex;
  principal: Principal;
  connection: ConnectionConfig;
  /** The connection as the running configuration has it now (a reload may change or remove it). */
  currentConnection?: () => ConnectionConfig | undefined;
  session: { readonly id: string; readonly reason?: string };
  clientAddress: string;
  tunnel: Config['tunnel'];
  verifier: TokenVerifier;
  /** Each connection type's protocol: the tunnel hands every stream to its connection's. */
  protocols: ConnectionProtocols;
  log: FastifyBaseLogger;
  /** Where the session is recorded; without one nothing is. */
  recording?: Recording;
  /** The CLI's User-Agent (`sluice-cli/VERSION`), for the recording. */
  userAgent?: string;
  /** What the token's expiry is measured against. Default: the system clock. */
  clock?: Clock;
}

/**
 * One `sluice connect`: a WebSocket carrying streams of one connection for one principal. It lives
 * while the caller's token does: a fresh token arrives in band (`reauth`), an expired one closes it.
 */
export class GatewayTunnel {
  readonly mux: TunnelMux;
  private principal: Principal;
  private expiry?: TimedCall;
  private readonly clock: Clock;
  private pingTimer?: NodeJS.Timeout;
  private alive = true;
  private readonly exchanges = { requests: 0, active: 0, errors: 0 };
  private statsTimer?: NodeJS.Timeout;
  private statsSentAt = 0;

  /** Counts the tunnel's HTTP exchanges for the CLI's live display. */
  private readonly onExchange = (phase: 'start' | 'end', status?: number): void => {
    if (phase === 'start') {
      this.exchanges.requests++;
      this.exchanges.active++;
    } else {
      this.exchanges.active--;
      if (status === 0 || (status ?? 0) >= 400) this.exchanges.errors++;
    }
    this.scheduleStats();
  };

  constructor(private readonly options: GatewayTunnelOptions) {
    this.principal = options.principal;
    this.clock = options.clock ?? systemClock;
    const { tunnel } = options;
    this.mux = new TunnelMux(options.ws, {
      role: 'server',
      upgradeSocket: options.upgradeSocket,
      window: tunnel.window,
      maxFrame: tunnel.max_frame,
      maxStreams: tunnel.max_streams,
    });
  }

  get id(): string {
    return this.options.session.id;
  }

  /** Say hello, then accept streams and control messages until the tunnel closes. */
  start(): void {
    const { connection, session, tunnel, ws, log, recording } = this.options;
    // The session's recording exists before the CLI is told it may send anything (hello, below).
    const cliVersion = /sluice-cli\/([\w.+-]+)/.exec(this.options.userAgent ?? '')?.[1];
    const opened = recording?.openSession({
      id: session.id,
      principal: this.principal,
      connection,
      via: 'tunnel',
      reason: session.reason,
      clientAddress: this.options.clientAddress,
      ...(cliVersion === undefined ? {} : { cliVersion }),
    });
    // Found once, while it opens: every exchange of the tunnel records through it.
    const recorded: SessionRef = { ...session, recorder: recording === undefined ? discardSessionRecorder : recording.recorder.forSession(session) };
    this.mux.on('error', (err) => log.info({ session: session.id, err: err.message }, 'tunnel error'));
    this.mux.on('close', (code, reason) => {
      this.stopTimers();
      log.info({ session: session.id, code, reason }, 'tunnel closed');
      this.options.recording?.closeSession(session.id, `tunnel closed (${code}${reason ? ` ${reason}` : ''})`).catch(() => undefined);
    });
    ws.once(TUNNEL_DRAIN_EVENT, () => {
      this.mux.sendControl({ type: 'drain', message: 'The gateway is shutting down; new connections go through a new tunnel' });
    });
    this.mux.on('control', (msg) => {
      // Whatever a client sends, a failure here closes its tunnel, never the gateway.
      this.onControl(msg).catch((err: unknown) => {
        log.warn({ session: session.id, err: (err as Error).message }, 'tunnel control message failed');
        this.mux.close(1011, 'ERR_INTERNAL');
      });
    });
    this.mux.on('stream', (stream) => {
      // A stream reset by the peer or by closing the tunnel fails with an error; the protocols report
      // their own, and a stream refused below must not become an unhandled 'error' in the gateway.
      stream.on('error', () => undefined);
      // The connection as the configuration has it now: a reload that removed the caller's access (or the
      // connection) closes the tunnel at its next stream instead of letting it carry on as admitted.
      const current = this.admittedConnection();
      if (current === undefined) {
        stream.destroy();
        return;
      }
      // The principal as of now: a reauth applies to streams opened after it.
      const context = { principal: this.principal, session: recorded, clientAddress: this.options.clientAddress, connection: current, onExchange: this.onExchange };
      this.options.protocols.protocolFor(current.type).handle(stream, context);
    });
    ws.on('pong', () => (this.alive = true));
    const pingMs = parseDuration(tunnel.ping_interval);
    this.pingTimer = setInterval(() => {
      if (!this.alive) {
        log.info({ session: session.id }, 'tunnel missed a keepalive pong; closing');
        ws.terminate();
        return;
      }
      this.alive = false;
      ws.ping();
    }, pingMs);
    this.pingTimer.unref();
    if (opened === undefined) {
      this.hello();
      return;
    }
    opened.then(
      () => {
        if (!this.mux.isClosed) this.hello();
      },
      (err: unknown) => this.fail(toSluiceError(err)),
    );
  }

  private hello(): void {
    const { connection, session, tunnel } = this.options;
    this.send({
      type: 'hello',
      version: TUNNEL_PROTOCOL_VERSION,
      session_id: session.id,
      connection: { name: connection.name, type: connection.type },
      window: tunnel.window,
      max_frame: tunnel.max_frame,
      max_streams: tunnel.max_streams,
    });
    this.armExpiry();
  }

  /** The connection if this tunnel's principal may still use it as configured now; otherwise fails the tunnel. */
  private admittedConnection(): ConnectionConfig | undefined {
    const current = this.options.currentConnection ? this.options.currentConnection() : this.options.connection;
    if (current === undefined || current.type !== this.options.connection.type) {
      this.fail(new SluiceError('ERR_CONNECTION_UNKNOWN', { message: `Connection "${this.options.connection.name}" is no longer configured` }));
      return undefined;
    }
    if (!inAnyGroup(this.principal, current.allow_groups)) {
      this.fail(new SluiceError('ERR_CONNECTION_FORBIDDEN', { message: `You are no longer allowed to use connection "${current.name}"` }));
      return undefined;
    }
    return current;
  }

  /** Tell the CLI why, then close with the error's close code. */
  fail(error: SluiceError): void {
    if (this.mux.isClosed) return;
    // A control message carries at most 4096 characters; the reason may quote remote input.
    this.send({ type: 'error', code: error.code, message: error.message.slice(0, 1000) });
    this.mux.close(error.closeCode, error.code);
  }

  private send(msg: ControlMessage): void {
    this.mux.sendControl(msg);
  }

  private async onControl(msg: ControlMessage): Promise<void> {
    if (msg.type !== 'reauth') {
      this.fail(new SluiceError('ERR_TUNNEL_PROTOCOL', { message: `The gateway does not accept "${msg.type}" from a client` }));
      return;
    }
    let next: Principal;
    try {
      next = await this.options.verifier.verify(msg.token);
    } catch (err) {
      this.fail(toSluiceError(err));
      return;
    }
    if (next.sub !== this.principal.sub || next.issuer !== this.principal.issuer) {
      this.fail(new SluiceError('ERR_FORBIDDEN', { message: 'A tunnel can only be re-authenticated by the same subject' }));
      return;
    }
    const current = this.options.currentConnection ? this.options.currentConnection() : this.options.connection;
    if (current === undefined || !inAnyGroup(next, current.allow_groups)) {
      this.fail(new SluiceError('ERR_CONNECTION_FORBIDDEN', { message: `You are no longer allowed to use connection "${this.options.connection.name}"` }));
      return;
    }
    this.principal = next;
    this.armExpiry();
    this.send({ type: 'reauth_ok', expires_at: next.expiresAt });
  }

  private armExpiry(): void {
    this.expiry?.cancel();
    this.expiry = this.clock.at(this.principal.expiresAt * 1000, () =>
      this.fail(new SluiceError('ERR_TOKEN_EXPIRED', { message: 'The token of this tunnel expired; reconnect with a fresh login' })),
    );
  }

  /** At most one `stats` message a second: the counts as they are when it leaves. */
  private scheduleStats(): void {
    if (this.statsTimer !== undefined || this.mux.isClosed) return;
    const wait = Math.max(0, this.statsSentAt + 1000 - Date.now());
    this.statsTimer = setTimeout(() => {
      this.statsTimer = undefined;
      this.statsSentAt = Date.now();
      this.send({ type: 'stats', ...this.exchanges });
    }, wait);
    this.statsTimer.unref();
  }

  private stopTimers(): void {
    clearTimeout(this.statsTimer);
    this.expiry?.cancel();
    clearInterval(this.pingTimer);
  }
}
