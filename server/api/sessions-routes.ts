import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { z } from 'zod';
import { SluiceError } from '../../shared/errors.js';
import { resendOfFilter, type SessionJson, type VerifySummaryJson } from '../../shared/sessions-api.js';
import { VERSION } from '../../shared/version.js';
import type { Config } from '../config/schema.js';
import type { GatewayDeps } from '../gateway-deps.js';
import type { Principal } from '../identity/principal.js';
import { isArchiveNotFound, isMissingObject } from '../recording/archive/archive.js';
import type { RecordedEvent } from '../recording/event-types.js';
import { asciicastLines } from '../recording/export-asciicast.js';
import { eventLine, siemLine, streamErrorLine } from '../recording/export-event-lines.js';
import { ExchangeTracker } from '../recording/export-exchanges.js';
import { GrpcCallTracker } from '../recording/grpc-call-facts.js';
import { harLines } from '../recording/export-har.js';
import { openSessionEvents } from '../recording/export-reader.js';
import type { Recording } from '../recording/recording.js';
import { assertCanRead, assertCanSee, canReadContents, listingUser } from '../recording/session-access.js';
import { verifySession } from '../recording/verify-session.js';
import type { SessionInfo, Store } from '../store/store.js';
import { instant, parseQuery } from './query-params.js';

const listQuery = z.strictObject({
  user: z.string().min(1).optional(),
  connection: z.string().min(1).optional(),
  since: instant.optional(),
  until: instant.optional(),
  model: z.string().min(1).optional(),
  status: z.enum(['open', 'closed', 'interrupted']).optional(),
  resend_of: resendOfFilter.optional(),
  limit: z.coerce.number().int().min(1).max(500).default(50),
  cursor: z.string().min(1).optional(),
});

const flag = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');

const eventsQuery = z.strictObject({
  from_seq: z.coerce.number().int().min(0).default(0),
  payload: flag.default(true),
});

const exportQuery = z.strictObject({
  format: z.enum(['har', 'jsonl', 'asciicast']),
  exchange: z.string().min(1).max(100).optional(),
});

const iso = (ms: number | undefined): string | null => (ms === undefined ? null : new Date(ms).toISOString());

/** The index row as the API shows it. */
export function sessionJson(s: SessionInfo, config: Config): SessionJson {
  return {
    id: s.id,
    user: { sub: s.user, email: s.email ?? null },
    groups: [...s.groups],
    client_id: s.clientId ?? null,
    connection: s.connection,
    connection_type: config.connections.find((c) => c.name === s.connection)?.type ?? null,
    via: s.via,
    reason: s.reason ?? null,
    client_address: s.clientAddress,
    cli_version: s.cliVersion ?? null,
    resend_of: s.resendOf ?? null,
    started_at: new Date(s.startedAt).toISOString(),
    ended_at: iso(s.endedAt),
    status: s.status,
    records: s.records ?? null,
    final_hash: s.finalHash ?? null,
    key_id: s.keyId,
    file: s.file,
    models: [...s.models],
    tokens: { ...s.tokens },
    counters: {
      requests: s.counters.requests,
      errors: s.counters.errors,
      bytes_up: s.counters.bytesUp,
      bytes_down: s.counters.bytesDown,
      denied: s.counters.denied,
      held: s.counters.held,
      masked: s.counters.masked,
    },
    last_status: s.lastStatus,
  };
}

/**
 * Why a session the index lists has no file this replica can read, when it is still open on another
 * replica: it is appended in that replica's spool and reaches the archive only once sealed. That says
 * nothing about the recording, so it is no verdict on it. ERR_NOT_FOUND: the archive object does not
 * exist yet; no code of the table means "not yet" better.
 */
function openElsewhere(recording: Recording, s: SessionInfo, cause: unknown): SluiceError | undefined {
  if (s.status !== 'open' || s.replica === recording.replica || !isArchiveNotFound(cause)) return undefined;
  return new SluiceError('ERR_NOT_FOUND', {
    message: `Session ${s.id} is open on replica ${s.replica}, not yet archived: it can be read once that replica seals it`,
    details: { session: s.id, status: s.status, replica: s.replica },
    cause,
  });
}

