/**
 * The rules of reviewing (who may decide and see what) on top of the store; what the store itself
 * promises (limits, min_approvals, grants, races) is in the conformance suite (test/helpers/store-conformance*.ts).
 */
import { describe, expect, it, onTestFinished } from 'vitest';
import { createApprovalService, type ApprovalService, type RequestReviewInput } from '../../server/approval/approval-service.js';
import type { ReviewEvent } from '../../server/approval/review-feed.js';
import type { Principal } from '../../server/identity/principal.js';
import { SqliteStore } from '../../server/store/sqlite-store.js';
import type { SluiceError } from '../../shared/errors.js';
import { heldCallReview } from '../helpers/approval-system.js';
import { person } from '../helpers/principals.js';
import { codeOf } from '../helpers/store-conformance-reviews.js';

const alice = person('alice', ['ml-eng']);
const bob = person('bob', ['ml-leads']);
const erin = person('erin', ['ml-leads']);
const carol = person('carol', ['security'], ['auditor']);
const dave = person('dave', ['interns']);

interface Setup {
  store: SqliteStore;
  service: ApprovalService;
  events: ReviewEvent[];
  notified: ReviewEvent[];
  now: { t: number };
}

function setup(limits = { perUser: 3, total: 5 }): Setup {
  const store = new SqliteStore({ file: ':memory:' });
  onTestFinished(() => store.close());
  const now = { t: 1_700_000_000_000 };
  const events: ReviewEvent[] = [];
  const notified: ReviewEvent[] = [];
  store.feed.subscribe((e) => events.push(e));
  const service = createApprovalService({ store, limits: () => limits, notify: (e) => notified.push(e), clock: () => now.t });
  return { store, service, events, notified, now };
}

function held(service: ApprovalService, who: Principal = alice, over: Partial<RequestReviewInput> = {}) {
  return service.openRequestReview(heldCallReview(who, over));
}

