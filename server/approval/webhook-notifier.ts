import { createHmac, randomUUID } from 'node:crypto';
import { parseDuration } from '../config/duration.js';
import type { WebhookConfig } from './approval-config.js';
import type { ReviewEvent } from './review-feed.js';
import { describeReviewEvent, reviewEventJson } from './review-json.js';

/** Where delivery failures are reported; fastify's logger fits. */
export interface WebhookLog {
  warn(obj: object, msg: string): void;
}

/** Options of {@link createWebhookNotifier}. */
export interface WebhookNotifierOptions {
  /** Read per event, so a reload takes effect. */
  readonly webhooks: () => readonly WebhookConfig[];
  /** Deliveries waiting or retrying at once; beyond it new ones are dropped (and logged). Default 1000. */
  readonly maxPending?: number;
  readonly log?: WebhookLog;
  readonly fetch?: typeof fetch;
}

/** Sends review events to webhooks without ever making anyone wait for them. */
export interface WebhookNotifier {
  /** Queues the event for every webhook that subscribes to its type; returns at once. */
  notify(event: ReviewEvent): void;
  /** Resolves when nothing is being delivered or waiting to be retried (tests, shutdown). */
  idle(): Promise<void>;
  /** Cancels pending retries. */
  close(): Promise<void>;
}

/** The signature header: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, like Stripe's, so replays can be refused. */
export function signWebhook(secret: string, body: string, timestamp: number): string {
  const mac = createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex');
  return `t=${timestamp},v1=${mac}`;
}

/** The body a webhook receives: sluice's event JSON, or `{"text": …}` for Slack incoming webhooks. */
export function webhookBody(format: WebhookConfig['format'], event: ReviewEvent): string {
  if (format === 'slack') return JSON.stringify({ text: describeReviewEvent(event) });
  return JSON.stringify(reviewEventJson(event));
}

/** Creates the notifier; each delivery is retried with doubling delays until it gets a 2xx or runs out of retries. */
export function createWebhookNotifier(options: WebhookNotifierOptions): WebhookNotifier {
  const maxPending = options.maxPending ?? 1000;
  const doFetch = options.fetch ?? fetch;
  const timers = new Set<NodeJS.Timeout>();
  let pending = 0;
  let closed = false;
  let idleWaiters: (() => void)[] = [];

  const settle = (): void => {
    pending--;
    if (pending === 0) {
      const waiters = idleWaiters;
      idleWaiters = [];
      for (const w of waiters) w();
    }
  };

  async function attempt(hook: WebhookConfig, event: ReviewEvent, body: string, delivery: string): Promise<string | undefined> {
    const timestamp = Math.floor(Date.now() / 1000);
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'user-agent': 'sluice-webhook',
      'x-sluice-event': event.type,
      'x-sluice-delivery': delivery,
      'x-sluice-timestamp': String(timestamp),
    };
    if (hook.secret !== undefined) headers['x-sluice-signature'] = signWebhook(hook.secret, body, timestamp);
    try {
      const res = await doFetch(hook.url, { method: 'POST', headers, body, signal: AbortSignal.timeout(parseDuration(hook.timeout)), redirect: 'error' });
      await res.body?.cancel().catch(() => undefined);
      return res.ok ? undefined : `HTTP ${res.status}`;
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause;
      return cause?.code ?? (err as Error).name ?? String(err);
    }
  }

  function deliver(hook: WebhookConfig, event: ReviewEvent): void {
    if (pending >= maxPending) {
      options.log?.warn({ url: redact(hook.url), event: event.type, review: event.review.id }, 'webhook queue full; event dropped');
      return;
    }
    pending++;
    const body = webhookBody(hook.format, event);
    const delivery = randomUUID();
    const baseDelay = parseDuration(hook.retry_delay);
    const run = (n: number): void => {
      attempt(hook, event, body, delivery).then((failure) => {
        if (failure === undefined || closed) return settle();
        if (n >= hook.retries) {
          options.log?.warn({ url: redact(hook.url), event: event.type, review: event.review.id, failure, attempts: n + 1 }, 'webhook delivery failed; giving up');
          return settle();
        }
        const timer = setTimeout(() => {
          timers.delete(timer);
          run(n + 1);
        }, baseDelay * 2 ** n);
        timer.unref();
        timers.add(timer);
      }, settle);
    };
    run(0);
  }

  return {
    notify(event) {
      if (closed) return;
      for (const hook of options.webhooks()) if (hook.events.includes(event.type)) deliver(hook, event);
    },
    idle() {
      return pending === 0 ? Promise.resolve() : new Promise((resolve) => idleWaiters.push(resolve));
    },
    async close() {
      closed = true;
      for (const t of timers) {
        clearTimeout(t);
        settle();
      }
      timers.clear();
    },
  };
}

/** Webhook URLs often carry their secret in the path (Slack's do): log the origin only. */
function redact(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '(invalid url)';
  }
}
