import { once } from 'node:events';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { onTestFinished } from 'vitest';

/** Starts `server` (net or http) listening on 127.0.0.1, on a port the system picks; resolves with that port. */
export async function listenOnLoopback(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

/** A loopback port free a moment ago, for a process the test spawns to listen on (it cannot be told port 0 and report back). */
export async function freePort(): Promise<number> {
  const server = createServer();
  const port = await listenOnLoopback(server);
  server.close();
  await once(server, 'close');
  return port;
}

/** A loopback port held by a listener of the test's until it finishes: what a process told to listen there finds in use. */
export async function portInUse(): Promise<number> {
  const holder = createServer();
  const port = await listenOnLoopback(holder);
  onTestFinished(() => new Promise<void>((resolve) => holder.close(() => resolve())));
  return port;
}
