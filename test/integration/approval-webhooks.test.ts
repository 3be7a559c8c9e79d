import { createHmac } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import type { ApprovalSystem } from '../../server/approval/approval-system.js';
import { approvalSystemWith, heldCallReview } from '../helpers/approval-system.js';
import { person } from '../helpers/principals.js';

interface Delivery {
  headers: IncomingHttpHeaders;
  body: string;
}

/** A real webhook receiver that fails the first `failFirst` deliveries with 500. */
async function startReceiver(failFirst = 0) {
  const deliveries: Delivery[] = [];
  let attempts = 0;
  const waiters: (() => void)[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      attempts++;
      if (attempts <= failFirst) {
        res.writeHead(500).end('not now');
        return;
      }
      deliveries.push({ headers: req.headers, body });
      res.writeHead(204).end();
      for (const w of waiters.splice(0)) w();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  onTestFinished(() => void server.close());
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    deliveries,
    attempts: () => attempts,
    async next(n: number): Promise<void> {
      while (deliveries.length < n) await new Promise<void>((r) => waiters.push(r));
    },
  };
}

const alice = person('alice', ['ml-eng']);
const bob = person('bob', ['ml-leads']);
const SECRET = 'whsec-0123456789abcdef';

function systemWith(webhooks: unknown[]): ApprovalSystem {
  return approvalSystemWith({ webhooks });
}

function openReview(system: ApprovalSystem) {
  return system.service.openRequestReview(heldCallReview(alice, { reason: 'eval run 42' }));
}

describe('review webhooks', () => {
  it('posts each event as JSON signed with HMAC-SHA256 over "<timestamp>.<body>"', async () => {
    const receiver = await startReceiver();
    const system = systemWith([{ url: receiver.url, secret: SECRET }]);
    const review = await openReview(system);
    await system.service.approve({ id: review.id, principal: bob, reason: 'ok' });
    await receiver.next(2);
    const [created, approved] = receiver.deliveries;
    for (const d of [created!, approved!]) {
      const [t, v1] = String(d.headers['x-sluice-signature']).split(',');
      expect(t).toBe(`t=${d.headers['x-sluice-timestamp']}`);
      const expected = createHmac('sha256', SECRET).update(`${d.headers['x-sluice-timestamp']}.${d.body}`).digest('hex');
      expect(v1).toBe(`v1=${expected}`);
      expect(d.headers['content-type']).toBe('application/json');
    }
    expect(created!.headers['x-sluice-event']).toBe('review.created');
    expect(JSON.parse(created!.body)).toMatchObject({
      type: 'review.created',
      review: { id: review.id, status: 'pending', requester: { sub: 'alice', email: 'alice@example.com' }, connection: 'llm', summary: { method: 'POST', path: '/v1/chat/completions', model: 'gpt-5', size: 120 }, reviewers: ['ml-leads'], reason: 'eval run 42' },
      actor: null,
    });
    expect(JSON.parse(approved!.body)).toMatchObject({ type: 'review.approved', review: { id: review.id, status: 'approved' }, actor: { sub: 'bob' } });
  });

  it('retries with backoff until the receiver accepts, without delaying the decision', async () => {
    const receiver = await startReceiver(2);
    const system = systemWith([{ url: receiver.url, secret: SECRET, retry_delay: '20ms', retries: 5, events: ['review.created'] }]);
    const review = await openReview(system);
    // The decision went through while the webhook was still failing.
    expect(review.status).toBe('pending');
    expect(receiver.deliveries).toHaveLength(0);
    await receiver.next(1);
    expect(receiver.attempts()).toBe(3);
    expect(new Set(receiver.deliveries.map((d) => d.headers['x-sluice-delivery'])).size).toBe(1);
  });

  it('never blocks or fails a decision when a webhook cannot be reached at all', async () => {
    const system = systemWith([{ url: 'http://127.0.0.1:9/unreachable', retry_delay: '10ms', retries: 2 }]);
    const review = await openReview(system);
    const { review: approved } = await system.service.approve({ id: review.id, principal: bob });
    expect(approved.status).toBe('approved');
    await system.webhooks.idle();
  });

  it('speaks Slack: a {"text"} body a Slack incoming webhook accepts', async () => {
    const receiver = await startReceiver();
    const system = systemWith([{ url: receiver.url, format: 'slack', events: ['review.created', 'review.rejected'] }]);
    const review = await openReview(system);
    await system.service.reject({ id: review.id, principal: bob, reason: 'use gpt-4o-mini' });
    await receiver.next(2);
    const texts = receiver.deliveries.map((d) => JSON.parse(d.body) as { text: string });
    expect(Object.keys(texts[0]!)).toEqual(['text']);
    expect(texts[0]!.text).toContain(`${review.id}: alice@example.com asks for POST /v1/chat/completions (model gpt-5) on llm`);
    expect(texts[0]!.text).toContain(`sluice review approve ${review.id}`);
    expect(texts[1]!.text).toBe(`${review.id}: rejected by bob@example.com: use gpt-4o-mini`);
    expect(receiver.deliveries[0]!.headers['x-sluice-signature']).toBeUndefined();
  });
});
