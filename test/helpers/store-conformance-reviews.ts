/**
 * The `Store` conformance of reviews, approvals, grants, re-send claims, tunnel slots and the review feed,
 * races included: what the gateway relies on when several requests, reviewers and replicas act at once.
 * Registered by `describeStoreConformance` (store-conformance.ts) inside its own `describe`.
 */
import { describe, expect, it, onTestFinished } from 'vitest';
import type { ReviewEvent } from '../../server/approval/review-feed.js';
import type { NewReview, Review } from '../../server/approval/review.js';
import type { Store } from '../../server/store/store.js';
import { SluiceError } from '../../shared/errors.js';
import type { OpenStores } from './store-conformance.js';

/** When every test's reviews are made. */
export const T0 = 1_700_000_000_000;
const TEN_MINUTES = 600_000;
/** Limits no test reaches unless it means to. */
export const ROOMY = { perUser: 1000, total: 1000 } as const;

let counter = 0;

/** A held request of `alice` on `llm`, pending for ten minutes from T0. */
export function heldRequest(fields: Partial<NewReview> = {}): NewReview {
  counter++;
  return {
    id: `r_${counter.toString(16).padStart(24, '0')}`,
    kind: 'request',
    requester: { sub: 'alice', email: 'alice@example.com', groups: ['ml-eng'] },
    connection: 'llm',
    rule: 'frontier-models-need-review',
    summary: { method: 'POST', path: '/v1/chat/completions', model: 'gpt-5', size: 120 },
    reviewers: ['ml-leads'],
    minApprovals: 1,
    createdAt: T0,
    expiresAt: T0 + TEN_MINUTES,
    sessionId: 'ses_1',
    requestId: `req_${counter}`,
    ...fields,
  };
}

/** An access request of `alice` for two hours of `prod-db`. */
export function accessRequest(fields: Partial<NewReview> = {}): NewReview {
  return heldRequest({ kind: 'grant', rule: 'grant', connection: 'prod-db', reason: 'incident 7', summary: { durationMs: 7_200_000 }, ...fields });
}

/** `sub`'s approval at `at`. */
export function approval(sub: string, at = T0 + 1000, reason?: string) {
  return { sub, email: `${sub}@example.com`, at, ...(reason === undefined ? {} : { reason }) };
}

/** The events the store's feed delivers from now on. */
export function heard(store: Store): ReviewEvent[] {
  const events: ReviewEvent[] = [];
  onTestFinished(store.feed.subscribe((e) => events.push(e)));
  return events;
}

/** Lets a networked backend's announcements arrive before a test counts them. */
export function settle(): Promise<void> {
  return new Promise((r) => setTimeout(r, 20));
}

/** The error code a promise rejects with, or `resolved`. */
export async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return (err as SluiceError).code ?? String(err);
  }
  return 'resolved';
}

