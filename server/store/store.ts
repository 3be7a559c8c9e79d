/**
 * The `Store`: everything replicas share. The session index and wrapped session keys; reviews (held
 * requests and access requests), their approvals and the grants they create; per-user tunnel slots;
 * replica heartbeats and leases. Every backend (SQLite embedded, Postgres for scale-out) implements this
 * interface and passes `test/helpers/store-conformance.ts`. Methods are asynchronous even where SQLite
 * is not, so a networked backend fits the same contract; each says what it does atomically. Times are
 * milliseconds since the epoch.
 */
import type { ReviewFeed } from '../approval/review-feed.js';
import type { Grant, NewReview, Review, ReviewApproval, ReviewKind, ReviewPerson, ReviewStatus, ResendUse } from '../approval/review.js';

/** Lifecycle of a recorded session: `interrupted` means the gateway stopped before the session was sealed. */
export type SessionStatus = 'open' | 'closed' | 'interrupted';

/** How the session reached the gateway. */
export type SessionVia = 'tunnel' | 'proxy';

/** Per-session counters; `bytesUp` is caller → upstream, `bytesDown` upstream → caller. */
export interface SessionCounters {
  readonly requests: number;
  readonly errors: number;
  readonly bytesUp: number;
  readonly bytesDown: number;
  readonly denied: number;
  readonly held: number;
  readonly masked: number;
}

/** Token usage summed over a session's OpenAI-style exchanges. */
export interface TokenUsage {
  readonly prompt: number;
  readonly completion: number;
  readonly total: number;
}

/** What is known when a session opens. */
export interface NewSession {
  /** Globally unique (`ses_` + 32 hex digits). */
  readonly id: string;
  /** The principal's subject. */
  readonly user: string;
  readonly email?: string;
  readonly groups: readonly string[];
  readonly clientId?: string;
  readonly connection: string;
  readonly via: SessionVia;
  readonly reason?: string;
  readonly clientAddress: string;
  readonly cliVersion?: string;
  /** The recorded exchange this session re-sends (`<session id>#<exchange number>`), for a re-send. */
  readonly resendOf?: string;
  readonly startedAt: number;
  /**
   * The session file's archive object name (`sessions/YYYY/MM/DD/<id>.rec`): where the archive keeps it once
   * sealed, and where the writing replica's spool appends it while it is open.
   */
  readonly file: string;
  /** Id of the master key that wraps the session's data key. */
  readonly keyId: string;
  /** The replica writing the session; only that replica may mark it interrupted. */
  readonly replica: string;
}

/** One row of the session index. */
export interface SessionInfo extends NewSession {
  readonly status: SessionStatus;
  readonly endedAt?: number;
  /** Records in the file, checkpoint included; known once the session is sealed. */
  readonly records?: number;
  /** Hex SHA-256 the checkpoint signs; known once the session is sealed. */
  readonly finalHash?: string;
  /** Models named by the upstream's answers, in order of first use. */
  readonly models: readonly string[];
  readonly tokens: TokenUsage;
  readonly counters: SessionCounters;
  /** HTTP status of the last completed exchange (0 for none). */
  readonly lastStatus: number;
}

/** One model's share of a session: the exchanges it answered and their tokens (what `sluice usage` sums). */
export interface ModelUsage {
  readonly requests: number;
  readonly prompt: number;
  readonly completion: number;
}

/** Increments and facts learned while a session runs; counters and tokens are added, models merged. */
export interface SessionProgress {
  readonly counters?: Partial<SessionCounters>;
  readonly tokens?: Partial<TokenUsage>;
  readonly models?: readonly string[];
  /** Added to each model's share, by model; every model named here is in `models` too. */
  readonly modelUsage?: Readonly<Record<string, ModelUsage>>;
  readonly lastStatus?: number;
}

/** How a session ended. */
export interface SessionSeal {
  readonly status: Exclude<SessionStatus, 'open'>;
  readonly endedAt: number;
  readonly records?: number;
  readonly finalHash?: string;
}

