import type { ReviewEventType } from './approval-config.js';
import type { Grant, ReviewPerson, Review } from './review.js';

/** A change to a review, as every replica hears of it. */
export interface ReviewEvent {
  readonly type: ReviewEventType;
  /** The review after the change (for `grant.revoked`, the access request that created the grant). */
  readonly review: Review;
  /** Who caused it (a reviewer, or the holder giving up a grant); absent for expiry and abandonment. */
  readonly actor?: ReviewPerson;
  readonly at: number;
  /** `grant.revoked`: the grant as it ended (`expiresAt` is the revocation). */
  readonly grant?: Grant;
  /** `grant.revoked`: why, as the revoker said. */
  readonly reason?: string;
}

/** Receives review events; must not throw (the feed ignores what it does). */
export type ReviewListener = (event: ReviewEvent) => void;

/**
 * Announces review changes to every replica: a held request is released on the replica that holds it
 * when a reviewer approves through another, and watchers anywhere see new reviews. Every `Store` has one
 * (`store.feed`) and publishes on it after each change commits. In-process here; across replicas on
 * Postgres, an outbox written in the committing transaction, announced by NOTIFY and re-read on LISTEN
 * and periodically (server/store/postgres-review-feed.ts).
 */
export interface ReviewFeed {
  publish(event: ReviewEvent): Promise<void>;
  /** Returns the function that unsubscribes. */
  subscribe(listener: ReviewListener): () => void;
}

/** The feed of a single gateway process (the SQLite deployment). */
export function createLocalReviewFeed(): ReviewFeed {
  const listeners = new Set<ReviewListener>();
  return {
    async publish(event) {
      for (const listener of [...listeners]) {
        try {
          listener(event);
        } catch {
          // One broken watcher must not keep a held request from hearing its resolution.
        }
      }
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}
