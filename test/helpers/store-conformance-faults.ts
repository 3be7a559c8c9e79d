/**
 * What callers see when a backend fails mid-call, run over a real backend wrapped in `faultyStore`: the
 * caller gets the error, and the store is left as if the call had happened whole or not at all — never
 * an approval counted without its grant, a create counted that nobody holds, a review half decided.
 */
import { describe, expect, it } from 'vitest';
import { createApprovalService } from '../../server/approval/approval-service.js';
import type { Principal } from '../../server/identity/principal.js';
import type { ReviewLimits } from '../../server/store/store.js';
import { faultyStore, InjectedFault } from './faulty-store.js';
import { storeOpener, type StoreUnderTest } from './store-conformance.js';
import { accessRequest, codeOf, heard, heldRequest, ROOMY, settle, T0 } from './store-conformance-reviews.js';

function reviewer(sub: string): Principal {
  return { sub, email: `${sub}@example.com`, groups: ['ml-leads'], roles: [], expiresAt: 0, issuer: 'https://idp.test' };
}

/** Registers the fault tests for one backend. */
export function describeStoreFaults(name: string, factory: () => Promise<StoreUnderTest>): void {
  const openStores = storeOpener(factory);
  /** The backend behind a faulty store, and the approval service callers use over it. */
  async function open(limits: ReviewLimits = ROOMY) {
    const { store: inner } = await openStores();
    const store = faultyStore(inner);
    const now = { t: T0 + 1000 };
    const service = createApprovalService({ store, limits: () => limits, clock: () => now.t });
    return { inner, store, service, now };
  }

  describe(`Store faults: ${name}`, () => {
    it('an approval that fails on its way to the store: the caller gets the error, nothing is applied, a retry completes it', async () => {
      const { inner, store, service } = await open();
      const request = await inner.createReview(accessRequest({ minApprovals: 2 }), ROOMY);
      const events = heard(inner);
      store.arm({ failOn: 'approveReview', after: 1 });
      await service.approve({ id: request.id, principal: reviewer('bob') });
      await expect(service.approve({ id: request.id, principal: reviewer('erin') })).rejects.toBeInstanceOf(InjectedFault);
      expect(store.injected).toBe(1);
      expect(await inner.getReview(request.id)).toMatchObject({ status: 'pending', approvals: [{ sub: 'bob' }] });
      expect(await inner.listGrants()).toEqual([]);
      const { review, grant } = await service.approve({ id: request.id, principal: reviewer('erin') });
      expect(review.status).toBe('approved');
      expect((await inner.listGrants()).map((g) => g.id)).toEqual([grant!.id]);
      await settle();
      expect(events.map((e) => e.type)).toEqual(['review.approval', 'review.approved']);
    });

    it('an approval whose answer is lost after the commit: applied whole and once; the retry is ERR_REVIEW_CONFLICT', async () => {
      const { inner, store, service } = await open();
      const request = await inner.createReview(accessRequest(), ROOMY);
      store.arm({ failOn: 'approveReview', when: 'after-commit' });
      await expect(service.approve({ id: request.id, principal: reviewer('bob') })).rejects.toBeInstanceOf(InjectedFault);
      expect(await inner.getReview(request.id)).toMatchObject({ status: 'approved', approvals: [{ sub: 'bob' }] });
      expect(await inner.listGrants()).toHaveLength(1);
      expect(await codeOf(service.approve({ id: request.id, principal: reviewer('bob') }))).toBe('ERR_REVIEW_CONFLICT');
      expect(await inner.listGrants()).toHaveLength(1);
    });

    it('a create that fails is not counted toward the limits; one whose answer is lost is', async () => {
      const { inner, store } = await open();
      const limits = { perUser: 1, total: 10 };
      store.arm({ failOn: 'createReview' });
      await expect(store.createReview(heldRequest(), limits)).rejects.toBeInstanceOf(InjectedFault);
      expect(await inner.listReviews()).toEqual([]);
      const kept = await store.createReview(heldRequest(), limits);
      await inner.resolveReview(kept.id, { status: 'abandoned', at: T0 + 1 });

      store.arm({ failOn: 'createReview', when: 'after-commit' });
      await expect(store.createReview(heldRequest(), limits)).rejects.toBeInstanceOf(InjectedFault);
      expect(await inner.listReviews({ status: 'pending' })).toHaveLength(1);
      expect(await codeOf(store.createReview(heldRequest(), limits))).toBe('ERR_REVIEW_LIMIT');
    });

    it('a rejection that fails leaves the review pending, to be decided by the next try', async () => {
      const { inner, store, service } = await open();
      const r = await inner.createReview(heldRequest(), ROOMY);
      store.arm({ failOn: 'resolveReview' });
      await expect(service.reject({ id: r.id, principal: reviewer('bob'), reason: 'no' })).rejects.toBeInstanceOf(InjectedFault);
      expect(await inner.getReview(r.id)).toMatchObject({ status: 'pending', approvals: [] });
      expect(await service.reject({ id: r.id, principal: reviewer('bob'), reason: 'no' })).toMatchObject({ status: 'rejected', resolution: 'no' });
    });

    it('a tunnel slot that fails to be taken is not held', async () => {
      const { store } = await open();
      store.arm({ failOn: 'acquireTunnelSlot' });
      await expect(store.acquireTunnelSlot('alice', 'r1', 1)).rejects.toBeInstanceOf(InjectedFault);
      expect(await store.acquireTunnelSlot('alice', 'r1', 1)).toEqual(expect.any(String));
      expect(await store.acquireTunnelSlot('alice', 'r1', 1)).toBeUndefined();
    });
  });
}