/** Filters of `listSessions`; all optional and combined with AND. */
export interface SessionFilter {
  readonly user?: string;
  readonly connection?: string;
  /** Sessions started at or after this time. */
  readonly since?: number;
  /** Sessions started before this time. */
  readonly until?: number;
  /** Sessions in which this model answered. */
  readonly model?: string;
  readonly status?: SessionStatus;
  /** Re-sends of this exchange (`<session id>#<n>`), or of any exchange of this session (`<session id>`). */
  readonly resendOf?: string;
  /** Page size; default 50, at most 500. */
  readonly limit?: number;
  /** The `next` of the previous page. */
  readonly cursor?: string;
}

/** What `Store.usage` sums, and how it groups: by the sessions' user or connection, or by the model that answered. */
export interface UsageFilter {
  readonly user?: string;
  readonly connection?: string;
  /** Sessions started at or after this time. */
  readonly since?: number;
  readonly by: 'model' | 'user' | 'connection';
}

/** One group of `Store.usage`: requests and tokens summed over the sessions in it. */
export interface UsageRow {
  /** The model, user (`sub`) or connection. */
  readonly key: string;
  readonly sessions: number;
  readonly requests: number;
  readonly inputTokens: number;
  readonly outputTokens: number;
}

/** A page of sessions, newest first; `next` is absent on the last page. */
export interface SessionPage {
  readonly sessions: SessionInfo[];
  readonly next?: string;
}

/** Bounds on pending reviews, checked in the same transaction as the insert. */
export interface ReviewLimits {
  /** Pending reviews one requester may have. */
  readonly perUser: number;
  /** Pending reviews in total. */
  readonly total: number;
}

/** Which reviews to list; all optional and combined with AND; newest first. */
export interface ReviewFilter {
  readonly status?: ReviewStatus;
  readonly kind?: ReviewKind;
  readonly requester?: string;
  readonly connection?: string;
  /** Only reviews of requests answered at once with this binding. */
  readonly binding?: string;
  /** Only reviews whose caller this replica holds (see `NewReview.replica`). */
  readonly replica?: string;
  /** Default 100. */
  readonly limit?: number;
}

/** A re-send claiming the approval of a request answered at once. */
export interface ResendClaim extends ResendUse {
  /** The requester's `sub`: only the requester may use the approval. */
  readonly requester: string;
  /** The re-sent request's binding: it must equal the approved one's. */
  readonly binding: string;
}

/** Which grants to list; newest first. */
export interface GrantFilter {
  readonly sub?: string;
  readonly connection?: string;
  /** Only grants that have not ended at this time. */
  readonly activeAt?: number;
  /** Default 100. */
  readonly limit?: number;
}

/** Who ended a grant early, and why. */
export interface GrantRevocation {
  readonly by?: ReviewPerson;
  readonly reason?: string;
}

/** How a pending review ends other than by approval. */
export interface ReviewResolution {
  readonly status: 'rejected' | 'expired' | 'abandoned';
  readonly at: number;
  readonly by?: ReviewPerson;
  readonly reason?: string;
}

/** What an approval did: the review after it, and the grant it created (grant reviews that became approved). */
export interface ApprovalOutcome {
  readonly review: Review;
  readonly grant?: Grant;
}

/**
 * A session's data key, wrapped (AES-256-GCM, key-ring.ts) by the master key `keyId`: kept in the index
 * for format 2 files, in the header of a format 1 file. Erasing it makes the session unreadable.
 */
export interface WrappedSessionKey {
  readonly keyId: string;
  /** nonce (12) ‖ ciphertext (32) ‖ tag (16). */
  readonly wrapped: Buffer;
}

