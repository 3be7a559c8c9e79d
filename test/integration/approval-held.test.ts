import { describe, expect, it, vi } from 'vitest';
import type { HeldExchange, SessionNotice } from '../../server/approval/held-requests.js';
import type { ReviewEvent } from '../../server/approval/review-feed.js';
import { SluiceError } from '../../shared/errors.js';
import { approvalSystemWith } from '../helpers/approval-system.js';
import { person } from '../helpers/principals.js';

const alice = person('alice', ['ml-eng']);
const bob = person('bob', ['ml-leads']);

function setup(record?: (exchange: HeldExchange, event: ReviewEvent) => Promise<void>) {
  const system = approvalSystemWith({ max_held_per_user: 2 }, { record });
  const notices: SessionNotice[] = [];
  system.notices.register('ses_1', (n) => notices.push(n));
  const exchange: HeldExchange = { id: 'req_1', principal: alice, connection: { name: 'llm' }, session: { id: 'ses_1', reason: 'eval' } };
  const hold = (timeoutMs = 60_000, signal?: AbortSignal) =>
    system.held.hold({
      exchange,
      decision: { rule: 'frontier', reviewers: ['ml-leads'], timeoutMs },
      summary: { method: 'POST', path: '/v1/chat/completions', model: 'gpt-5', size: 42 },
      signal,
    });
  /** The id of the review the next hold creates, once it exists. */
  const nextReview = () =>
    new Promise<string>((resolve) => {
      const off = system.store.feed.subscribe((e) => {
        if (e.type === 'review.created') {
          off();
          resolve(e.review.id);
        }
      });
    });
  return { system, notices, hold, nextReview };
}

async function refusal(p: Promise<unknown>): Promise<SluiceError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SluiceError);
  return err as SluiceError;
}

describe('held requests', () => {
  it('holds until a reviewer approves, telling the requester\'s tunnel', async () => {
    const { system, notices, hold, nextReview } = setup();
    const created = nextReview();
    const held = hold();
    const id = await created;
    await vi.waitFor(() => expect(system.held.size).toBe(1));
    let released = false;
    void held.then(() => (released = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(released).toBe(false);
    await system.service.approve({ id, principal: bob });
    expect((await held).status).toBe('approved');
    expect(system.held.size).toBe(0);
    expect(notices.map((n) => n.message)).toEqual([
      expect.stringMatching(new RegExp(`^waiting for approval ${id} \\(reviewers: ml-leads\\)`)),
      `${id} approved by bob@example.com; forwarding the request`,
    ]);
  });

  it('refuses with the reviewer\'s reason when rejected', async () => {
    const { system, hold, nextReview } = setup();
    const created = nextReview();
    const held = hold();
    await system.service.reject({ id: await created, principal: bob, reason: 'use gpt-4o-mini' });
    const err = await refusal(held);
    expect(err.code).toBe('ERR_REVIEW_REJECTED');
    expect(err.status).toBe(403);
    expect(err.message).toMatch(/was rejected by bob@example\.com: use gpt-4o-mini$/);
  });

  it('refuses with "review expired" when nobody decides in time', async () => {
    const { system, notices, hold, nextReview } = setup();
    const created = nextReview();
    const err = await refusal(hold(50));
    expect(err.code).toBe('ERR_REVIEW_EXPIRED');
    expect(err.message).toMatch(/^review expired/);
    expect((await system.store.getReview(await created))?.status).toBe('expired');
    expect(notices.at(-1)).toMatchObject({ level: 'warn', code: 'ERR_REVIEW_EXPIRED' });
  });

  it('withdraws the review when the caller goes away', async () => {
    const { system, hold, nextReview } = setup();
    const created = nextReview();
    const gone = new AbortController();
    const held = hold(60_000, gone.signal);
    const id = await created;
    gone.abort();
    expect((await refusal(held)).code).toBe('ERR_REVIEW_ABANDONED');
    expect(await system.store.getReview(id)).toMatchObject({ status: 'abandoned', resolution: 'the caller left' });
    expect(system.held.size).toBe(0);
  });

  it('answers 429 beyond the per-user bound of held requests', async () => {
    const { hold } = setup();
    const first = hold();
    const second = hold();
    const err = await refusal(hold());
    expect(err.code).toBe('ERR_REVIEW_LIMIT');
    expect(err.status).toBe(429);
    void first.catch(() => undefined);
    void second.catch(() => undefined);
  });

  it('refuses (fail closed) when the review event cannot be recorded', async () => {
    const { system, hold, nextReview } = setup(async (_x, event) => {
      if (event.type === 'review.approved') throw new SluiceError('ERR_INTERNAL', { message: 'disk full' });
    });
    const created = nextReview();
    const held = hold();
    await system.service.approve({ id: await created, principal: bob });
    expect((await refusal(held)).message).toBe('disk full');
  });
});
