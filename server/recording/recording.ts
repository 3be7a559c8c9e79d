import { basename, resolve } from 'node:path';
import type { SluiceError } from '../../shared/errors.js';
import { systemClock, type Clock } from '../clock.js';
import type { AuditEvents } from '../audit-sinks/audit-events.js';
import type { ConnectionConfig } from '../config/schema.js';
import type { Principal } from '../identity/principal.js';
import type { Recorder } from '../pipeline/recorder.js';
import type { ReadinessCheck } from '../readiness.js';
import { replicaIdOf } from '../replica/replica-config.js';
import type { Store } from '../store/store.js';
import type { RecordingArchive } from './archive/archive.js';
import { FsArchive } from './archive/fs-archive.js';
import { createDurableRecorder } from './durable-recorder.js';
import { nodeRecordingIo, type RecordingIo } from './file-io.js';
import type { KeyRing } from './key-ring.js';
import type { RecorderSessions } from './recorder-sessions.js';
import { describeStorageFailure, recordingUnavailable } from './recording-error.js';
import { noLog, type RecordingLog } from './recording-log.js';
import { OpenSessionFile, type SessionClosed } from './open-session-file.js';
import { RetentionSweep } from './retention-sweep.js';
import { SealLog } from './seal-log.js';
import { sessionObjectHead } from './session-file-scanner.js';
import { SessionIndexer } from './session-indexer.js';
import type { SessionSource } from './session-source.js';
import { SessionSpool } from './session-spool.js';
import { withSegmentsDeleted } from './segmented-archive.js';
import type { ShippingSettings, SpoolStats } from './spool-shipper.js';
import { SESSION_FILE_SUFFIX, type RecordCompression } from './record-format.js';
import { verifySession } from './verify-session.js';
import { SessionWriter, type FsyncMode } from './session-writer.js';
import type { SigningKey } from './signing-key.js';
import { StorageHealth } from './storage-health.js';
import { sessionObjectName } from './storage-layout.js';

/** Options of `Recording.open`; defaults are resolved here and nowhere else. */
export interface RecordingOptions {
  /** `storage.dir`. */
  readonly dir: string;
  readonly keyRing: KeyRing;
  readonly signingKey: SigningKey;
  /** The session index (and sessions' wrapped data keys); owned (and closed) by the caller. */
  readonly store: Store;
  /** Where sealed sessions are kept. Default: the directory archive over `dir`. */
  readonly archive?: RecordingArchive;
  /** Where open sessions are appended. Default: `dir`, where the directory archive keeps them once sealed. */
  readonly spoolDir?: string;
  /** Spool file operations; tests inject faults here. Default: Node's fs. */
  readonly io?: RecordingIo;
  /** Default `batch`. */
  readonly fsync?: FsyncMode;
  /** Default 200 ms. */
  readonly fsyncIntervalMs?: number;
  /** Whether new session files compress their records (`storage.compression`); default as the writer's, `deflate`. */
  readonly compression?: RecordCompression;
  /** Sessions older than this are destroyed by the sweep; default: kept forever. */
  readonly retentionDays?: number;
  /** How often the retention sweep runs; default 1 h. */
  readonly sweepIntervalMs?: number;
  /** How often index progress is written to the store; default 250 ms. */
  readonly progressIntervalMs?: number;
  /** This gateway's id among replicas sharing a store (`replica.id`); default as `replica.id`'s, worker 0. */
  readonly replica?: string;
  /** This process's worker number under `serve --workers N`: each worker appends to a seal log of its own. Default 0 (`seals.log`). */
  readonly worker?: number;
  /** What the retention sweep's lease and cutoff are timed by. Default: the system clock. */
  readonly clock?: Clock;
  /** The seal log signs a checkpoint once this many entries are unsigned; default 32. */
  readonly sealCheckpointEvery?: number;
  /** ...and at least this often while any is; default 60 s. */
  readonly sealCheckpointIntervalMs?: number;
  /** Retries, backoff and the spool's cap when sealed sessions are shipped to another archive; defaults in SHIPPER_DEFAULTS. */
  readonly shipping?: ShippingSettings;
  /** How often (`storage.upload_interval`) and in what size (`storage.segment_max`) open sessions go to such an archive as segments; defaults in SEGMENT_DEFAULTS. */
  readonly segments?: { readonly intervalMs?: number; readonly segmentMaxBytes?: number };
  readonly log?: RecordingLog;
  /** Told `session.opened` and `session.closed`. Default: nothing told. */
  readonly audit?: AuditEvents;
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

/**
 * The gateway's recording, composed of named parts: the spool (open sessions are appended there), the
 * archive (sealed sessions are handed to it), the indexer (keeps the store in step), the seal log, the
 * storage health (readiness) and the retention sweep. It opens and seals sessions and serves the
 * pipeline's durable recorder. One per gateway process.
 */
export class Recording implements RecorderSessions {
  readonly dir: string;
  readonly keyRing: KeyRing;
  readonly signingKey: SigningKey;
  readonly store: Store;
  readonly archive: RecordingArchive;
  readonly spool: SessionSpool;
  /** Where every reader finds a session: the archive (or this replica's spool, while it is open) and the index's keys. */
  readonly source: SessionSource;
  /** The pipeline's recorder, writing into this recording's sessions. */
  readonly recorder: Recorder;
  readonly replica: string;
  readonly #o: RecordingOptions;
  readonly #io: RecordingIo;
  readonly #log: RecordingLog;
  readonly #health: StorageHealth;
  readonly #indexer: SessionIndexer;
  readonly #sessions = new Map<string, Promise<OpenSessionFile>>();
  /** Sessions being closed, by id: a second close of one waits for the first rather than sealing it again. */
  readonly #closing = new Map<string, Promise<void>>();
  #sealLog!: SealLog;
  #sweep: RetentionSweep | undefined;
  #closed = false;