/** The gateway's shared, durable state; one implementation per backend, one conformance suite for all. */
export interface Store {
  /** Adds an `open` session; rejects if the id exists. */
  createSession(session: NewSession): Promise<void>;
  /** Adds counters and tokens, merges models, in one transaction; unknown ids are ignored. */
  updateSession(id: string, progress: SessionProgress): Promise<void>;
  /** Seals a session (closed or interrupted); unknown ids are ignored. */
  closeSession(id: string, seal: SessionSeal): Promise<void>;
  getSession(id: string): Promise<SessionInfo | undefined>;
  /** Newest first, filtered, paged. */
  listSessions(filter?: SessionFilter): Promise<SessionPage>;
  /**
   * Spend from the session index: requests and input/output tokens of the sessions that match, summed per
   * user, connection or model (by model, only exchanges whose answer named one), sorted by key.
   */
  usage(filter: UsageFilter): Promise<UsageRow[]>;
  /** Marks every `open` session of `replica` interrupted (after a crash), in one transaction; returns their ids. */
  interruptOpenSessions(replica: string, endedAt: number): Promise<string[]>;
  /** Sealed sessions started before `before`, oldest first, at most `limit`. */
  expiredSessions(before: number, limit: number): Promise<SessionInfo[]>;
  /** Removes a session from the index. */
  deleteSession(id: string): Promise<void>;

  /**
   * Where every review change is announced after it commits, to every replica (in-process for SQLite;
   * for Postgres an outbox row and a NOTIFY in the committing transaction, read on LISTEN and periodically,
   * so every replica hears every change in commit order). Delivery is best effort:
   * a listener that must not miss a decision re-reads the review (held requests do, at their deadline).
   */
  readonly feed: ReviewFeed;

  /**
   * Inserts a pending review (no approvals) and publishes `review.created`. A create at a limit: counting
   * the requester's and the gateway's pending reviews (those whose `expiresAt` is after `createdAt`) and
   * inserting are one transaction, so of N creates racing at a limit exactly as many as fit succeed; the
   * others throw ERR_REVIEW_LIMIT (`details.scope` `user` or `gateway`). Rejects a duplicate id.
   */
  createReview(review: NewReview, limits: ReviewLimits): Promise<Review>;
  getReview(id: string): Promise<Review | undefined>;
  /** Newest first, filtered. */
  listReviews(filter?: ReviewFilter): Promise<Review[]>;
  /**
   * Adds one reviewer's approval to a pending review, in one transaction with the read of the review:
   * of approvals racing, each sees the ones committed before it, so exactly one reaches `minApprovals`
   * distinct reviewers; that one approves the review and, for an access request, creates its one grant
   * in the same transaction (a failure applies neither). Publishes `review.approval` (not yet enough) or
   * `review.approved`. Throws ERR_NOT_FOUND; ERR_REVIEW_CONFLICT when this reviewer already approved or
   * the review is no longer pending; ERR_REVIEW_EXPIRED when it expired, and past `expiresAt` a pending
   * review is first marked expired (committed, `review.expired` published), so an approval racing the
   * expiry either lands before it or finds the review expired.
   */
  approveReview(id: string, approval: ReviewApproval): Promise<ApprovalOutcome>;
  /**
   * Ends a pending review once: read and write are one transaction (only a pending review changes), so of
   * resolutions and approvals racing exactly one decides; publishes `review.<status>`. Undefined when the review is
   * unknown or no longer pending (someone else decided first).
   */
  resolveReview(id: string, resolution: ReviewResolution): Promise<Review | undefined>;
  /**
   * Marks an approved review's request as sent again: one transaction, so of claims racing exactly one
   * wins. Undefined unless the review is approved, was answered at once, belongs to `claim.requester`, has
   * `claim.binding`, was approved no longer than its window before `claim.at`, and was not re-sent before.
   */
  claimResend(id: string, claim: ResendClaim): Promise<Review | undefined>;
  /** Newest first, filtered. */
  listGrants(filter?: GrantFilter): Promise<Grant[]>;
  /** The grant of `sub` on `connection` that lasts longest beyond `at`, if any. */
  activeGrant(sub: string, connection: string, at: number): Promise<Grant | undefined>;
  getGrant(id: string): Promise<Grant | undefined>;
  /**
   * Ends a grant at `at` (its `expiresAt` becomes `at`) in one transaction: only a grant still in force at
   * `at` changes. Resolves to the ended grant, or undefined when it is unknown or already over. Publishes
   * `grant.revoked` (with `revocation`'s actor and reason) as part of the change, so the gateways holding
   * tunnels the grant let in close them at once rather than at the grant's old end (grant-gate.ts).
   */
  revokeGrant(id: string, at: number, revocation?: GrantRevocation): Promise<Grant | undefined>;

