import { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import WebSocket from 'ws';
import { ERRORS, SluiceError, type ErrorCode } from '../../shared/errors.js';
import { MAX_CONTROL_BYTES, parseControl, type HelloMessage } from '../../shared/tunnel/control.js';
import { FRAME_HEADER_SIZE } from '../../shared/tunnel/frames.js';
import { TunnelMux, muxOptionsFromHello, type TunnelMuxStats } from '../../shared/tunnel/mux.js';
import type { TunnelStream } from '../../shared/tunnel/mux-stream.js';
import type { OpenMetadata } from '../../shared/tunnel/frames.js';

/** A bearer token and when it expires (seconds since the epoch), from the login store or `SLUICE_TOKEN`. */
export interface TunnelToken {
  token: string;
  expiresAt?: number;
}

export interface TunnelClientOptions {
  gateway: string;
  connection: string;
  reason?: string;
  /** A usable token; `fresh` asks for one refreshed even if the current one is still valid. */
  getToken(fresh: boolean): Promise<TunnelToken>;
  /** Re-authenticate this many seconds before the token expires. Default 60. */
  reauthBeforeSeconds?: number;
  /** First reconnect delay; doubles up to `maxBackoffMs`. Defaults 250 ms and 15 s. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** How long a local connection waits for the tunnel to come back. Default 30 s. */
  pendingTimeoutMs?: number;
  /** Client-side keepalive ping. Default 30 s. */
  pingIntervalMs?: number;
  userAgent?: string;
}

export type TunnelEvent =
  | { kind: 'connected'; hello: HelloMessage; reconnect: boolean }
  | { kind: 'disconnected'; code: number; reason: string; retryInMs: number }
  | { kind: 'notice'; level: 'info' | 'warn'; message: string; code?: string }
  | { kind: 'reauthenticated'; expiresAt: number };

interface TunnelClientEvents {
  event: [TunnelEvent];
  /** The tunnel cannot continue (refused, or its login cannot be renewed); the client stopped. */
  fatal: [SluiceError];
}

/** How often a drained tunnel is checked for streams still open; it closes when none is. */
const DRAIN_REAP_MS = 100;

/** Close codes after which reconnecting cannot help. */
const FATAL_CLOSE = new Set<number>([ERRORS.ERR_CONNECTION_FORBIDDEN.close, ERRORS.ERR_CONNECTION_UNKNOWN.close, ERRORS.ERR_TUNNEL_PROTOCOL.close]);

/**
 * The CLI end of a tunnel: one WebSocket to `/v1/tunnel`, reconnected with backoff when it drops,
 * re-authenticated in band before the token expires. Local connections ask it for streams.
 */
export class TunnelClient extends EventEmitter<TunnelClientEvents> {
  private mux?: TunnelMux;
  private ws?: WebSocket;
  private hello?: HelloMessage;
  private stopped = false;
  private attempt = 0;
  private reauthTimer?: NodeJS.Timeout;
  private retryTimer?: NodeJS.Timeout;
  private pingTimer?: NodeJS.Timeout;
  private lastError?: SluiceError;
  /** The token the current tunnel was opened or last re-authenticated with. */
  private token?: string;
  /** True while `connect` waits for hello; a close then is its failure, not a drop to recover from. */
  private connecting = false;
  private readonly waiters = new Set<() => void>();
  private readonly totals = { bytesIn: 0, bytesOut: 0, streamsOpened: 0, requests: 0, errors: 0 };
  /** The gateway's latest `stats` for the current tunnel. */
  private exchanges = { requests: 0, active: 0, errors: 0 };

  constructor(private readonly options: TunnelClientOptions) {
    super();
  }

  /** Connect for the first time; rejects with the gateway's error when the tunnel is refused. */
  async start(): Promise<HelloMessage> {
    return this.connect(false);
  }

  /**
   * The hello of the tunnel connected now, whose `session_id` names the recorded session its exchanges
   * go to (each reconnect starts a new one); undefined while disconnected.
   */
  get session(): HelloMessage | undefined {
    return this.mux && !this.mux.isClosed ? this.hello : undefined;
  }

  /** HTTP exchanges the gateway counted over the tunnel's whole life, reconnects included. */
  get exchangeStats(): { requests: number; active: number; errors: number } {
    return {
      requests: this.totals.requests + this.exchanges.requests,
      active: this.mux && !this.mux.isClosed ? this.exchanges.active : 0,
      errors: this.totals.errors + this.exchanges.errors,
    };
  }

  /** Counters over the tunnel's whole life, reconnects included. */
  get stats(): TunnelMuxStats {
    const live = this.mux?.stats;
    return {
      streamsOpen: live && !this.mux!.isClosed ? live.streamsOpen : 0,
      streamsOpened: this.totals.streamsOpened + (live?.streamsOpened ?? 0),
      streamsRefused: live?.streamsRefused ?? 0,
      bytesIn: this.totals.bytesIn + (live?.bytesIn ?? 0),
      bytesOut: this.totals.bytesOut + (live?.bytesOut ?? 0),
    };
  }

  /** A new stream, waiting (bounded) for the tunnel to come back if it is reconnecting. */
  async openStream(meta: OpenMetadata): Promise<TunnelStream> {
    const deadline = Date.now() + (this.options.pendingTimeoutMs ?? 30_000);
    while (!this.stopped) {
      if (this.mux && !this.mux.isClosed) return this.mux.openStream(meta);
      const left = deadline - Date.now();
      if (left <= 0) break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, left);
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.waiters.add(done);
      });
    }
    throw this.lastError ?? new SluiceError('ERR_GATEWAY_UNREACHABLE', { message: 'The tunnel to the gateway is down' });
  }

  /** Close the tunnel for good. */
  close(): void {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.stopTimers();
    this.mux?.close(1000, 'client closed');
    if (!this.mux) this.ws?.terminate();
    this.wake();
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
    this.waiters.clear();
  }

  private stopTimers(): void {
    clearTimeout(this.reauthTimer);
    clearInterval(this.pingTimer);
  }

  private tunnelUrl(): string {
    const url = new URL('/v1/tunnel', this.options.gateway.replace(/^http/, 'ws'));
    url.searchParams.set('connection', this.options.connection);
    if (this.options.reason) url.searchParams.set('reason', this.options.reason);
    return url.toString();
  }

  private async connect(reconnect: boolean): Promise<HelloMessage> {
    const access = await this.options.getToken(false);
    this.token = access.token;
    const ws = new WebSocket(this.tunnelUrl(), {
      headers: { authorization: `Bearer ${access.token}`, 'user-agent': this.options.userAgent ?? 'sluice-cli' },
      perMessageDeflate: false,
      maxPayload: 64 * 1024 * 1024 + FRAME_HEADER_SIZE,
      handshakeTimeout: 15_000,
    });
    this.ws = ws;
    // ws keeps its socket private; the upgrade response carries it, for the mux to batch its writes on
    let upgradeSocket: Socket | undefined;
    ws.once('upgrade', (res) => (upgradeSocket = res.socket));
    this.connecting = true;
    let mux: TunnelMux;
    let hello: HelloMessage;
    try {
      [hello, mux] = await new Promise<[HelloMessage, TunnelMux]>((resolve, reject) => {
        let refused = false;
        ws.once('unexpected-response', (_req, res) => {
          // The refusal's body carries the gateway's error code; terminating first would lose it.
          refused = true;
          refusal(res)
            .then(reject, reject)
            .finally(() => ws.terminate());
        });
        ws.once('error', (err) => {
          if (refused) return;
          reject(new SluiceError('ERR_GATEWAY_UNREACHABLE', { message: `Cannot reach the gateway at ${this.options.gateway}: ${(err as NodeJS.ErrnoException).code ?? err.message}`, cause: err }));
        });
        ws.once('close', (code, reason) => {
          if (!refused) reject(closeError(code, reason.toString()));
        });
        ws.once('message', (data, isBinary) => {
          try {
            if (isBinary) throw new SluiceError('ERR_TUNNEL_PROTOCOL', { message: 'The gateway sent data before hello' });
            const text = data.toString();
            if (text.length > MAX_CONTROL_BYTES) throw new SluiceError('ERR_TUNNEL_PROTOCOL', { message: 'hello is too large' });
            const msg = parseControl(text);
            if (msg.type === 'error') throw closeError(4000, msg.code, msg.message);
            if (msg.type !== 'hello') throw new SluiceError('ERR_TUNNEL_PROTOCOL', { message: `Expected hello, got ${msg.type}` });
            ws.removeAllListeners('unexpected-response');
            ws.removeAllListeners('error');
            ws.removeAllListeners('close');
            ws.on('error', () => undefined);
            // Built before this handler returns: frames that came in the same read as hello (an error and a
            // close, say) are emitted synchronously after it and must reach the mux, not be lost.
            resolve([msg, this.attach(ws, upgradeSocket, msg)]);
          } catch (err) {
            ws.terminate();
            reject(err);
          }
        });
      });
    } finally {
      this.connecting = false;
    }
    if (mux.isClosed || ws.readyState !== WebSocket.OPEN) {
      // The gateway said hello and closed straight away: report its reason, as a refusal would.
      const error = this.lastError ?? new SluiceError('ERR_GATEWAY_UNREACHABLE', { message: 'The tunnel closed right after it opened' });
      this.mux = undefined;
      ws.terminate();
      throw error;
    }
    this.attempt = 0;
    this.lastError = undefined;
    this.startPing(ws);
    this.scheduleReauth(access.expiresAt);
    this.emit('event', { kind: 'connected', hello, reconnect });
    this.wake();
    return hello;
  }

  /** The mux of a tunnel that said hello, with its control messages and close handled. */
  private attach(ws: WebSocket, upgradeSocket: Socket | undefined, hello: HelloMessage): TunnelMux {
    this.hello = hello;
    const mux = new TunnelMux(ws, { role: 'client', upgradeSocket, ...muxOptionsFromHello(hello) });
    this.mux = mux;
    mux.on('error', () => undefined);
    mux.on('control', (msg) => {
      if (msg.type === 'notice') this.emit('event', { kind: 'notice', level: msg.level, message: msg.message, code: msg.code });
      else if (msg.type === 'error') this.lastError = closeError(4000, msg.code, msg.message);
      else if (msg.type === 'stats') this.exchanges = { requests: msg.requests, active: msg.active, errors: msg.errors };
      else if (msg.type === 'drain') this.onDrain(mux, msg.message);
      else if (msg.type === 'reauth_ok') {
        this.scheduleReauth(msg.expires_at);
        this.emit('event', { kind: 'reauthenticated', expiresAt: msg.expires_at });
      }
    });
    mux.on('close', (code, reason) => this.onClosed(mux, code, reason));
    return mux;
  }

  private startPing(ws: WebSocket): void {
    let alive = true;
    ws.on('pong', () => (alive = true));
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => {
      if (!alive) {
        ws.terminate();
        return;
      }
      alive = false;
      ws.ping();
    }, this.options.pingIntervalMs ?? 30_000);
    this.pingTimer.unref();
  }

  private scheduleReauth(expiresAt: number | undefined): void {
    clearTimeout(this.reauthTimer);
    if (expiresAt === undefined) return;
    const before = this.options.reauthBeforeSeconds ?? 60;
    const ms = Math.max(1000, expiresAt * 1000 - Date.now() - before * 1000);
    this.reauthTimer = setTimeout(() => void this.reauth(), Math.min(ms, 2_147_483_647));
    this.reauthTimer.unref();
  }

  private async reauth(): Promise<void> {
    const mux = this.mux;
    if (!mux || mux.isClosed || this.stopped) return;
    try {
      const fresh = await this.options.getToken(true);
      if (fresh.token === this.token) {
        // A fixed token (SLUICE_TOKEN) cannot be renewed: say so once, and let the gateway close at expiry.
        this.emit('event', {
          kind: 'notice',
          level: 'warn',
          message: 'The login cannot be renewed (a fixed token); the tunnel closes when the token expires',
          code: 'ERR_REFRESH_FAILED',
        });
        return;
      }
      this.token = fresh.token;
      mux.sendControl({ type: 'reauth', token: fresh.token });
    } catch (err) {
      // Without a fresh token the gateway closes the tunnel at expiry; say why now.
      const error = err instanceof SluiceError ? err : new SluiceError('ERR_REFRESH_FAILED', { cause: err });
      this.emit('event', { kind: 'notice', level: 'warn', message: `Could not renew the login: ${error.message}`, code: error.code });
    }
  }

  /**
   * The gateway is shutting down: new streams wait for a tunnel opened now (the load balancer sends it to
   * another replica), while the streams of this one finish on it; it is closed once they have. The local
   * port never closes.
   */
  private onDrain(old: TunnelMux, message: string): void {
    if (this.stopped || this.mux !== old) return;
    this.emit('event', { kind: 'notice', level: 'info', message });
    this.retire(old);
    const reaper = setInterval(() => {
      if (old.isClosed || old.stats.streamsOpen === 0) {
        clearInterval(reaper);
        old.close(1000, 'drained');
      }
    }, DRAIN_REAP_MS);
    reaper.unref();
    // 1001: this tunnel is going away; a failure to open the next one is retried as such.
    this.reconnect(1001);
  }

  /**
   * Stops using `mux` as the current tunnel: its timers stop and its counts move into the totals, so
   * stats stay whole across tunnels whether it drains or closes.
   */
  private retire(mux: TunnelMux): void {
    this.stopTimers();
    const s = mux.stats;
    this.totals.bytesIn += s.bytesIn;
    this.totals.bytesOut += s.bytesOut;
    this.totals.streamsOpened += s.streamsOpened;
    this.totals.requests += this.exchanges.requests;
    this.totals.errors += this.exchanges.errors;
    this.exchanges = { requests: 0, active: 0, errors: 0 };
    this.mux = undefined;
  }

  /**
   * Opens a new tunnel. Refusals by the gateway (auth, access) end the client; network trouble is retried,
   * reported as a close with `retryCode`.
   */
  private reconnect(retryCode: number): void {
    this.connect(true).catch((err: unknown) => {
      const error = err instanceof SluiceError ? err : new SluiceError('ERR_GATEWAY_UNREACHABLE', { cause: err });
      this.lastError = error;
      if (this.stopped) return;
      if (error.status === 401 || error.status === 403 || error.status === 404) this.fatal(error);
      else this.scheduleRetry(retryCode, error.message);
    });
  }

  private onClosed(mux: TunnelMux, code: number, reason: string): void {
    // A tunnel that failed while opening was already reported by connect().
    if (this.mux !== mux) return;
    this.retire(mux);
    if (this.stopped || this.connecting) return;
    const error = this.lastError ?? closeError(code, reason);
    this.lastError = error;
    if (FATAL_CLOSE.has(code)) {
      this.fatal(error);
      return;
    }
    this.scheduleRetry(code, reason);
  }

  private scheduleRetry(code: number, reason: string): void {
    const initial = this.options.initialBackoffMs ?? 250;
    const max = this.options.maxBackoffMs ?? 15_000;
    const base = Math.min(max, initial * 2 ** this.attempt);
    const delay = Math.round(base / 2 + Math.random() * (base / 2));
    this.attempt++;
    this.emit('event', { kind: 'disconnected', code, reason, retryInMs: delay });
    this.retryTimer = setTimeout(() => this.reconnect(1006), delay);
    this.retryTimer.unref();
  }

  private fatal(error: SluiceError): void {
    this.stopped = true;
    this.wake();
    this.emit('fatal', error);
  }
}

