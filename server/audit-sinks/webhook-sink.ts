import { createHash } from 'node:crypto';
import { signWebhook } from '../approval/webhook-notifier.js';
import { parseDuration } from '../config/duration.js';
import type { AuditEvent } from './audit-event.js';
import { AuditDeliveryError, fetchFailure, type AuditSink } from './audit-sink.js';
import type { AuditSinkConfig } from './audit-sinks-config.js';

type WebhookSinkConfig = Extract<AuditSinkConfig, { type: 'webhook' }>;

/**
 * POSTs `{"events": [...]}` to the URL, signed as review webhooks are (`x-sluice-signature`, HMAC-SHA256 of
 * `<t>.<body>`). `x-sluice-delivery` stays the same across retries of one batch, so a receiver can drop
 * a batch it already has; each event's `id` does the same per event.
 */
export function createWebhookSink(config: WebhookSinkConfig, doFetch: typeof fetch = fetch): AuditSink {
  const timeoutMs = parseDuration(config.timeout);
  return {
    async send(events) {
      const body = JSON.stringify({ events });
      const delivery = deliveryId(events);
      const timestamp = Math.floor(Date.now() / 1000);
      const headers: Record<string, string> = {
        'content-type': 'application/json',
        'user-agent': 'sluice-audit',
        'x-sluice-event': 'audit',
        'x-sluice-delivery': delivery,
        'x-sluice-timestamp': String(timestamp),
      };
      if (config.secret !== undefined) headers['x-sluice-signature'] = signWebhook(config.secret, body, timestamp);
      let res: Response;
      try {
        res = await doFetch(config.url, { method: 'POST', headers, body, signal: AbortSignal.timeout(timeoutMs), redirect: 'error' });
      } catch (err) {
        throw new AuditDeliveryError(fetchFailure(err), { cause: err });
      }
      await res.body?.cancel().catch(() => undefined);
      if (!res.ok) throw new AuditDeliveryError(`HTTP ${res.status}`);
    },
    close: () => Promise.resolve(),
  };
}

/** Names a batch by its events, so every retry of it carries the same delivery id. */
function deliveryId(events: readonly AuditEvent[]): string {
  return createHash('sha256').update(events.map((e) => e.id).join(',')).digest('hex').slice(0, 32);
}