  /**
   * Takes one of `sub`'s places under `tunnel.max_per_user` for a tunnel on `replica`: a create at a limit,
   * counting `sub`'s slots on every replica and inserting in one statement (Postgres: one transaction
   * serialized per `sub`), so of N takes racing exactly `limit` minus those held succeed. Resolves to the
   * slot's id, or undefined when `sub` already holds `limit`.
   */
  acquireTunnelSlot(sub: string, replica: string, limit: number): Promise<string | undefined>;
  /** Gives a slot back; a no-op when it is already gone. */
  releaseTunnelSlot(slot: string): Promise<void>;
  /**
   * Removes every slot of `replica`, tunnel places and quota slots alike (it stopped without closing its
   * tunnels or ending its calls); resolves to how many.
   */
  clearTunnelSlots(replica: string): Promise<number>;
  /**
   * Takes one slot under each quota's `concurrent_streams` for a call on `replica`, all or none: counting
   * each key's slots on every replica and inserting is one transaction (Postgres: serialized per key), so of
   * N takes racing exactly `limit` minus those held succeed. Resolves to the slots' ids, or to the index of
   * the first take whose key already holds `limit` (nothing is taken then). Freed by `releaseQuotaSlots`,
   * or with the replica's other slots by `clearTunnelSlots`.
   */
  acquireQuotaSlots(takes: readonly QuotaSlotTake[], replica: string): Promise<string[] | number>;
  /** Gives quota slots back; ids already gone are ignored. */
  releaseQuotaSlots(slots: readonly string[]): Promise<void>;

  /**
   * The replicas that own open state, sorted by id: an `open` session, a pending review whose caller they
   * hold (`NewReview.replica`), or a tunnel or quota slot. What a replica that died leaves for the others to sweep.
   */
  replicasWithOpenState(): Promise<string[]>;

  /** Stores a session's wrapped data key once; rejects if the session already has one. */
  putSessionKey(sessionId: string, key: WrappedSessionKey): Promise<void>;
  getSessionKey(sessionId: string): Promise<WrappedSessionKey | undefined>;
  /**
   * Erasure: destroys the wrapped key (the recording stays, unreadable); resolves to whether it existed.
   * Once it resolves, the key's bytes are in none of the files the backend keeps live, journals and
   * write-ahead logs included (SQLite: deleted rows zeroed, the WAL checkpointed and emptied); it rejects
   * when it cannot promise that, and a retry (the key already gone) finishes the job. Backups of the
   * backend keep the key until they expire, and are the operator's to age out. Postgres promises less: the
   * row is deleted and its table vacuumed, but freed page space and the write-ahead log (until its segment
   * is recycled; archived WAL as long as it is kept) may still hold the bytes: README, PostgreSQL.
   */
  deleteSessionKey(sessionId: string): Promise<boolean>;

  /** Records that `replica` is alive at `at` (a heartbeat). */
  heartbeat(replica: string, at: number): Promise<void>;
  /** Replicas whose last heartbeat is at or after `since`, sorted by id. */
  liveReplicas(since: number): Promise<string[]>;
  /**
   * Takes or renews the lease `name` for `holder` until `at + ttlMs`, atomically (one conditional update):
   * true when the lease was free, expired at `at`, or already held by `holder`; false when another holder has it.
   */
  acquireLease(name: string, holder: string, at: number, ttlMs: number): Promise<boolean>;
  /** Gives the lease up early; a no-op unless `holder` holds it. */
  releaseLease(name: string, holder: string): Promise<void>;

  /**
   * Takes from windowed quota counters in one step, atomically across replicas: when every take fits
   * (`count + max(add, 1) <= limit`, so a take adding 0 still needs one unit left), each adds its `add`
   * and the result is undefined; otherwise nothing is added and the result is the index of the first take
   * that does not fit. Counters of the same keys whose windows expired by `now` are forgotten.
   */
  takeQuotas(takes: readonly QuotaTake[], now: number): Promise<number | undefined>;
  /** Adds to windowed quota counters without a limit (tokens, once an answer's usage is known). */
  addQuotaUsage(adds: readonly QuotaAdd[]): Promise<void>;
  /** A counter's count in one window; 0 when it has none. */
  quotaCount(key: string, window: number): Promise<number>;