/** A session's events (see openSessionEvents); ERR_NOT_FOUND for one still open on another replica. */
async function sessionEvents(recording: Recording, s: SessionInfo): Promise<AsyncGenerator<RecordedEvent>> {
  try {
    return await openSessionEvents(s.id, recording.source, s.file);
  } catch (err) {
    throw openElsewhere(recording, s, (err as Error).cause) ?? err;
  }
}

/**
 * Verifies a session's file (from the archive, or the spool while it is open) against what the index
 * knows. A running session has no checkpoint yet: when everything written so far is intact it is `open`,
 * not `interrupted`. Throws ERR_NOT_FOUND for a session open on another replica, not archived yet.
 */
export async function verifySummary(recording: Recording, s: SessionInfo): Promise<VerifySummaryJson> {
  const sealed = s.status === 'closed';
  let result;
  try {
    result = await verifySession(recording.source, s.file, {
      publicKey: recording.signingKey.publicKey,
      expect: sealed ? { sessionId: s.id, records: s.records, finalHash: s.finalHash } : { sessionId: s.id },
    });
  } catch (err) {
    const elsewhere = openElsewhere(recording, s, err);
    if (elsewhere !== undefined) throw elsewhere;
    // A name no file can have (an edited index row) is a missing file too.
    if (!isMissingObject(err)) throw err;
    return { status: 'broken', records: 0, last_good_seq: -1, last_good_offset: 0, problems: [{ kind: 'missing', record: -1, offset: 0, message: `The session file ${s.file} is missing` }] };
  }
  const status = s.status === 'open' && result.status === 'interrupted' ? 'open' : result.status;
  return {
    status,
    records: result.records,
    last_good_seq: result.lastGoodSeq,
    last_good_offset: result.lastGoodOffset,
    problems: result.problems.map((p) => ({ kind: p.kind, record: p.index, offset: p.offset, message: p.message })),
  };
}

/**
 * Sends a generated text stream. The first piece is produced before the status line goes out, so a
 * failure found at once (unreadable header, nothing to export) is an HTTP error; `Readable.from`
 * pulls the rest only as fast as the client reads (backpressure), and stops the generator (closing
 * the file) when the client goes away.
 */
