/**
 * Graceful drain (SIGTERM, one process or each worker): stop accepting connections, let the exchanges in
 * flight finish for up to `shutdown_grace`, then close the app (which seals the open sessions and closes the
 * store). A load balancer stops sending here as soon as the listen socket closes; a caller whose answer is
 * streaming gets all of it, unless it outlasts the grace.
 */
import type { FastifyInstance } from 'fastify';
import { TUNNEL_DRAIN_EVENT } from '../tunnel/gateway-tunnel.js';

/** How often keep-alive connections that went idle are closed while draining: they would hold the drain open. */
const IDLE_REAP_MS = 100;

export interface DrainOptions {
  /** The longest the exchanges in flight may take, in milliseconds, before their connections are cut. */
  readonly graceMs: number;
  /** Listeners of their own (the gRPC listener) that stop accepting and let their calls finish alongside. */
  readonly listeners?: readonly { drain(): Promise<void> }[];
}

/** How the drain ended: every connection finished, or the grace ran out and the rest were cut. */
export type DrainOutcome = 'drained' | 'grace_expired';

/** Drains then closes `app`; resolves once it is closed. */
export async function drainAndClose(app: FastifyInstance, options: DrainOptions): Promise<DrainOutcome> {
  const server = app.server;
  let outcome: DrainOutcome = 'drained';
  const listeners = options.listeners ?? [];
  if (server.listening || listeners.length > 0) {
    // No new connection is accepted from here; the callback runs once the last open connection ends.
    const finished = Promise.all([
      server.listening ? new Promise<void>((resolve) => server.close(() => resolve())) : undefined,
      ...listeners.map((l) => l.drain()),
    ]);
    const reaper = setInterval(() => server.closeIdleConnections(), IDLE_REAP_MS);
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        outcome = 'grace_expired';
        resolve();
      }, options.graceMs);
    });
    server.closeIdleConnections();
    // Tunnels are told to reconnect elsewhere; each closes once the streams it carries have ended.
    for (const ws of app.websocketServer?.clients ?? []) ws.emit(TUNNEL_DRAIN_EVENT);
    try {
      await Promise.race([finished, grace]);
    } finally {
      clearInterval(reaper);
      clearTimeout(timer);
    }
  }
  // Fastify's close cuts what is still open (forceCloseConnections), seals sessions and closes the store.
  await app.close();
  return outcome;
}