  /**
   * Appends runs of audit events to the outbox, each entry one row (the emitter writes one per sink per
   * flush, so a row costs the database once however many events it carries), in one transaction and in
   * the given order; then, past `max` events in all, removes the oldest rows whole (whatever their sink)
   * in the same transaction. Resolves to how many events it removed: events some sink will never receive.
   */
  appendAuditEvents(entries: readonly AuditOutboxEntry[], max: number): Promise<number>;
  /**
   * Takes or renews the lease of `sink` for `holder` until `at + leaseMs` (as `acquireLease`, under the name
   * `audit-sink:<sink>`) and reads the sink's oldest rows holding at most `limit` events together (always at
   * least one row, whatever its size), in one transaction: of replicas claiming at once exactly one gets
   * rows, so no two send one batch at the same time. Undefined when another holder has the lease; rows in
   * append order otherwise (none when the sink is caught up). `delivered` (seqs of `sink`, as `ackAuditEvents`
   * takes them) are removed first in the same transaction, whether or not the lease is still held: a sender
   * acks one batch with the claim of the next rather than paying a transaction of its own.
   */
  claimAuditBatch(sink: string, holder: string, at: number, leaseMs: number, limit: number, delivered?: readonly number[]): Promise<AuditOutboxRow[] | undefined>;
  /** Removes delivered rows of `sink`; rows already gone (dropped at the cap) are ignored. */
  ackAuditEvents(sink: string, seqs: readonly number[]): Promise<void>;
  /** Events waiting in the outbox for `sink`, or for every sink when it is absent. */
  auditOutboxDepth(sink?: string): Promise<number>;

  /**
   * Resolves when the backend answers a trivial statement now; rejects (ERR_STORE_UNAVAILABLE for a
   * database that cannot be reached) otherwise. What `/readyz` asks, so a load balancer stops sending new
   * sessions to a replica whose database is gone, and sends them again once it is back.
   */
  ping(): Promise<void>;

  close(): Promise<void>;
}

/** A run of audit events bound for one sink: one outbox row (see `Store.appendAuditEvents`). */
export interface AuditOutboxEntry {
  /** The sink's name (`audit.sinks[].name`). */
  readonly sink: string;
  /** The events as the sink receives them, oldest first: JSON documents (never empty, no raw line break in one). */
  readonly docs: readonly string[];
}

/** An outbox row as a sink's claim reads it; `seq` grows with every row appended, across replicas. */
export interface AuditOutboxRow extends AuditOutboxEntry {
  readonly seq: number;
}

/** One windowed counter a quota takes from (see `Store.takeQuotas`). */
export interface QuotaTake {
  /** Names the rule, what it counts and whose count it is. */
  readonly key: string;
  /** Start of the counter's window (ms since the epoch): each window counts from zero. */
  readonly window: number;
  /** When the window is over and its count may be forgotten (ms since the epoch). */
  readonly expiresAt: number;
  readonly limit: number;
  /** What the take adds when every take fits; 0 only checks that some of the budget is left. */
  readonly add: number;
}

/** One slot a call takes under a quota's `concurrent_streams` (see `Store.acquireQuotaSlots`). */
export interface QuotaSlotTake {
  /** Names the rule and whose calls it counts. */
  readonly key: string;
  readonly limit: number;
}

/** An amount added to a windowed counter (see `Store.addQuotaUsage`). */
export interface QuotaAdd {
  readonly key: string;
  readonly window: number;
  readonly expiresAt: number;
  readonly amount: number;
}

/** Zeroed counters. */
export const NO_COUNTERS: SessionCounters = Object.freeze({ requests: 0, errors: 0, bytesUp: 0, bytesDown: 0, denied: 0, held: 0, masked: 0 });

/** Zeroed token usage. */
export const NO_TOKENS: TokenUsage = Object.freeze({ prompt: 0, completion: 0, total: 0 });
