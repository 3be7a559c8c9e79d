import type { AuditEvent } from './audit-event.js';

/** Facility 13, "log audit" (RFC 5424 table 1). */
const FACILITY_LOG_AUDIT = 13;
const SEVERITY_WARNING = 4;
const SEVERITY_INFORMATIONAL = 6;

/** What a syslog header field may hold: printable US-ASCII without spaces, `-` when empty (RFC 5424 §6). */
function headerField(value: string, max: number): string {
  const clean = value.replace(/[^\x21-\x7e]/g, '_').slice(0, max);
  return clean === '' ? '-' : clean;
}

/**
 * One event as an RFC 5424 message, framed by octet counting (RFC 6587 §3.4.1: `<length> <message>`):
 * APP-NAME `sluice`, MSGID the event kind, no structured data, the event's JSON as the message.
 * Refusals (identity failures, denied or failed exchanges) are warnings, everything else informational.
 */
export function syslogFrame(event: AuditEvent, host: string, pid: number): Buffer {
  const refused = event.kind === 'identity.failure' || (event.kind === 'exchange' && event.code !== 'none');
  const pri = FACILITY_LOG_AUDIT * 8 + (refused ? SEVERITY_WARNING : SEVERITY_INFORMATIONAL);
  const message = `<${pri}>1 ${new Date(event.at).toISOString()} ${headerField(host, 255)} sluice ${pid} ${headerField(event.kind, 32)} - ${JSON.stringify(event)}`;
  const bytes = Buffer.from(message, 'utf8');
  return Buffer.concat([Buffer.from(`${bytes.length} `, 'ascii'), bytes]);
}
