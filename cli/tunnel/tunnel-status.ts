import type { Output } from '../output.js';
import type { OpenTunnel } from './open-tunnel.js';
import type { TunnelEvent } from './tunnel-client.js';

/** Human-readable byte count. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

/** One line describing a tunnel event; JSON when `json`. */
export function describeEvent(event: TunnelEvent, json: boolean): string {
  if (json) {
    if (event.kind === 'connected') return JSON.stringify({ event: 'connected', session_id: event.hello.session_id, reconnect: event.reconnect });
    return JSON.stringify({ event: event.kind, ...event, kind: undefined });
  }
  switch (event.kind) {
    case 'connected':
      return `tunnel ${event.reconnect ? 're' : ''}connected (session ${event.hello.session_id})`;
    case 'disconnected':
      return `tunnel dropped (${event.reason || `code ${event.code}`}); reconnecting in ${(event.retryInMs / 1000).toFixed(1)} s — the local port stays open`;
    case 'notice':
      return `${event.level === 'warn' ? 'warning' : 'notice'}: ${event.message}`;
    case 'reauthenticated':
      return `login renewed; the tunnel stays open until ${new Date(event.expiresAt * 1000).toISOString()}`;
  }
}

/** The live counts: connections, requests (http connections), bytes each way. */
export function liveLine(tunnel: Pick<OpenTunnel, 'client' | 'listener' | 'hello'>): string {
  const s = tunnel.client.stats;
  const c = tunnel.listener.connections;
  const x = tunnel.client.exchangeStats;
  const requests = tunnel.hello.connection.type === 'http' ? ` · requests ${x.requests}${x.errors > 0 ? ` (${x.errors} failed)` : ''}` : '';
  return `${tunnel.client.session ? '●' : '○'} connections ${c.open} open / ${c.total} total${requests} · sent ${formatBytes(s.bytesOut)} · received ${formatBytes(s.bytesIn)}`;
}

/**
 * Report tunnel events as lines, and on a TTY keep a live counter line (connections, bytes) on stderr.
 * Returns a function that stops the live line.
 */
export function reportTunnel(out: Output, tunnel: OpenTunnel, json: boolean): () => void {
  const live = !json && out.stderr.isTTY === true;
  let drawn = false;
  const clear = () => {
    if (drawn) out.stderr.write('\r\x1b[2K');
    drawn = false;
  };
  const draw = () => {
    out.stderr.write(`\r\x1b[2K${liveLine(tunnel)}`);
    drawn = true;
  };
  tunnel.client.on('event', (event) => {
    if (event.kind === 'connected' && !event.reconnect) return;
    clear();
    (json ? out.stdout : out.stderr).write(`${describeEvent(event, json)}\n`);
    if (live) draw();
  });
  if (!live) return () => undefined;
  draw();
  const timer = setInterval(draw, 1000);
  timer.unref();
  return () => {
    clearInterval(timer);
    clear();
  };
}