/** The gateway's HTTP refusal of the upgrade as a SluiceError with its code. */
async function refusal(res: IncomingMessage): Promise<SluiceError> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res) {
    size += (chunk as Buffer).length;
    if (size > 64 * 1024) break;
    chunks.push(chunk as Buffer);
  }
  let code: string | undefined;
  let message: string | undefined;
  try {
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { error?: { code?: string; message?: string } };
    code = body.error?.code;
    message = body.error?.message;
  } catch {
    // not our JSON: describe by status below
  }
  if (code && code in ERRORS) return new SluiceError(code as ErrorCode, { message, details: { status: res.statusCode } });
  return new SluiceError('ERR_GATEWAY_RESPONSE', { message: `The gateway refused the tunnel with HTTP ${res.statusCode}`, details: { status: res.statusCode } });
}

/** A close code (and the gateway's error code, when it sent one) as a SluiceError. */
function closeError(code: number, reason: string, message?: string): SluiceError {
  if (reason in ERRORS) return new SluiceError(reason as ErrorCode, message ? { message } : {});
  const byClose = (Object.keys(ERRORS) as ErrorCode[]).find((c) => (ERRORS[c] as { close?: number }).close === code);
  if (byClose && code >= 4000) return new SluiceError(byClose);
  return new SluiceError('ERR_GATEWAY_UNREACHABLE', { message: `The tunnel closed (code ${code}${reason ? `: ${reason}` : ''})` });
}