/** Registers the review tests; `open` gives a fresh store and a second replica's connection to it. */
export function describeReviewConformance(open: OpenStores): void {
  describe('reviews', () => {
    it('creates a pending review with no approvals, reads it back, announces it, and refuses its id twice', async () => {
      const { store } = await open();
      const events = heard(store);
      const r = heldRequest({ reason: 'eval run', note: 'ask #ml-leads', resend: { binding: 'b1', windowMs: 60_000 } });
      const created = await store.createReview(r, ROOMY);
      expect(created).toEqual({ ...r, status: 'pending', approvals: [] });
      expect(await store.getReview(r.id)).toEqual(created);
      expect(await store.getReview('r_unknown')).toBeUndefined();
      await expect(store.createReview(r, ROOMY)).rejects.toThrow();
      await settle();
      expect(events).toEqual([{ type: 'review.created', review: created, at: r.createdAt }]);
    });

    it('lists newest first, by status, kind, requester, connection and binding', async () => {
      const { store } = await open();
      const a = await store.createReview(heldRequest({ createdAt: T0 + 1 }), ROOMY);
      const b = await store.createReview(accessRequest({ requester: { sub: 'bob' }, createdAt: T0 + 2 }), ROOMY);
      const c = await store.createReview(heldRequest({ connection: 'echo', createdAt: T0 + 3, resend: { binding: 'b1', windowMs: 60_000 } }), ROOMY);
      await store.resolveReview(b.id, { status: 'rejected', at: T0 + 4 });
      const ids = async (f: Parameters<Store['listReviews']>[0]) => (await store.listReviews(f)).map((r) => r.id);
      expect(await ids({})).toEqual([c.id, b.id, a.id]);
      expect(await ids({ status: 'pending' })).toEqual([c.id, a.id]);
      expect(await ids({ status: 'rejected' })).toEqual([b.id]);
      expect(await ids({ kind: 'grant' })).toEqual([b.id]);
      expect(await ids({ requester: 'alice' })).toEqual([c.id, a.id]);
      expect(await ids({ requester: 'alice', connection: 'llm' })).toEqual([a.id]);
      expect(await ids({ binding: 'b1' })).toEqual([c.id]);
      expect(await ids({ binding: 'b2' })).toEqual([]);
      expect(await ids({ limit: 2 })).toEqual([c.id, b.id]);
    });

    it('keeps the replica holding a review\'s caller and lists by it', async () => {
      const { store, peer } = await open();
      const held = await store.createReview(heldRequest({ replica: 'r1', createdAt: T0 + 1 }), ROOMY);
      const other = await peer.createReview(heldRequest({ replica: 'r2', createdAt: T0 + 2 }), ROOMY);
      const noCaller = await store.createReview(accessRequest({ createdAt: T0 + 3 }), ROOMY);
      expect(held.replica).toBe('r1');
      expect((await peer.getReview(held.id))?.replica).toBe('r1');
      expect((await store.getReview(noCaller.id))?.replica).toBeUndefined();
      const ids = async (f: Parameters<Store['listReviews']>[0]) => (await store.listReviews(f)).map((r) => r.id);
      expect(await ids({ replica: 'r1' })).toEqual([held.id]);
      expect(await ids({ replica: 'r2', status: 'pending' })).toEqual([other.id]);
      await store.resolveReview(other.id, { status: 'abandoned', at: T0 + 4 });
      expect(await ids({ replica: 'r2', status: 'pending' })).toEqual([]);
      expect(await ids({ replica: 'r3' })).toEqual([]);
    });

    it('bounds pending reviews per requester and in total (ERR_REVIEW_LIMIT, 429); decided and expired ones do not count', async () => {
      const { store } = await open();
      const limits = { perUser: 2, total: 3 };
      const first = await store.createReview(heldRequest(), limits);
      await store.createReview(heldRequest(), limits);
      const mine = await store.createReview(heldRequest(), limits).catch((e: unknown) => e as SluiceError);
      expect(mine).toBeInstanceOf(SluiceError);
      expect(mine).toMatchObject({ code: 'ERR_REVIEW_LIMIT', status: 429, details: { scope: 'user', limit: 2 } });
      await store.createReview(heldRequest({ requester: { sub: 'dave' } }), limits);
      const all = await store.createReview(heldRequest({ requester: { sub: 'erin' } }), limits).catch((e: unknown) => e as SluiceError);
      expect(all).toMatchObject({ code: 'ERR_REVIEW_LIMIT', details: { scope: 'gateway', limit: 3 } });
      await store.resolveReview(first.id, { status: 'rejected', at: T0 + 1 });
      await store.createReview(heldRequest({ requester: { sub: 'erin' } }), limits);
      // Past their deadline, pending reviews no longer count, though nobody has marked them expired yet.
      const later = T0 + TEN_MINUTES;
      for (let i = 0; i < 2; i++) await store.createReview(heldRequest({ createdAt: later, expiresAt: later + TEN_MINUTES }), limits);
      expect((await store.listReviews({ requester: 'alice', status: 'pending' })).length).toBe(3);
    });

    it('lets exactly as many of N creates racing at a limit through as fit', async () => {
      const { store, peer } = await open();
      const limits = { perUser: 3, total: 5 };
      const mine = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => (i % 2 ? peer : store).createReview(heldRequest(), limits)));
      expect(mine.filter((r) => r.status === 'fulfilled')).toHaveLength(3);
      for (const r of mine) if (r.status === 'rejected') expect((r.reason as SluiceError).code).toBe('ERR_REVIEW_LIMIT');
      const everyone = await Promise.allSettled(
        Array.from({ length: 10 }, (_, i) => (i % 2 ? peer : store).createReview(heldRequest({ requester: { sub: `user${i}` } }), limits)),
      );
      expect(everyone.filter((r) => r.status === 'fulfilled')).toHaveLength(2);
      expect(await store.listReviews({ status: 'pending' })).toHaveLength(5);
    });
  });

  describe('approvals', () => {
    it('approves with one reviewer: who, when, why, announced; a held request creates no grant', async () => {
      const { store } = await open();
      const r = await store.createReview(heldRequest(), ROOMY);
      const events = heard(store);
      const outcome = await store.approveReview(r.id, approval('bob', T0 + 1000, 'fine'));
      expect(outcome.grant).toBeUndefined();
      expect(outcome.review).toEqual({
        ...r,
        status: 'approved',
        approvals: [approval('bob', T0 + 1000, 'fine')],
        resolvedAt: T0 + 1000,
        resolvedBy: { sub: 'bob', email: 'bob@example.com' },
        resolution: 'fine',
      });
      expect(await store.getReview(r.id)).toEqual(outcome.review);
      expect(await store.listGrants()).toEqual([]);
      await settle();
      expect(events).toEqual([{ type: 'review.approved', review: outcome.review, actor: { sub: 'bob', email: 'bob@example.com' }, at: T0 + 1000 }]);
    });

    it('counts distinct reviewers toward min_approvals; the same reviewer twice is ERR_REVIEW_CONFLICT', async () => {
      const { store } = await open();
      const r = await store.createReview(heldRequest({ minApprovals: 2 }), ROOMY);
      const events = heard(store);
      const first = await store.approveReview(r.id, approval('bob'));
      expect(first.review).toMatchObject({ status: 'pending', approvals: [{ sub: 'bob' }] });
      expect(await codeOf(store.approveReview(r.id, approval('bob', T0 + 2000)))).toBe('ERR_REVIEW_CONFLICT');
      expect((await store.getReview(r.id))?.approvals).toHaveLength(1);
      const second = await store.approveReview(r.id, approval('erin', T0 + 3000));
      expect(second.review).toMatchObject({ status: 'approved', approvals: [{ sub: 'bob' }, { sub: 'erin' }], resolvedBy: { sub: 'erin' } });
      await settle();
      expect(events.map((e) => [e.type, e.actor?.sub])).toEqual([
        ['review.approval', 'bob'],
        ['review.approved', 'erin'],
      ]);
    });

    it('refuses approvals of unknown and decided reviews; past the deadline marks the review expired', async () => {
      const { store } = await open();
      expect(await codeOf(store.approveReview('r_unknown', approval('bob')))).toBe('ERR_NOT_FOUND');
      const rejected = await store.createReview(heldRequest(), ROOMY);
      await store.resolveReview(rejected.id, { status: 'rejected', at: T0 + 1, by: { sub: 'erin' } });
      expect(await codeOf(store.approveReview(rejected.id, approval('bob')))).toBe('ERR_REVIEW_CONFLICT');

      const late = await store.createReview(heldRequest(), ROOMY);
      const events = heard(store);
      expect(await codeOf(store.approveReview(late.id, approval('bob', late.expiresAt)))).toBe('ERR_REVIEW_EXPIRED');
      expect(await store.getReview(late.id)).toMatchObject({ status: 'expired', resolvedAt: late.expiresAt, approvals: [] });
      expect(await codeOf(store.approveReview(late.id, approval('erin', late.expiresAt)))).toBe('ERR_REVIEW_EXPIRED');
      await settle();
      expect(events.map((e) => e.type)).toEqual(['review.expired']);
    });

    it('creates the one grant of an approved access request, finds it until it ends, and ends it early on revoke', async () => {
      const { store } = await open();
      const request = await store.createReview(accessRequest({ minApprovals: 2 }), ROOMY);
      expect((await store.approveReview(request.id, approval('bob', T0 + 1000))).grant).toBeUndefined();
      expect(await store.activeGrant('alice', 'prod-db', T0 + 1000)).toBeUndefined();
      const { grant } = await store.approveReview(request.id, approval('erin', T0 + 2000));
      expect(grant).toEqual({
        id: expect.stringMatching(/^g_[0-9a-f]{24}$/),
        reviewId: request.id,
        sub: 'alice',
        email: 'alice@example.com',
        connection: 'prod-db',
        reason: 'incident 7',
        approvedBy: ['bob', 'erin'],
        createdAt: T0 + 2000,
        expiresAt: T0 + 2000 + 7_200_000,
      });
      const end = grant!.expiresAt;
      expect(await store.activeGrant('alice', 'prod-db', end - 1)).toEqual(grant);
      expect(await store.activeGrant('alice', 'prod-db', end)).toBeUndefined();
      expect(await store.activeGrant('bob', 'prod-db', T0 + 2000)).toBeUndefined();
      expect(await store.activeGrant('alice', 'llm', T0 + 2000)).toBeUndefined();

      // A second, longer grant is the one in force; listing is newest first and filters.
      const longer = await store.createReview(accessRequest({ summary: { durationMs: 9_000_000 } }), ROOMY);
      const second = (await store.approveReview(longer.id, approval('bob', T0 + 3000))).grant!;
      expect(await store.activeGrant('alice', 'prod-db', T0 + 3000)).toEqual(second);
      expect((await store.listGrants({ sub: 'alice' })).map((g) => g.id)).toEqual([second.id, grant!.id]);
      expect((await store.listGrants({ activeAt: end })).map((g) => g.id)).toEqual([second.id]);
      expect(await store.listGrants({ connection: 'llm' })).toEqual([]);
      expect(await store.listGrants({ limit: 1 })).toHaveLength(1);

      const revoked = await store.revokeGrant(second.id, T0 + 4000);
      expect(revoked).toEqual({ ...second, expiresAt: T0 + 4000 });
      expect(await store.activeGrant('alice', 'prod-db', T0 + 4000)).toEqual(grant);
      expect(await store.revokeGrant(second.id, T0 + 5000)).toBeUndefined();
      expect(await store.revokeGrant('g_unknown', T0 + 5000)).toBeUndefined();
      expect(await store.revokeGrant(grant!.id, end)).toBeUndefined();
    });

    it('decides two approvals racing toward min_approvals 2 once: one approves, one grant', async () => {
      const { store, peer } = await open();
      const request = await store.createReview(accessRequest({ minApprovals: 2 }), ROOMY);
      const outcomes = await Promise.all([store.approveReview(request.id, approval('bob')), peer.approveReview(request.id, approval('erin'))]);
      expect(outcomes.map((o) => o.review.status).sort()).toEqual(['approved', 'pending']);
      expect(outcomes.filter((o) => o.grant !== undefined)).toHaveLength(1);
      expect(await store.listGrants({ sub: 'alice' })).toHaveLength(1);
      expect((await store.getReview(request.id))?.approvals.map((a) => a.sub).sort()).toEqual(['bob', 'erin']);
    });

    it('decides three approvals racing toward min_approvals 2 once: two count, the third is ERR_REVIEW_CONFLICT', async () => {
      const { store, peer } = await open();
      const request = await store.createReview(accessRequest({ minApprovals: 2 }), ROOMY);
      const results = await Promise.allSettled(['bob', 'erin', 'frank'].map((sub, i) => (i % 2 ? peer : store).approveReview(request.id, approval(sub))));
      const done = results.filter((r) => r.status === 'fulfilled').map((r) => r.value);
      expect(done.map((o) => o.review.status).sort()).toEqual(['approved', 'pending']);
      const refused = results.filter((r) => r.status === 'rejected');
      expect(refused.map((r) => (r.reason as SluiceError).code)).toEqual(['ERR_REVIEW_CONFLICT']);
      expect(await store.listGrants({ sub: 'alice' })).toHaveLength(1);
      expect((await store.getReview(request.id))?.approvals).toHaveLength(2);
    });

    it('decides an approval racing the expiry once: either approved, or expired and the approval refused', async () => {
      const { store, peer } = await open();
      for (const [first, second] of [
        ['approve', 'expire'],
        ['expire', 'approve'],
      ] as const) {
        const requester = { sub: `alice-${first}-first` };
        const r = await store.createReview(accessRequest({ requester, expiresAt: T0 + 1000 }), ROOMY);
        const run = (what: 'approve' | 'expire', on: Store) =>
          what === 'approve' ? on.approveReview(r.id, approval('bob', T0 + 999)) : on.resolveReview(r.id, { status: 'expired', at: T0 + 1000 });
        const [a, b] = await Promise.allSettled([run(first, store), run(second, peer)]);
        const approve = first === 'approve' ? a! : b!;
        const expire = first === 'approve' ? b! : a!;
        const now = (await store.getReview(r.id))!;
        if (now.status === 'approved') {
          expect(approve.status).toBe('fulfilled');
          expect(expire).toEqual({ status: 'fulfilled', value: undefined });
          expect(await store.listGrants({ sub: requester.sub })).toHaveLength(1);
        } else {
          expect(now.status).toBe('expired');
          expect(expire).toMatchObject({ status: 'fulfilled', value: { status: 'expired' } });
          expect(approve.status === 'rejected' && (approve.reason as SluiceError).code).toBe('ERR_REVIEW_EXPIRED');
          expect(await store.listGrants({ sub: requester.sub })).toHaveLength(0);
        }
      }
    });
  });

  describe('resolutions and re-sends', () => {
    it('ends a pending review once, with who and why, and announces it', async () => {
      const { store } = await open();
      const r = await store.createReview(heldRequest(), ROOMY);
      const events = heard(store);
      const rejected = await store.resolveReview(r.id, { status: 'rejected', at: T0 + 5, by: { sub: 'bob', email: 'bob@example.com' }, reason: 'use the small model' });
      expect(rejected).toEqual({ ...r, status: 'rejected', resolvedAt: T0 + 5, resolvedBy: { sub: 'bob', email: 'bob@example.com' }, resolution: 'use the small model' });
      expect(await store.resolveReview(r.id, { status: 'expired', at: T0 + 6 })).toBeUndefined();
      expect(await store.resolveReview('r_unknown', { status: 'expired', at: T0 + 6 })).toBeUndefined();
      expect(await store.getReview(r.id)).toEqual(rejected);
      const left = await store.createReview(heldRequest(), ROOMY);
      expect(await store.resolveReview(left.id, { status: 'abandoned', at: T0 + 7, reason: 'the caller left' })).toMatchObject({ status: 'abandoned', resolution: 'the caller left' });
      await settle();
      expect(events.map((e) => [e.type, e.actor?.sub])).toEqual([
        ['review.rejected', 'bob'],
        ['review.created', undefined],
        ['review.abandoned', undefined],
      ]);
    });

    it('decides resolutions racing an approval once', async () => {
      const { store, peer } = await open();
      const r = await store.createReview(heldRequest(), ROOMY);
      const [approved, rejected, expired] = await Promise.allSettled([
        store.approveReview(r.id, approval('bob')),
        peer.resolveReview(r.id, { status: 'rejected', at: T0 + 1000, by: { sub: 'erin' } }),
        store.resolveReview(r.id, { status: 'expired', at: T0 + 1000 }),
      ]);
      const winners = [approved!.status === 'fulfilled', rejected!.status === 'fulfilled' && rejected.value !== undefined, expired!.status === 'fulfilled' && expired.value !== undefined];
      expect(winners.filter(Boolean)).toHaveLength(1);
      const now = (await store.getReview(r.id))!;
      expect(now.status).toBe(['approved', 'rejected', 'expired'][winners.indexOf(true)]);
    });

    it('lets the requester send an approved request again once, within its window, with the same binding', async () => {
      const { store } = await open();
      const r = await store.createReview(heldRequest({ resend: { binding: 'b1', windowMs: 60_000 } }), ROOMY);
      const claim = { requester: 'alice', binding: 'b1', at: T0 + 2000, requestId: 'req_again', sessionId: 'ses_2' };
      expect(await store.claimResend(r.id, claim)).toBeUndefined();
      await store.approveReview(r.id, approval('bob', T0 + 1000));
      expect(await store.claimResend(r.id, { ...claim, requester: 'mallory' })).toBeUndefined();
      expect(await store.claimResend(r.id, { ...claim, binding: 'b2' })).toBeUndefined();
      expect(await store.claimResend(r.id, { ...claim, at: T0 + 1000 + 60_000 })).toBeUndefined();
      expect(await store.claimResend('r_unknown', claim)).toBeUndefined();
      const claimed = await store.claimResend(r.id, claim);
      expect(claimed).toMatchObject({ status: 'approved', resent: { at: T0 + 2000, requestId: 'req_again', sessionId: 'ses_2' } });
      expect(await store.getReview(r.id)).toEqual(claimed);
      expect(await store.claimResend(r.id, { ...claim, at: T0 + 3000, requestId: 'req_third' })).toBeUndefined();

      // A request that was held, not answered at once, has nothing to claim.
      const heldOne = await store.createReview(heldRequest(), ROOMY);
      await store.approveReview(heldOne.id, approval('bob'));
      expect(await store.claimResend(heldOne.id, claim)).toBeUndefined();
    });

    it('gives an approval claimed twice at once to one re-send', async () => {
      const { store, peer } = await open();
      const r = await store.createReview(heldRequest({ resend: { binding: 'b1', windowMs: 60_000 } }), ROOMY);
      await store.approveReview(r.id, approval('bob'));
      const claim = (requestId: string) => ({ requester: 'alice', binding: 'b1', at: T0 + 2000, requestId, sessionId: 'ses_2' });
      const claims = await Promise.all([store.claimResend(r.id, claim('req_a')), peer.claimResend(r.id, claim('req_b'))]);
      const won = claims.filter((c): c is Review => c !== undefined);
      expect(won).toHaveLength(1);
      expect((await store.getReview(r.id))?.resent?.requestId).toBe(won[0]!.resent!.requestId);
    });
  });

  describe('tunnel slots', () => {
    it('gives a caller at most `limit` slots across replicas, and each back once', async () => {
      const { store, peer } = await open();
      const one = await store.acquireTunnelSlot('alice', 'r1', 2);
      const two = await peer.acquireTunnelSlot('alice', 'r2', 2);
      expect(one).toEqual(expect.any(String));
      expect(two).toEqual(expect.any(String));
      expect(one).not.toBe(two);
      expect(await store.acquireTunnelSlot('alice', 'r1', 2)).toBeUndefined();
      expect(await store.acquireTunnelSlot('bob', 'r1', 2)).toEqual(expect.any(String));
      await store.releaseTunnelSlot(one!);
      const three = await peer.acquireTunnelSlot('alice', 'r2', 2);
      expect(three).toEqual(expect.any(String));
      // Giving a slot back twice does not give a second place.
      await store.releaseTunnelSlot(one!);
      expect(await store.acquireTunnelSlot('alice', 'r1', 2)).toBeUndefined();
      // A lower limit (a reload) refuses new slots until enough are given back.
      expect(await store.acquireTunnelSlot('alice', 'r1', 1)).toBeUndefined();
    });

    it('lets exactly `limit` of N takes racing through', async () => {
      const { store, peer } = await open();
      const slots = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? peer : store).acquireTunnelSlot('alice', `r${i % 2}`, 3)));
      const taken = slots.filter((s) => s !== undefined);
      expect(taken).toHaveLength(3);
      expect(new Set(taken).size).toBe(3);
    });

    it('clears the slots of one replica only', async () => {
      const { store } = await open();
      await store.acquireTunnelSlot('alice', 'r1', 3);
      await store.acquireTunnelSlot('bob', 'r1', 3);
      await store.acquireTunnelSlot('alice', 'r2', 3);
      expect(await store.clearTunnelSlots('r1')).toBe(2);
      expect(await store.clearTunnelSlots('r1')).toBe(0);
      const again = await Promise.all([1, 2, 3].map(() => store.acquireTunnelSlot('alice', 'r1', 3)));
      expect(again.filter((s) => s !== undefined)).toHaveLength(2);
    });
  });

  describe('the review feed', () => {
    it('delivers every event to every subscriber, even when one throws, until it unsubscribes', async () => {
      const { store } = await open();
      const offBroken = store.feed.subscribe(() => {
        throw new Error('a broken subscriber');
      });
      onTestFinished(offBroken);
      const seen: string[] = [];
      const off = store.feed.subscribe((e) => seen.push(`${e.type} ${e.review.id}`));
      const r = await store.createReview(heldRequest(), ROOMY);
      await store.resolveReview(r.id, { status: 'expired', at: T0 + 1 });
      await settle();
      expect(seen).toEqual([`review.created ${r.id}`, `review.expired ${r.id}`]);
      off();
      await store.createReview(heldRequest(), ROOMY);
      await settle();
      expect(seen).toHaveLength(2);
    });
  });
}
