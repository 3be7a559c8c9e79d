import { once } from 'node:events';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { SluiceError } from '../shared/errors.js';
import { urlHost, type ListenAddress } from './listen-address.js';

/** Why a bind fails, in words an operator acts on; keyed by the errno code. */
const REASONS: Readonly<Record<string, string>> = {
  EADDRINUSE: 'address in use: stop what holds it, or choose another address with --listen',
  EACCES: 'permission denied: ports below 1024 need privileges; choose a higher port with --listen',
  EADDRNOTAVAIL: 'no such address on this machine: choose one of its addresses with --listen',
  ENOTFOUND: 'the host name does not resolve: use an IP address or a resolvable name',
};

/** A failed bind as ERR_LISTEN_FAILED naming the address and the reason (the errno code kept in the message). */
export function listenFailure(address: ListenAddress, err: unknown): SluiceError {
  const code = (err as NodeJS.ErrnoException)?.code;
  const reason = (code !== undefined && REASONS[code]) || (err as Error)?.message || String(err);
  return new SluiceError('ERR_LISTEN_FAILED', {
    message: `Cannot listen on ${urlHost(address)}: ${reason}${code === undefined ? '' : ` (${code})`}`,
    details: { listen: urlHost(address), ...(code === undefined ? {} : { errno: code }) },
    cause: err,
  });
}

/**
 * Starts `server` (any net, http or http2 server) listening on `address` and waits until it does; a failed
 * bind is ERR_LISTEN_FAILED. Resolves with the port it listens on (the one chosen, for port 0).
 */
export async function listenOn(server: Server, address: ListenAddress): Promise<number> {
  server.listen({ host: address.host, port: address.port });
  try {
    await Promise.race([once(server, 'listening'), once(server, 'error').then(([err]) => Promise.reject(err))]);
  } catch (err) {
    throw listenFailure(address, err);
  }
  return (server.address() as AddressInfo).port;
}

/**
 * Binds the address for a moment and lets it go, so a start that would fail to listen fails before it
 * writes anything (keys, a data directory). Nothing ever connects to the probe, so the port is free
 * again at once (no TIME_WAIT); a race with another process can still make the real listen fail, which
 * reports the same error.
 */
export async function probeListen(address: ListenAddress): Promise<void> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(listenFailure(address, err)));
    server.listen({ host: address.host, port: address.port, exclusive: true }, () => resolve());
  });
  await new Promise<void>((resolve) => server.close(() => resolve()));
}
