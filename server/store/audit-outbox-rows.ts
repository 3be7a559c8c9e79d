/**
 * What the SQLite and PostgreSQL audit outboxes share: the lease name a sink's sender holds, how a row keeps
 * its run of documents, and the statements' shape (the same SQL on both, bar placeholders).
 */

/** The lease a sink's sender holds while it claims and sends (see `Store.claimAuditBatch`). */
export function auditSinkLease(sink: string): string {
  return `audit-sink:${sink}`;
}

/**
 * A row's documents as one text: JSON lines. A JSON document never holds a raw line break (JSON.stringify
 * escapes every control character), so the join is unambiguous; one that does is refused, not split wrong.
 */
export function joinAuditDocs(docs: readonly string[]): string {
  if (docs.length === 0) throw new Error('an audit outbox row holds at least one event');
  for (const doc of docs) if (doc.includes('\n')) throw new Error('an audit event document holds a raw line break');
  return docs.join('\n');
}

export function splitAuditDocs(text: string): string[] {
  return text.split('\n');
}

/**
 * The oldest rows of one sink holding at most `limit` events together, always at least the first: the
 * running sum over the sink's first `limit` rows (each holds one event or more, so no more are needed).
 * `$sink` and `$limit` are the placeholders PostgreSQL's claim rewrites; SQLite picks the same rows with
 * {@link rowsWithin}.
 */
export const CLAIM_ROWS_SQL = `
  SELECT seq, docs FROM audit_outbox WHERE seq IN (
    SELECT seq FROM (
      SELECT seq, events, sum(events) OVER (ORDER BY seq) AS upto
      FROM (SELECT seq, events FROM audit_outbox WHERE sink = $sink ORDER BY seq LIMIT $limit) AS head
    ) AS running WHERE upto <= $limit OR upto = events
  ) ORDER BY seq`;

/**
 * The rows a claim takes from a sink's head (its oldest rows, in seq order): those whose running sum of
 * events stays within `limit`, and always the first, as CLAIM_ROWS_SQL picks them.
 */
export function rowsWithin<R extends { readonly events: number }>(head: readonly R[], limit: number): R[] {
  let upto = 0;
  let taken = 0;
  while (taken < head.length && (taken === 0 || upto + head[taken]!.events <= limit)) upto += head[taken++]!.events;
  return head.slice(0, taken);
}

/** The oldest rows (any sink) to remove so that at least `$excess` events go: those with fewer than that before them. */
export const OLDEST_ROWS_SQL = `
  SELECT seq, events FROM (
    SELECT seq, events, sum(events) OVER (ORDER BY seq) - events AS before FROM audit_outbox
  ) AS running WHERE before < $excess ORDER BY seq`;
