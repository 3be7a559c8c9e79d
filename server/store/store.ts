/**
 * The `Store`: the session index, reviews and grants. Every backend (SQLite embedded, Postgres for
 * scale-out) implements this interface and passes `test/helpers/store-conformance.ts`. Methods are
 * asynchronous even where SQLite is not, so a networked backend fits the same contract. Times are
 * milliseconds since the epoch.
 */

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
  /** The session file, relative to `storage.dir`. */
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

/** Increments and facts learned while a session runs; counters and tokens are added, models merged. */
export interface SessionProgress {
  readonly counters?: Partial<SessionCounters>;
  readonly tokens?: Partial<TokenUsage>;
  readonly models?: readonly string[];
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

/** A page of sessions, newest first; `next` is absent on the last page. */
export interface SessionPage {
  readonly sessions: SessionInfo[];
  readonly next?: string;
}

/** State of a review: a held request waiting for a human. */
export type ReviewStatus = 'pending' | 'approved' | 'rejected' | 'expired';

/** A held request. The approval stage fills in what it needs; `summary` is free-form and never holds masked values. */
export interface ReviewRecord {
  readonly id: string;
  readonly sessionId: string;
  readonly exchangeId: string;
  readonly requester: string;
  readonly connection: string;
  readonly rule: string;
  readonly reviewers: readonly string[];
  readonly status: ReviewStatus;
  readonly createdAt: number;
  readonly expiresAt?: number;
  readonly decidedBy?: string;
  readonly decidedAt?: number;
  readonly note?: string;
  readonly summary?: Record<string, unknown>;
}

/** What a reviewer decided. */
export interface ReviewResolution {
  readonly status: Exclude<ReviewStatus, 'pending'>;
  readonly decidedBy?: string;
  readonly decidedAt: number;
  readonly note?: string;
}

/** A time-boxed permission that lets matching requests skip review. */
export interface GrantRecord {
  readonly id: string;
  readonly user: string;
  readonly connection: string;
  readonly rule?: string;
  readonly grantedBy: string;
  readonly createdAt: number;
  readonly expiresAt: number;
}

/** Something every replica must learn: today, a review was resolved (possibly by another replica). */
export interface StoreAnnouncement {
  readonly kind: 'review.resolved';
  readonly reviewId: string;
  readonly status: Exclude<ReviewStatus, 'pending'>;
}

/** A session's data key, wrapped (AES-256-GCM) by the master key `keyId`; erasing it makes the session unreadable. */
export interface WrappedSessionKey {
  readonly keyId: string;
  readonly wrapped: Buffer;
}

/** Stops a subscription. */
export type Unsubscribe = () => void;

/** The gateway's durable index; one implementation per backend, one conformance suite for all. */
export interface Store {
  /** Adds an `open` session; rejects if the id exists. */
  createSession(session: NewSession): Promise<void>;
  /** Adds counters and tokens, merges models; unknown ids are ignored. */
  updateSession(id: string, progress: SessionProgress): Promise<void>;
  /** Seals a session (closed or interrupted); unknown ids are ignored. */
  closeSession(id: string, seal: SessionSeal): Promise<void>;
  getSession(id: string): Promise<SessionInfo | undefined>;
  /** Newest first, filtered, paged. */
  listSessions(filter?: SessionFilter): Promise<SessionPage>;
  /** Marks every `open` session of `replica` interrupted (after a crash); returns their ids. */
  interruptOpenSessions(replica: string, endedAt: number): Promise<string[]>;
  /** Sealed sessions started before `before`, oldest first, at most `limit`. */
  expiredSessions(before: number, limit: number): Promise<SessionInfo[]>;
  /** Removes a session from the index. */
  deleteSession(id: string): Promise<void>;

  createReview(review: ReviewRecord): Promise<void>;
  getReview(id: string): Promise<ReviewRecord | undefined>;
  /** Newest first. */
  listReviews(filter?: { status?: ReviewStatus; limit?: number }): Promise<ReviewRecord[]>;
  /**
   * Resolves a pending review and announces it; resolves to the updated review, or undefined when the
   * review is unknown or no longer pending (another replica or the timeout won the race).
   */
  resolveReview(id: string, resolution: ReviewResolution): Promise<ReviewRecord | undefined>;

  createGrant(grant: GrantRecord): Promise<void>;
  /** Grants of `user` on `connection` in force at `at`. */
  activeGrants(user: string, connection: string, at: number): Promise<GrantRecord[]>;
  /** Ends a grant now; resolves to whether it existed. */
  revokeGrant(id: string): Promise<boolean>;

  /** Stores a session's wrapped data key once; rejects if the session already has one. */
  putSessionKey(sessionId: string, key: WrappedSessionKey): Promise<void>;
  getSessionKey(sessionId: string): Promise<WrappedSessionKey | undefined>;
  /** Erasure: destroys the wrapped key (the recording stays, unreadable); resolves to whether it existed. */
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

  /** Receives announcements from every replica (in-process for SQLite; LISTEN/NOTIFY for Postgres). */
  subscribe(listener: (announcement: StoreAnnouncement) => void): Unsubscribe;
  /** Publishes an announcement to every subscriber, on every replica. */
  announce(announcement: StoreAnnouncement): Promise<void>;

  close(): Promise<void>;
}

/** Zeroed counters. */
export const NO_COUNTERS: SessionCounters = Object.freeze({ requests: 0, errors: 0, bytesUp: 0, bytesDown: 0, denied: 0, held: 0, masked: 0 });

/** Zeroed token usage. */
export const NO_TOKENS: TokenUsage = Object.freeze({ prompt: 0, completion: 0, total: 0 });