  private constructor(options: RecordingOptions) {
    this.#o = options;
    this.dir = resolve(options.dir);
    this.keyRing = options.keyRing;
    this.signingKey = options.signingKey;
    this.store = options.store;
    this.#io = options.io ?? nodeRecordingIo;
    this.#log = options.log ?? noLog;
    this.replica = options.replica ?? replicaIdOf(undefined);
    this.archive = options.archive ?? new FsArchive({ root: this.dir });
    this.spool = new SessionSpool({
      root: options.spoolDir ?? this.dir,
      io: this.#io,
      archive: this.archive,
      ...(options.shipping === undefined ? {} : { shipping: options.shipping }),
      ...(options.segments === undefined ? {} : { segments: options.segments }),
      // A file that does not verify on its own is not put where every replica and auditor reads it as evidence.
      check: (name) => this.#brokenBecause(name),
      log: this.#log,
    });
    this.source = { objects: this.spool.reader, keys: this.store, keyRing: this.keyRing };
    this.#health = new StorageHealth({ probe: () => this.spool.probe(), log: this.#log });
    this.#indexer = new SessionIndexer({
      store: this.store,
      progressIntervalMs: options.progressIntervalMs ?? 250,
      openSessions: () => this.#sessions.values(),
      onFailure: (err) => this.reportOutcome(err),
      log: this.#log,
    });
    this.recorder = createDurableRecorder({ recording: this });
  }

  /**
   * Opens the recording: opens (or starts) the seal log, marks sessions this replica left open (a crash)
   * interrupted, pins what their files hold in the seal log and hands them to the archive, starts the sweep.
   */
  static async open(options: RecordingOptions): Promise<Recording> {
    const recording = new Recording(options);
    recording.#sealLog = await SealLog.open({
      dir: recording.dir,
      signingKey: options.signingKey,
      worker: options.worker ?? 0,
      checkpointEvery: options.sealCheckpointEvery,
      checkpointIntervalMs: options.sealCheckpointIntervalMs,
      log: recording.#log,
      onOutcome: (err) => recording.reportOutcome(err),
    });
    try {
      const interrupted = await recording.interruptSessionsOf(recording.replica, Date.now());
      if (interrupted.length > 0) recording.#log.warn({ sessions: interrupted }, 'sessions left open by a previous run are marked interrupted');
      const leftovers = await recording.spool.recover((name) => recording.#finishedElsewhere(name));
      if (leftovers > 0) recording.#log.info({ sessions: leftovers }, 'finished sessions a previous run left in the spool are shipped to the archive');
    } catch (err) {
      await recording.#sealLog.close().catch(() => undefined);
      throw err;
    }
    if (options.retentionDays !== undefined) {
      recording.#sweep = new RetentionSweep({
        store: options.store,
        // A destroyed session's segments go with it (an unsealed one exists only as segments).
        archive: withSegmentsDeleted(recording.archive),
        sealLog: recording.#sealLog,
        retentionDays: options.retentionDays,
        intervalMs: options.sweepIntervalMs ?? 3_600_000,
        replica: recording.replica,
        clock: options.clock ?? systemClock,
        log: recording.#log,
        ...(options.audit === undefined ? {} : { audit: options.audit }),
      });
      recording.#sweep.start();
    }
    return recording;
  }

  /** Why storage is failing (`disk full (ENOSPC)`), or undefined while it works. */
  get failureCause(): string | undefined {
    return this.#health.failureCause;
  }

  /** The gateway-wide chain of session seals. */
  get sealLog(): SealLog {
    return this.#sealLog;
  }

  /** PEM of the checkpoint signing key's public half. */
  get publicKeyPem(): string {
    return this.signingKey.publicKeyPem;
  }

  /** Opens a session: creates its spool file, indexes it and its key, writes `session.start`. Opening an open id returns it. */
  openSession(start: SessionStart): Promise<OpenSessionFile> {
    const existing = this.#sessions.get(start.id);
    if (existing !== undefined) return existing;
    if (this.#closed) return Promise.reject(recordingUnavailable(new Error('the recording is closed')));
    // Refused like a session whose file could not be created: its recorder finds the reason in the opening.
    const full = this.spool.refusal();
    const opening = full === undefined ? this.#open(start) : Promise.reject(full);
    this.#sessions.set(start.id, opening);
    opening.catch(() => {
      if (this.#sessions.get(start.id) === opening) this.#sessions.delete(start.id);
    });
    return opening;
  }

  /** The open session with this id, if any (a promise while it opens). */
  session(id: string): Promise<OpenSessionFile> | undefined {
    return this.#sessions.get(id);
  }

  /** Whether the session has an exchange in flight. */
  async isBusy(id: string): Promise<boolean> {
    const s = await this.#sessions.get(id)?.catch(() => undefined);
    return s?.busy ?? false;
  }

  /**
   * Ends a session (waits for exchanges in flight, seals, hands the file to the archive, indexes); unknown ids
   * are ignored. Closing a session already closing resolves with that close: a tunnel open at shutdown is closed
   * both by the shutdown and by its own end, and its seal must enter the seal log once.
   */
  closeSession(id: string, reason: string): Promise<void> {
    const running = this.#closing.get(id);
    if (running !== undefined) return running;
    const opening = this.#sessions.get(id);
    if (opening === undefined) return Promise.resolve();
    const closing = this.#finishSession(id, opening, reason).finally(() => this.#closing.delete(id));
    this.#closing.set(id, closing);
    return closing;
  }

  async #finishSession(id: string, opening: Promise<OpenSessionFile>, reason: string): Promise<void> {
    let session: OpenSessionFile;
    try {
      session = await opening;
    } catch {
      return;
    }
    const closed = await session.close(reason, this.signingKey);
    if (closed.status === 'interrupted') this.reportOutcome(new Error('the session could not be sealed'));
    // Into the seal log before the index: an index row may be deleted or edited, the chained entry may not.
    await this.#sealIntoLog(session, closed);
    await this.#handOff(id, session.name);
    await this.#indexer.seal(session, closed);
    this.#o.audit?.emit('session.closed', { session: id, status: closed.status, reason, ...(closed.records === undefined ? {} : { records: closed.records }) });
    if (this.#sessions.get(id) === opening) this.#sessions.delete(id);
  }

  /** Records the outcome of a storage operation: a failure makes the gateway unready until one succeeds. */
  reportOutcome(error: unknown): void {
    this.#health.report(error);
  }

  /** Notes that a session has index progress to write; writes are batched. */
  progressChanged(): void {
    if (!this.#closed) this.#indexer.changed();
  }

  /**
   * The `recording` readiness check. While storage is failing it probes (write and sync a small file in
   * the spool), so the gateway turns ready again by itself once the disk recovers, even with no traffic.
   */
  async health(): Promise<ReadinessCheck & { spool?: SpoolStats }> {
    const check = await this.#health.check();
    // Said, not failed on: sessions waiting for the archive (or quarantined) leave the data path working.
    const spool = this.spool.stats();
    return spool === undefined ? check : { ...check, spool };
  }

  /** Why a new exchange must be refused although storage works: the spool is past `storage.spool_max`. */
  admission(): SluiceError | undefined {
    return this.spool.refusal();
  }

  /**
   * Destroys sessions past retention (see RetentionSweep); 0 when no retention is configured, undefined
   * when another replica holds the lease `retention` (and sweeps).
   */
  sweep(now?: number): Promise<number | undefined> {
    return this.#sweep?.sweep(now) ?? Promise.resolve(0);
  }

  /**
   * Marks the `open` sessions of `replica` interrupted: this replica's own at start (left open by a crash),
   * or a dead replica's (replica-sweeps.ts). What their files hold is pinned in the seal log and they are
   * handed to the archive where this replica can read them; a dead replica's spool on another host it
   * cannot, and that is logged. Resolves to their ids.
   */
  async interruptSessionsOf(replica: string, endedAt: number): Promise<string[]> {
    const interrupted = await this.store.interruptOpenSessions(replica, endedAt);
    for (const id of interrupted) {
      const s = await this.store.getSession(id);
      if (s === undefined) continue;
      await this.#sealInterrupted(id, s.file, endedAt);
      await this.#handOff(id, s.file);
      this.#o.audit?.emit('session.closed', { session: id, status: 'interrupted', reason: replica === this.replica ? 'left open by a previous run' : `replica ${replica} stopped` });
    }
    return interrupted;
  }

  /** Seals every open session, signs the seal log's head, and stops timers; the store stays open (its owner closes it). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#sweep?.stop();
    await Promise.all([...this.#sessions.keys()].map((id) => this.closeSession(id, 'gateway shutdown')));
    await this.spool.close();
    await this.#indexer.close();
    await this.#sealLog.close().catch((err: unknown) => this.#log.warn({ err: describeStorageFailure(err) }, 'the seal log could not be signed at shutdown'));
  }

  async #open(start: SessionStart): Promise<OpenSessionFile> {
    const startedAt = Date.now();
    const name = sessionObjectName(start.id, startedAt);
    const writer = await SessionWriter.create({
      io: this.#io,
      path: this.spool.pathOf(name),
      sessionId: start.id,
      created: startedAt,
      keyRing: this.keyRing,
      fsync: this.#o.fsync ?? 'batch',
      fsyncIntervalMs: this.#o.fsyncIntervalMs ?? 200,
      ...(this.#o.compression === undefined ? {} : { compression: this.#o.compression }),
      onOutcome: (err) => this.reportOutcome(err),
    });
    const { principal, connection } = start;
    try {
      await this.#indexer.open(
        {
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
          file: name,
          keyId: writer.keyId,
          replica: this.replica,
        },
        writer.wrappedKey,
      );
    } catch (err) {
      this.reportOutcome(err);
      await writer.close().catch(() => undefined);
      await this.spool.discard(name).catch(() => undefined);
      throw recordingUnavailable(err, 'the session index');
    }
    const session = new OpenSessionFile(start.id, name, writer);
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
      await this.#sealInterrupted(start.id, name, endedAt);
      await this.#handOff(start.id, name);
      await this.store.closeSession(start.id, { status: 'interrupted', endedAt }).catch(() => undefined);
      throw err;
    }
    // From here on its records are readable from the archive while it runs, within an upload interval.
    this.spool.opened(name);
    this.#o.audit?.emit('session.opened', {
      session: start.id,
      user: { sub: principal.sub, groups: principal.groups, ...(principal.clientId === undefined ? {} : { client_id: principal.clientId }) },
      connection: connection.name,
      via: start.via,
      client_address: start.clientAddress,
      ...(start.resendOf === undefined ? {} : { resend_of: start.resendOf }),
    });
    return session;
  }

  /** Appends a closed session's seal to the seal log; a failure makes the gateway unready and is retried with the next entry. */
  async #sealIntoLog(session: OpenSessionFile, closed: SessionClosed): Promise<void> {
    if (closed.status === 'interrupted' || closed.records === undefined || closed.headHash === undefined) {
      await this.#sealInterrupted(session.id, session.name, closed.endedAt);
      return;
    }
    try {
      await this.#sealLog.append({ type: 'seal', session: session.id, file: session.name, status: 'closed', records: closed.records, finalHash: closed.headHash, sealedAt: closed.endedAt });
    } catch (err) {
      this.#log.warn({ session: session.id, err: describeStorageFailure(err) }, 'the seal log could not record a sealed session; it is retried with the next entry');
    }
  }

  /**
   * Pins what an unsealed session's file holds (whole records, last hash) in the seal log, so cutting it
   * further later is seen. Best effort: a file that cannot be read has nothing to pin.
   */
  async #sealInterrupted(id: string, name: string, endedAt: number): Promise<void> {
    let head: { records: number; head: string };
    try {
      head = await sessionObjectHead(this.source.objects, name);
    } catch (err) {
      this.#log.warn({ session: id, err: describeStorageFailure(err) }, 'an interrupted session file cannot be read, so the seal log cannot pin it');
      return;
    }
    try {
      await this.#sealLog.append({ type: 'seal', session: id, file: name, status: 'interrupted', records: head.records, finalHash: head.head, sealedAt: endedAt });
    } catch (err) {
      this.#log.warn({ session: id, err: describeStorageFailure(err) }, 'the seal log could not record an interrupted session; it is retried with the next entry');
    }
  }

  /**
   * Why a finished session's spool file must not be shipped: it does not verify on its own (altered, cut,
   * reordered, or its key is not in the index). An interrupted file (a crash) is shipped as it is.
   */
  async #brokenBecause(name: string): Promise<string | undefined> {
    const result = await verifySession(this.source, name, { publicKey: this.signingKey.publicKey });
    if (result.status !== 'broken') return undefined;
    const p = result.problems.find((x) => x.kind !== 'interrupted') ?? result.problems[0];
    return p === undefined ? 'broken' : `${p.index < 0 ? 'the header' : `record ${p.index}`}: ${p.message}`;
  }

  /**
   * Whether a file found in the spool at start belongs to a session that is no longer written: not `open`
   * in the index (this replica's own were marked interrupted just before). Another process sharing the
   * spool (a worker) may be writing an open one; a file with no index row is left alone and said.
   */
  async #finishedElsewhere(name: string): Promise<boolean> {
    const id = basename(name, SESSION_FILE_SUFFIX);
    const row = await this.store.getSession(id);
    if (row === undefined) {
      this.#log.warn({ file: name }, 'a spool file has no session in the index; it is left in the spool');
      return false;
    }
    return row.status !== 'open' && row.file === name;
  }

  /** Gives a finished session's file to the archive. On failure it stays in the spool, where readers still find it. */
  async #handOff(id: string, name: string): Promise<void> {
    try {
      await this.spool.handOff(name);
    } catch (err) {
      this.reportOutcome(err);
      this.#log.warn({ session: id, err: describeStorageFailure(err) }, 'a finished session could not be handed to the archive; it stays in the spool');
    }
  }
}
