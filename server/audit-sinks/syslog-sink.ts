import { readFileSync } from 'node:fs';
import { connect as connectTcp, type Socket } from 'node:net';
import { hostname } from 'node:os';
import { connect as connectTls } from 'node:tls';
import { parseDuration } from '../config/duration.js';
import { AuditDeliveryError, type AuditSink } from './audit-sink.js';
import type { AuditSinkConfig } from './audit-sinks-config.js';
import { syslogFrame } from './syslog-frame.js';

type SyslogSinkConfig = Extract<AuditSinkConfig, { type: 'syslog' }>;

/**
 * Syslog over TCP (RFC 6587, octet counting) or TLS (RFC 5425), on one connection kept open between
 * batches and opened again after the receiver drops it. A batch counts as delivered once its frames are
 * written to the socket: syslog has no acknowledgement, so events written just before a receiver drops
 * the connection can be lost (README, "Audit events to a SIEM").
 */
export function createSyslogSink(config: SyslogSinkConfig): AuditSink {
  const timeoutMs = parseDuration(config.timeout);
  // Read at start: a CA file that cannot be read stops the gateway, instead of every delivery failing.
  const ca = config.ca === undefined ? undefined : readFileSync(config.ca);
  const host = hostname();
  let socket: Socket | undefined;

  function open(): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const s = config.tls
        ? connectTls({ host: config.host, port: config.port, servername: config.host, ...(ca === undefined ? {} : { ca }) })
        : connectTcp({ host: config.host, port: config.port });
      const timer = setTimeout(() => s.destroy(new Error('ETIMEDOUT')), timeoutMs);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        reject(new AuditDeliveryError((err as { code?: string }).code ?? err.message, { cause: err }));
      };
      s.once('error', fail);
      s.once(config.tls ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        s.off('error', fail);
        // Later errors end the connection; the next batch opens a new one.
        s.on('error', () => s.destroy());
        s.on('close', () => {
          if (socket === s) socket = undefined;
        });
        // Anything a receiver sends back is ignored: syslog over TCP is one-way.
        s.resume();
        resolve(s);
      });
    });
  }

  return {
    async send(events) {
      if (socket === undefined || socket.destroyed || !socket.writable) socket = await open();
      const s = socket;
      const frames = Buffer.concat(events.map((e) => syslogFrame(e, host, process.pid)));
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          s.destroy();
          reject(new AuditDeliveryError('ETIMEDOUT'));
        }, timeoutMs);
        s.write(frames, (err) => {
          clearTimeout(timer);
          if (err) {
            s.destroy();
            reject(new AuditDeliveryError((err as { code?: string }).code ?? err.message, { cause: err }));
          } else resolve();
        });
      });
    },
    async close() {
      socket?.end();
      socket?.destroy();
      socket = undefined;
    },
  };
}
