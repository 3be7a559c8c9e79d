import { BlockList, isIPv4, isIPv6 } from 'node:net';

/**
 * True when `host` names only this machine's loopback interface (127.0.0.0/8, ::1, localhost). Anything
 * else, the any-addresses 0.0.0.0 and :: included, can be reached from other machines.
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (h === 'localhost') return true;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(h)?.[1];
  const v4 = mapped ?? h;
  if (isIPv4(v4)) return v4.split('.')[0] === '127';
  if (!isIPv6(h)) return false;
  const loopback = new BlockList();
  loopback.addAddress('::1', 'ipv6');
  return loopback.check(h, 'ipv6');
}
