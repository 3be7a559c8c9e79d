import type { Store } from '../store/store.js';

/**
 * Most pending reviews one scrape reads. Held requests are capped far lower (`approval.max_held_total`);
 * access requests are not, and a scrape must stay cheap however many pile up: past this the gauge saturates.
 */
const MAX_COUNTED = 10_000;

/** How many reviews are pending in the store (every replica's), for the `sluice_reviews_pending` gauge. */
export async function pendingReviewCount(store: Store | undefined): Promise<number> {
  if (store === undefined) return 0;
  return (await store.listReviews({ status: 'pending', limit: MAX_COUNTED })).length;
}