async function sendStream(reply: FastifyReply, lines: AsyncGenerator<string>, headers: Record<string, string>): Promise<FastifyReply> {
  const first = await lines.next();
  const all = (async function* () {
    if (!first.done) yield first.value;
    yield* lines;
  })();
  reply.headers({ 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', ...headers });
  return reply.send(Readable.from(all, { objectMode: false, highWaterMark: 64 * 1024 }));
}

/**
 * `GET /v1/sessions` (filtered, paged index), `GET /v1/sessions/:id` (index row, verify verdict,
 * exchanges), `GET /v1/sessions/:id/events` (decrypted events streamed as NDJSON) and
 * `GET /v1/sessions/:id/export?format=har|jsonl|asciicast`. Auditors and admins see everything; other
 * users list their own sessions and read their contents only with `audit.users_read_own`.
 */
export function registerSessionsRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  const storage = (): { store: Store; recording: Recording } => {
    if (deps.store === undefined || deps.recording === undefined) {
      throw new SluiceError('ERR_NOT_FOUND', { message: 'Recording is not configured on this gateway (no storage.master_key)' });
    }
    return { store: deps.store, recording: deps.recording };
  };

  const sessionFor = async (principal: Principal, id: string): Promise<SessionInfo> => {
    const s = await storage().store.getSession(id);
    if (s === undefined) throw new SluiceError('ERR_NOT_FOUND', { message: `No session ${id}` });
    assertCanSee(principal, s);
    return s;
  };

  app.get('/v1/sessions', async (req) => {
    const principal = await deps.authenticate(req.headers);
    const q = parseQuery(listQuery, req.query);
    const user = listingUser(principal, q.user);
    let page;
    try {
      const { resend_of: resendOf, ...filter } = q;
      page = await storage().store.listSessions({ ...filter, ...(resendOf === undefined ? {} : { resendOf }), user });
    } catch (err) {
      if (err instanceof RangeError) throw new SluiceError('ERR_BAD_REQUEST', { message: `Invalid query: cursor: ${err.message}` });
      throw err;
    }
    const config = deps.config;
    return { sessions: page.sessions.map((s) => sessionJson(s, config)), next: page.next ?? null };
  });

  app.get('/v1/sessions/:id', async (req) => {
    const principal = await deps.authenticate(req.headers);
    const { recording } = storage();
    const s = await sessionFor(principal, (req.params as { id: string }).id);
    const verify = await verifySummary(recording, s);
    const readable = canReadContents(principal, s, deps.config.audit);
    let exchanges = null;
    if (readable && verify.records > 0) {
      const tracker = new ExchangeTracker();
      try {
        for await (const e of await sessionEvents(recording, s)) tracker.observe(e);
      } catch {
        // The verdict above already says where the file stops being readable; list what came before.
      }
      exchanges = tracker.exchanges;
    }
    return { session: sessionJson(s, deps.config), verify, contents: readable ? 'readable' : 'forbidden', exchanges: readable ? (exchanges ?? []) : null };
  });

  app.get('/v1/sessions/:id/events', async (req, reply) => {
    const principal = await deps.authenticate(req.headers);
    const q = parseQuery(eventsQuery, req.query);
    const { recording } = storage();
    const s = await sessionFor(principal, (req.params as { id: string }).id);
    assertCanRead(principal, s, deps.config.audit);
    const events = await sessionEvents(recording, s);
    const lines = async function* (): AsyncGenerator<string> {
      try {
        for await (const e of events) if (e.seq >= q.from_seq) yield eventLine(e, { payload: q.payload });
      } catch (err) {
        req.log.warn({ session: s.id, err: (err as Error).message }, 'session events stream ended early: the file cannot be read further');
        yield streamErrorLine(err);
      }
    };
    return sendStream(reply, lines(), { 'content-type': 'application/x-ndjson; charset=utf-8', 'x-sluice-session-status': s.status });
  });

  app.get('/v1/sessions/:id/export', async (req, reply) => {
    const principal = await deps.authenticate(req.headers);
    const q = parseQuery(exportQuery, req.query);
    const { recording } = storage();
    const s = await sessionFor(principal, (req.params as { id: string }).id);
    assertCanRead(principal, s, deps.config.audit);
    // An export is a document someone will rely on: it is made only from a file that verifies.
    const verify = await verifySummary(recording, s);
    if (verify.status === 'broken') {
      const p = verify.problems.find((x) => x.kind !== 'interrupted' && x.kind !== 'truncated') ?? verify.problems[0];
      throw new SluiceError('ERR_RECORDING_TAMPERED', {
        message: `Session ${s.id} does not verify, so it is not exported: ${p?.message ?? 'unknown problem'}`,
        details: { session: s.id, record: p?.record ?? -1, offset: p?.offset ?? 0, problems: verify.problems },
      });
    }
    const events = await sessionEvents(recording, s);
    const common = { 'x-sluice-verify': verify.status };
    switch (q.format) {
      case 'jsonl': {
        const ctx = { session: s.id, startedAt: s.startedAt, actor: s.user, connection: s.connection };
        const calls = new GrpcCallTracker();
        const lines = async function* (): AsyncGenerator<string> {
          for await (const e of events) yield siemLine(e, ctx, calls.observe(e));
        };
        return sendStream(reply, lines(), { ...common, 'content-type': 'application/x-ndjson; charset=utf-8', 'content-disposition': `attachment; filename="${s.id}.jsonl"` });
      }
      case 'har':
        return sendStream(reply, harLines(events, { sessionId: s.id, startedAt: s.startedAt, connection: s.connection, version: VERSION }), {
          ...common,
          'content-type': 'application/json; charset=utf-8',
          'content-disposition': `attachment; filename="${s.id}.har"`,
        });
      case 'asciicast':
        return sendStream(reply, asciicastLines(events, { sessionId: s.id, startedAt: s.startedAt, ...(q.exchange === undefined ? {} : { exchange: q.exchange }) }), {
          ...common,
          'content-type': 'application/x-asciicast; charset=utf-8',
          'content-disposition': `attachment; filename="${s.id}.cast"`,
        });
    }
  });
}
