import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { join, relative, resolve } from 'node:path';
import type { ConnectionConfig } from '../config/schema.js';
import type { Principal } from '../identity/principal.js';
import type { Recorder } from '../pipeline/recorder.js';
import type { ReadinessCheck } from '../readiness.js';
import type { Store } from '../store/store.js';
import { createDurableRecorder } from './durable-recorder.js';
import { nodeRecordingIo, type RecordingIo } from './file-io.js';
import type { KeyRing } from './key-ring.js';
import { HEADER_PREFIX, SESSION_FILE_SUFFIX } from './record-format.js';
import { describeStorageFailure, recordingUnavailable } from './recording-error.js';
import { RecordingSession, type SessionClosed } from './recording-session.js';
import { SealLog } from './seal-log.js';
import { sessionFileHead } from './session-file-scanner.js';
import { SessionWriter, type FsyncMode } from './session-writer.js';
import type { SigningKey } from './signing-key.js';

/** Where session files live under `storage.dir`. */
export const SESSIONS_DIR = 'sessions';

/** The minimal logger recording reports to. */
export interface RecordingLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** Options of `Recording.open`; defaults are resolved here and nowhere else. */
export interface RecordingOptions {
  /** `storage.dir`. */
  readonly dir: string;
  readonly keyRing: KeyRing;
  readonly signingKey: SigningKey;
  /** The session index; owned (and closed) by the caller. */
  readonly store: Store;
  /** File operations; tests inject faults here. Default: Node's fs. */
  readonly io?: RecordingIo;
  /** Default `batch`. */
  readonly fsync?: FsyncMode;
  /** Default 200 ms. */
  readonly fsyncIntervalMs?: number;
  /** Sessions older than this are destroyed by the sweep; default: kept forever. */
  readonly retentionDays?: number;
  /** How often the retention sweep runs; default 1 h. */
  readonly sweepIntervalMs?: number;
  /** How often index progress is written to the store; default 250 ms. */
  readonly progressIntervalMs?: number;
  /** This gateway's id among replicas sharing a store; default the host name. */
  readonly replica?: string;
  /** The seal log signs a checkpoint once this many entries are unsigned; default 32. */
  readonly sealCheckpointEvery?: number;
  /** ...and at least this often while any is; default 60 s. */
  readonly sealCheckpointIntervalMs?: number;
  readonly log?: RecordingLog;
}

/** What is known when a session opens. */
export interface SessionStart {
  readonly id: string;
  readonly principal: Principal;
  readonly connection: ConnectionConfig;
  readonly via: 'tunnel' | 'proxy';
  readonly reason?: string;
  readonly clientAddress: string;
  readonly cliVersion?: string;
  /** Set on a session opened to re-send a recorded exchange: `<session id>#<exchange number>`. */
  readonly resendOf?: string;
}

/** The session file's path relative to `storage.dir`: `sessions/YYYY/MM/DD/<id>.rec` by the UTC start date. */
export function sessionFilePath(id: string, startedAt: number): string {
  const d = new Date(startedAt);
  const two = (n: number): string => String(n).padStart(2, '0');
  return join(SESSIONS_DIR, String(d.getUTCFullYear()), two(d.getUTCMonth() + 1), two(d.getUTCDate()), `${id}${SESSION_FILE_SUFFIX}`);
}

const noLog: RecordingLog = { info: () => undefined, warn: () => undefined };

/**
 * The gateway's recording: opens and seals session files, keeps the index in step, serves the pipeline's
 * durable recorder, reports readiness, and destroys expired sessions. One per gateway process.
 */
export class Recording {
  readonly dir: string;
  readonly keyRing: KeyRing;
  readonly signingKey: SigningKey;
  readonly store: Store;
  /** The pipeline's recorder, writing into this recording's sessions. */
  readonly recorder: Recorder;
  readonly replica: string;
  readonly #o: RecordingOptions;
  readonly #io: RecordingIo;
  readonly #log: RecordingLog;
  readonly #sessions = new Map<string, Promise<RecordingSession>>();
  #failure: { cause: string; since: number } | undefined;
  #sealLog!: SealLog;
  #progressTimer: NodeJS.Timeout | undefined;
  #sweepTimer: NodeJS.Timeout | undefined;
  #closed = false;

