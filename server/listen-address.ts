import { isIP } from 'node:net';
import { SluiceError } from '../shared/errors.js';

export interface ListenAddress {
  host: string;
  port: number;
}

/** Parse `host:port` or `[v6]:port`. */
export function parseListen(text: string): ListenAddress {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new SluiceError('ERR_USAGE', { message: `Invalid listen address "${text}": expected host:port` });
  return { host: (m[1] ?? m[2])!, port };
}

/** True for addresses only this machine can reach. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  if (isIP(host) === 6) return host === '::1' || host === '0:0:0:0:0:0:0:1';
  return false;
}

/** URL host part for an address (brackets around IPv6). */
export function urlHost({ host, port }: ListenAddress): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}