describe('the rules of reviewing', () => {
  it('opens a review of the requester\'s call, announced on the feed and to webhooks', async () => {
    const s = setup();
    const review = await held(s.service);
    expect(review.id).toMatch(/^r_[0-9a-f]{24}$/);
    expect(review).toMatchObject({ status: 'pending', kind: 'request', requester: { sub: 'alice' }, expiresAt: s.now.t + 600_000 });
    expect(await s.store.getReview(review.id)).toEqual(review);
    expect(s.events.map((e) => e.type)).toEqual(['review.created']);
    expect(s.notified.map((e) => e.type)).toEqual(['review.created']);
  });

  it('lets a reviewer of the rule\'s groups approve, but never the requester or someone outside the groups', async () => {
    const s = setup();
    const review = await held(s.service);
    expect(await codeOf(s.service.approve({ id: review.id, principal: alice }))).toBe('ERR_SELF_APPROVAL');
    expect(await codeOf(s.service.approve({ id: review.id, principal: carol }))).toBe('ERR_NOT_REVIEWER');
    expect(await codeOf(s.service.reject({ id: review.id, principal: carol }))).toBe('ERR_NOT_REVIEWER');
    // Someone who may not even see the review learns nothing about it.
    expect(await codeOf(s.service.approve({ id: review.id, principal: dave }))).toBe('ERR_NOT_FOUND');
    const { review: approved } = await s.service.approve({ id: review.id, principal: bob, reason: 'fine' });
    expect(approved).toMatchObject({ status: 'approved', resolvedBy: { sub: 'bob' }, approvals: [{ sub: 'bob', reason: 'fine' }] });
    expect(s.events.map((e) => e.type)).toEqual(['review.created', 'review.approved']);
    expect(await codeOf(s.service.reject({ id: review.id, principal: erin }))).toBe('ERR_REVIEW_CONFLICT');
  });

  it('records the rejecting reviewer and reason', async () => {
    const s = setup();
    const review = await held(s.service);
    const rejected = await s.service.reject({ id: review.id, principal: bob, reason: 'use the small model' });
    expect(rejected).toMatchObject({ status: 'rejected', resolvedBy: { sub: 'bob' }, resolution: 'use the small model' });
    expect(s.notified.at(-1)).toMatchObject({ type: 'review.rejected', actor: { sub: 'bob' } });
    expect(await codeOf(s.service.approve({ id: review.id, principal: erin }))).toBe('ERR_REVIEW_CONFLICT');
  });

  it('refuses decisions past the expiry and marks the review expired', async () => {
    const s = setup();
    const review = await held(s.service);
    s.now.t += 600_001;
    expect(await codeOf(s.service.approve({ id: review.id, principal: bob }))).toBe('ERR_REVIEW_EXPIRED');
    expect((await s.store.getReview(review.id))?.status).toBe('expired');
    expect(s.events.map((e) => e.type)).toEqual(['review.created', 'review.expired']);
    expect(s.notified.map((e) => e.type)).toEqual(['review.created', 'review.expired']);
    const other = await held(s.service);
    s.now.t += 600_001;
    expect(await codeOf(s.service.reject({ id: other.id, principal: bob }))).toBe('ERR_REVIEW_EXPIRED');
    expect((await s.store.getReview(other.id))?.status).toBe('expired');
  });

  it('announces an expiry once: later decisions on the expired review are refused without announcing it again', async () => {
    const s = setup();
    const review = await held(s.service);
    s.now.t += 600_001;
    expect(await codeOf(s.service.approve({ id: review.id, principal: bob }))).toBe('ERR_REVIEW_EXPIRED');
    expect(await codeOf(s.service.approve({ id: review.id, principal: erin }))).toBe('ERR_REVIEW_EXPIRED');
    expect(await codeOf(s.service.reject({ id: review.id, principal: bob }))).toBe('ERR_REVIEW_EXPIRED');
    expect((await s.service.awaitDecision(bob, review.id, 0)).status).toBe('expired');
    expect(s.events.map((e) => e.type)).toEqual(['review.created', 'review.expired']);
    expect(s.notified.map((e) => e.type)).toEqual(['review.created', 'review.expired']);
  });

  it('hands the grant an approval created to the approver', async () => {
    const s = setup();
    const request = await s.service.requestGrant({ principal: alice, connection: 'prod-db', durationMs: 2 * 3_600_000, reason: 'incident 7', reviewers: ['ml-leads'], minApprovals: 1, timeoutMs: 3_600_000 });
    expect(request).toMatchObject({ kind: 'grant', rule: 'grant', summary: { durationMs: 7_200_000 } });
    const { grant } = await s.service.approve({ id: request.id, principal: bob });
    expect(grant).toMatchObject({ sub: 'alice', connection: 'prod-db', reviewId: request.id, approvedBy: ['bob'], expiresAt: s.now.t + 7_200_000 });
    expect(s.notified.map((e) => e.type)).toEqual(['review.created', 'review.approved']);
  });

  it('shows reviews to requesters, reviewers, admins and auditors only', async () => {
    const s = setup();
    const review = await held(s.service);
    expect((await s.service.list(alice)).map((r) => r.id)).toEqual([review.id]);
    expect((await s.service.list(bob)).map((r) => r.id)).toEqual([review.id]);
    expect((await s.service.list(carol)).map((r) => r.id)).toEqual([review.id]);
    expect(await s.service.list(dave)).toEqual([]);
    expect(await codeOf(s.service.get(dave, review.id))).toBe('ERR_NOT_FOUND');
  });

  it('decides a race between two reviewers once: one wins, the other gets ERR_REVIEW_CONFLICT', async () => {
    const s = setup();
    const review = await held(s.service);
    const results = await Promise.allSettled([s.service.approve({ id: review.id, principal: bob }), s.service.reject({ id: review.id, principal: erin })]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const failed = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect((failed.reason as SluiceError).code).toBe('ERR_REVIEW_CONFLICT');
    expect(s.events.filter((e) => e.type !== 'review.created')).toHaveLength(1);
  });
});