  private constructor(options: RecordingOptions) {
    this.#o = options;
    this.dir = resolve(options.dir);
    this.keyRing = options.keyRing;
    this.signingKey = options.signingKey;
    this.store = options.store;
    this.#io = options.io ?? nodeRecordingIo;
    this.#log = options.log ?? noLog;
    this.replica = options.replica ?? hostname();
    this.recorder = createDurableRecorder({ recording: this });
  }

  /**
   * Opens the recording: opens (or starts) the seal log, marks sessions this replica left open (a crash)
   * interrupted and pins what their files hold in the seal log, starts the sweep.
   */
  static async open(options: RecordingOptions): Promise<Recording> {
    const recording = new Recording(options);
    recording.#sealLog = await SealLog.open({
      dir: recording.dir,
      signingKey: options.signingKey,
      checkpointEvery: options.sealCheckpointEvery,
      checkpointIntervalMs: options.sealCheckpointIntervalMs,
      log: recording.#log,
      onOutcome: (err) => recording.reportOutcome(err),
    });
    try {
      const endedAt = Date.now();
      const interrupted = await options.store.interruptOpenSessions(recording.replica, endedAt);
      if (interrupted.length > 0) recording.#log.warn({ sessions: interrupted }, 'sessions left open by a previous run are marked interrupted');
      for (const id of interrupted) {
        const s = await options.store.getSession(id);
        if (s !== undefined) await recording.#sealInterrupted(id, s.file, endedAt);
      }
    } catch (err) {
      await recording.#sealLog.close().catch(() => undefined);
      throw err;
    }
    if (options.retentionDays !== undefined) {
      const run = (): void => {
        recording.sweep().catch((err: unknown) => recording.#log.warn({ err: describeStorageFailure(err) }, 'retention sweep failed'));
      };
      run();
      recording.#sweepTimer = setInterval(run, options.sweepIntervalMs ?? 3_600_000);
      recording.#sweepTimer.unref();
    }
    return recording;
  }

  /** Why storage is failing (`disk full (ENOSPC)`), or undefined while it works. */
  get failureCause(): string | undefined {
    return this.#failure?.cause;
  }

  /** The gateway-wide chain of session seals. */
  get sealLog(): SealLog {
    return this.#sealLog;
  }

  /** PEM of the checkpoint signing key's public half. */
  get publicKeyPem(): string {
    return this.signingKey.publicKeyPem;
  }

  /** Opens a session: creates its file, indexes it, writes `session.start`. Opening an open id returns it. */
  openSession(start: SessionStart): Promise<RecordingSession> {
    const existing = this.#sessions.get(start.id);
    if (existing !== undefined) return existing;
    if (this.#closed) return Promise.reject(recordingUnavailable(new Error('the recording is closed')));
    const opening = this.#open(start);
    this.#sessions.set(start.id, opening);
    opening.catch(() => {
      if (this.#sessions.get(start.id) === opening) this.#sessions.delete(start.id);
    });
    return opening;
  }

  /** The open session with this id, if any (a promise while it opens). */
  session(id: string): Promise<RecordingSession> | undefined {
    return this.#sessions.get(id);
  }

  /** Whether the session has an exchange in flight. */
  async isBusy(id: string): Promise<boolean> {
    const s = await this.#sessions.get(id)?.catch(() => undefined);
    return s?.busy ?? false;
  }

  /** Ends a session (waits for exchanges in flight, seals, indexes); unknown ids are ignored. */
  async closeSession(id: string, reason: string): Promise<void> {
    const opening = this.#sessions.get(id);
    if (opening === undefined) return;
    let session: RecordingSession;
    try {
      session = await opening;
    } catch {
      return;
    }
    const closed = await session.close(reason, this.signingKey);
    if (closed.status === 'interrupted') this.reportOutcome(new Error('the session could not be sealed'));
    // Into the seal log before the index: an index row may be deleted or edited, the chained entry may not.
    await this.#sealIntoLog(session, closed);
    await this.#flushProgress(session);
    try {
      await this.store.closeSession(id, closed);
    } catch (err) {
      this.reportOutcome(err);
      this.#log.warn({ session: id, err: describeStorageFailure(err) }, 'the index could not record the end of a session');
    }
    if (this.#sessions.get(id) === opening) this.#sessions.delete(id);
  }

  /** Records the outcome of a storage operation: a failure makes the gateway unready until one succeeds. */
  reportOutcome(error: unknown): void {
    if (error === null || error === undefined) {
      if (this.#failure !== undefined) this.#log.info({ was: this.#failure.cause }, 'recording storage is writable again');
      this.#failure = undefined;
    } else if (this.#failure === undefined) {
      const cause = describeStorageFailure(error);
      this.#failure = { cause, since: Date.now() };
      this.#log.warn({ cause }, 'recording storage failed: exchanges are refused until it recovers');
    }
  }

  /** Notes that a session has index progress to write; writes are batched. */
  progressChanged(): void {
    if (this.#progressTimer !== undefined || this.#closed) return;
    this.#progressTimer = setTimeout(() => {
      this.#progressTimer = undefined;
      void this.#flushAllProgress();
    }, this.#o.progressIntervalMs ?? 250);
    this.#progressTimer.unref();
  }

  /**
   * The `recording` readiness check. While storage is failing it probes (write and sync a small file),
   * so the gateway turns ready again by itself once the disk recovers, even with no traffic.
   */
  async health(): Promise<ReadinessCheck> {
    if (this.#failure !== undefined) {
      try {
        await this.#probe();
        this.reportOutcome(null);
      } catch (err) {
        return { ok: false, message: `recording storage unwritable since ${new Date(this.#failure.since).toISOString()}: ${describeStorageFailure(err)}` };
      }
    }
    return { ok: true };
  }

  /** Destroys sessions past retention: the wrapped key is overwritten, then the file and the index row go. */
  async sweep(now = Date.now()): Promise<number> {
    const days = this.#o.retentionDays;
    if (days === undefined) return 0;
    const before = now - days * 86_400_000;
    let destroyed = 0;
    for (;;) {
      const batch = await this.store.expiredSessions(before, 100);
      if (batch.length === 0) return destroyed;
      for (const s of batch) {
        // Logged first: a session that vanishes with no entry saying so reads as tampered with.
        await this.#sealLog.append({ type: 'destroyed', session: s.id, at: Date.now() });
        await this.#destroyFile(join(this.dir, s.file));
        await this.store.deleteSession(s.id);
        destroyed++;
      }
      // Signed at once: a verifier trusts a `destroyed` entry only when a checkpoint covers it.
      await this.#sealLog.checkpoint();
      this.#log.info({ sessions: batch.map((s) => s.id) }, 'expired sessions destroyed');
    }
  }

  /** Seals every open session, signs the seal log's head, and stops timers; the store stays open (its owner closes it). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#sweepTimer);
    await Promise.all([...this.#sessions.keys()].map((id) => this.closeSession(id, 'gateway shutdown')));
    clearTimeout(this.#progressTimer);
    this.#progressTimer = undefined;
    await this.#flushAllProgress();
    await this.#sealLog.close().catch((err: unknown) => this.#log.warn({ err: describeStorageFailure(err) }, 'the seal log could not be signed at shutdown'));
  }

  async #open(start: SessionStart): Promise<RecordingSession> {
    const startedAt = Date.now();
    const file = sessionFilePath(start.id, startedAt);
    const writer = await SessionWriter.create({
      io: this.#io,
      path: join(this.dir, file),
      sessionId: start.id,
      created: startedAt,
      keyRing: this.keyRing,
      fsync: this.#o.fsync ?? 'batch',
      fsyncIntervalMs: this.#o.fsyncIntervalMs ?? 200,
      onOutcome: (err) => this.reportOutcome(err),
    });
    const { principal, connection } = start;
    try {
      await this.store.createSession({
        id: start.id,
        user: principal.sub,
        email: principal.email,
        groups: principal.groups,
        clientId: principal.clientId,
        connection: connection.name,
        via: start.via,
        reason: start.reason,
        clientAddress: start.clientAddress,
        cliVersion: start.cliVersion,
        resendOf: start.resendOf,
        startedAt,
        file,
        keyId: writer.keyId,
        replica: this.replica,
      });
    } catch (err) {
      this.reportOutcome(err);
      await writer.close().catch(() => undefined);
      await this.#io.remove(join(this.dir, file)).catch(() => undefined);
      throw recordingUnavailable(err, 'the session index');
    }
    const session = new RecordingSession(start.id, writer);
    try {
      await session.append('session.start', {
        session: start.id,
        started_at: startedAt,
        user: {
          sub: principal.sub,
          ...(principal.email === undefined ? {} : { email: principal.email }),
          groups: principal.groups,
          ...(principal.clientId === undefined ? {} : { client_id: principal.clientId }),
          issuer: principal.issuer,
        },
        connection: { name: connection.name, type: connection.type },
        via: start.via,
        ...(start.reason === undefined ? {} : { reason: start.reason }),
        client_address: start.clientAddress,
        ...(start.cliVersion === undefined ? {} : { cli_version: start.cliVersion }),
        record: { request_body: connection.record.request_body, response_body: connection.record.response_body, raw: connection.record.raw },
        ...(start.resendOf === undefined ? {} : { resend_of: start.resendOf }),
        seal_log: this.#sealLog.id,
      });
    } catch (err) {
      await writer.close().catch(() => undefined);
      const endedAt = Date.now();
      await this.#sealInterrupted(start.id, file, endedAt);
      await this.store.closeSession(start.id, { status: 'interrupted', endedAt }).catch(() => undefined);
      throw err;
    }
    return session;
  }

  /** Appends a closed session's seal to the seal log; a failure makes the gateway unready and is retried with the next entry. */
  async #sealIntoLog(session: RecordingSession, closed: SessionClosed): Promise<void> {
    const file = relative(this.dir, session.writer.path);
    if (closed.status === 'interrupted' || closed.records === undefined || closed.headHash === undefined) {
      await this.#sealInterrupted(session.id, file, closed.endedAt);
      return;
    }
    try {
      await this.#sealLog.append({ type: 'seal', session: session.id, file, status: 'closed', records: closed.records, finalHash: closed.headHash, sealedAt: closed.endedAt });
    } catch (err) {
      this.#log.warn({ session: session.id, err: describeStorageFailure(err) }, 'the seal log could not record a sealed session; it is retried with the next entry');
    }
  }

  /**
   * Pins what an unsealed session's file holds (whole records, last hash) in the seal log, so cutting it
   * further later is seen. Best effort: a file that cannot be read has nothing to pin.
   */
  async #sealInterrupted(id: string, file: string, endedAt: number): Promise<void> {
    let head: { records: number; head: string };
    try {
      head = await sessionFileHead(join(this.dir, file));
    } catch (err) {
      this.#log.warn({ session: id, err: describeStorageFailure(err) }, 'an interrupted session file cannot be read, so the seal log cannot pin it');
      return;
    }
    try {
      await this.#sealLog.append({ type: 'seal', session: id, file, status: 'interrupted', records: head.records, finalHash: head.head, sealedAt: endedAt });
    } catch (err) {
      this.#log.warn({ session: id, err: describeStorageFailure(err) }, 'the seal log could not record an interrupted session; it is retried with the next entry');
    }
  }

  async #flushAllProgress(): Promise<void> {
    for (const opening of [...this.#sessions.values()]) {
      const session = await opening.catch(() => undefined);
      if (session !== undefined) await this.#flushProgress(session);
    }
  }

  async #flushProgress(session: RecordingSession): Promise<void> {
    const progress = session.takeProgress();
    if (progress === undefined) return;
    try {
      await this.store.updateSession(session.id, progress);
    } catch (err) {
      session.restoreProgress(progress);
      this.reportOutcome(err);
      this.progressChanged();
    }
  }

  async #probe(): Promise<void> {
    const path = join(this.dir, SESSIONS_DIR, `.probe-${randomBytes(6).toString('hex')}`);
    await this.#io.mkdir(join(this.dir, SESSIONS_DIR));
    const file = await this.#io.create(path);
    try {
      await file.writev([Buffer.from('probe')]);
      await file.sync();
    } finally {
      await file.close().catch(() => undefined);
      await this.#io.remove(path).catch(() => undefined);
    }
  }

  /** Overwrites the header (which holds the wrapped data key) with zeros, then removes the file. */
  async #destroyFile(path: string): Promise<void> {
    let file;
    try {
      file = await this.#io.openExisting(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    try {
      // The header is small; 4 KiB covers it and never reaches past what erasure needs.
      await file.writeAt(Buffer.alloc(4096 + HEADER_PREFIX), 0);
      await file.sync();
    } finally {
      await file.close();
    }
    await this.#io.remove(path);
  }
}
