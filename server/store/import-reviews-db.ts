import { existsSync, renameSync } from 'node:fs';
import type Database from 'better-sqlite3';

/** The review database gateways kept beside the index before reviews joined it. */
export const LEGACY_REVIEWS_FILE = 'reviews.db';

/** What an imported review database is renamed to: kept for the operator, never read again. */
export const IMPORTED_SUFFIX = '.imported';

/** What {@link importReviewsDb} carried over. */
export interface ReviewsImport {
  readonly reviews: number;
  readonly grants: number;
}

/**
 * Carries the reviews and grants of a legacy `reviews.db` into the index once: its rows are copied in
 * one transaction (rows the index already has are kept as they are), then the file and its WAL
 * companions are renamed `reviews.db.imported…`, so the next open finds nothing to import. Undefined when
 * there is no such file. A file that cannot be read stops the open: pending reviews and standing grants
 * must not vanish without a word.
 */
export function importReviewsDb(db: Database.Database, file: string): ReviewsImport | undefined {
  if (!existsSync(file)) return undefined;
  let counts: ReviewsImport;
  let attached = false;
  try {
    db.prepare('ATTACH DATABASE ? AS legacy').run(file);
    attached = true;
    const tables = new Set((db.prepare("SELECT name FROM legacy.sqlite_master WHERE type = 'table'").all() as { name: string }[]).map((r) => r.name));
    counts = db.transaction((): ReviewsImport => {
      const reviews = tables.has('reviews')
        ? db
            .prepare(
              `INSERT OR IGNORE INTO main.reviews (id, kind, status, requester, connection, binding, created_at, expires_at, doc)
               SELECT id, kind, status, requester, connection, json_extract(doc, '$.resend.binding'), created_at, expires_at, doc FROM legacy.reviews`,
            )
            .run().changes
        : 0;
      const grants = tables.has('grants')
        ? db
            .prepare(
              `INSERT OR IGNORE INTO main.grants (id, review_id, sub, connection, created_at, expires_at, doc)
               SELECT id, review_id, sub, connection, created_at, expires_at, doc FROM legacy.grants`,
            )
            .run().changes
        : 0;
      return { reviews, grants };
    })();
  } catch (err) {
    throw new Error(`The review database ${file} cannot be imported into the index (${(err as Error).message}); move it away to start without its reviews and grants`, { cause: err });
  } finally {
    if (attached) db.prepare('DETACH DATABASE legacy').run();
  }
  // Its WAL and shared-memory files move with it: a WAL another connection still holds has rows of its own.
  for (const suffix of ['', '-wal', '-shm']) {
    if (existsSync(`${file}${suffix}`)) renameSync(`${file}${suffix}`, `${file}${IMPORTED_SUFFIX}${suffix}`);
  }
  return counts;
}
