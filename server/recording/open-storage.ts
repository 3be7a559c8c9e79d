import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { AuditEvents } from '../audit-sinks/audit-events.js';
import { SluiceError } from '../../shared/errors.js';
import type { Clock } from '../clock.js';
import { parseByteSize } from '../config/byte-size.js';
import { parseDuration } from '../config/duration.js';
import type { Config } from '../config/schema.js';
import { replicaIdOf } from '../replica/replica-config.js';
import { SqliteStore } from '../store/sqlite-store.js';
import type { Store } from '../store/store.js';
import { openArchive } from './open-archive.js';
import type { RecordingIo } from './file-io.js';
import { checkKeyCanary } from './key-canary.js';
import { keyRingFromSettings } from './key-ring.js';
import type { RecordingLog } from './recording-log.js';
import { Recording } from './recording.js';
import { loadOrCreateSigningKeyFile, signingKeyLocation, signingKeyWarning } from './signing-key.js';
import { warnIfStorageDirShared } from './storage-dir-mode.js';
import { INDEX_FILE } from './storage-layout.js';

/** The index's file name, defined with the other names under `storage.dir` (storage-layout.ts); exported here for callers that open storage. */
export { INDEX_FILE };

/** What `openStorage` needs besides the config. */
export interface OpenStorageOptions {
  readonly config: Config;
  /** File operations of the recording; tests inject faults here. */
  readonly io?: RecordingIo;
  readonly log?: RecordingLog;
  /** Told when sessions open and close (server/audit-sinks). Default: nothing told. */
  readonly audit?: AuditEvents;
  /** This process's replica id, owner of the sessions it opens. Default: `replica.id` as worker 0 resolves it. */
  readonly replica?: string;
  /** This process's worker number under `serve --workers N`, which names its own seal log. Default 0 (`seals.log`). */
  readonly worker?: number;
  /** What the retention sweep's lease is timed by. Default: the system clock. */
  readonly clock?: Clock;
}

/** The gateway's storage: the index and the recording on top of it. */
export interface GatewayStorage {
  readonly store: Store;
  readonly recording: Recording;
  /** Seals open sessions, then closes the index. */
  close(): Promise<void>;
}

/**
 * The index: the PostgreSQL of `storage.database` when one is configured (replicas share it), else SQLite in
 * `storage.dir`. Session files stay under `storage.dir` either way.
 */
async function openStore(config: Config, dir: string): Promise<Store> {
  const { database, database_pool: poolSize } = config.storage;
  if (database === undefined) return new SqliteStore({ file: join(dir, INDEX_FILE) });
  // Loaded only here: a single gateway on SQLite never loads the Postgres client.
  const { PostgresStore } = await import('../store/postgres-store.js');
  return PostgresStore.open({ url: database, poolSize });
}

/**
 * Opens the index and the recording under `storage.dir` when a master key is configured. Without one,
 * a gateway with connections refuses to start (nothing may flow unrecorded, and recordings are always
 * encrypted); a gateway with no connections runs without storage.
 */
/** ERR_CONFIG_INVALID when connections are configured without a master key to encrypt their recordings. */
export function checkRecordingKey(config: Config): void {
  if (keyRingFromSettings(config.storage) !== undefined || config.connections.length === 0) return;
  const problem = 'storage.master_key: is required when connections are configured (recordings are encrypted); generate one with `openssl rand -base64 32`';
  throw new SluiceError('ERR_CONFIG_INVALID', { message: `config has 1 problem:\n  ${problem}`, details: { problems: [problem] } });
}

export async function openStorage(options: OpenStorageOptions): Promise<GatewayStorage | undefined> {
  const { config } = options;
  const { storage } = config;
  checkRecordingKey(config);
  const keyRing = keyRingFromSettings(storage);
  if (keyRing === undefined) return undefined;
  const dir = resolve(storage.dir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await warnIfStorageDirShared(dir, options.log);
  const keyLocation = signingKeyLocation(storage);
  const keyWarning = signingKeyWarning(keyLocation);
  if (keyWarning !== undefined) options.log?.warn({ signing_key: keyLocation.file }, keyWarning);
  // Replicas share recordings but each verifies checkpoints with its own key: without one key for all, a
  // session sealed on one replica reads as tampered with on every other.
  if (keyLocation.legacy && (storage.recordings !== undefined || storage.database !== undefined)) {
    options.log?.warn(
      { signing_key: keyLocation.file },
      'storage.signing_key is not set while recordings or the database are shared: each replica would sign with a key of its own, and sessions sealed by one fail verification on the others. Give every replica the same storage.signing_key',
    );
  }
  const signingKey = await loadOrCreateSigningKeyFile(keyLocation.file);
  const store = await openStore(config, dir);
  // Sealed sessions go where storage.recordings says (absent: they stay under storage.dir, where the spool wrote them).
  const opened = await openArchive(storage.recordings, dir).catch(async (err: unknown) => {
    await store.close();
    throw err;
  });
  const { archive } = opened;
  try {
    // Before anything is written with the ring: a wrong key must stop the start, not surface when a session is read.
    await checkKeyCanary({ dir, keyRing, store, objects: archive });
    const recording = await Recording.open({
      dir,
      archive,
      // The spool is this replica's own disk, whatever the archive is: the durability point of fail-closed recording.
      spoolDir: dir,
      keyRing,
      signingKey,
      store,
      io: options.io,
      fsync: storage.fsync,
      fsyncIntervalMs: parseDuration(storage.fsync_interval),
      compression: storage.compression,
      retentionDays: storage.retention_days,
      replica: options.replica ?? replicaIdOf(config.replica.id),
      worker: options.worker ?? 0,
      clock: options.clock,
      sealCheckpointEvery: storage.seal_checkpoint_every,
      sealCheckpointIntervalMs: parseDuration(storage.seal_checkpoint_interval),
      shipping: {
        maxBytes: parseByteSize(storage.spool_max),
        retries: storage.upload_retries,
        backoffMs: parseDuration(storage.upload_backoff),
        backoffMaxMs: parseDuration(storage.upload_backoff_max),
      },
      segments: { intervalMs: parseDuration(storage.upload_interval), segmentMaxBytes: parseByteSize(storage.segment_max) },
      log: options.log,
      ...(options.audit === undefined ? {} : { audit: options.audit }),
    });
    return {
      store,
      recording,
      close: async () => {
        try {
          await recording.close();
        } finally {
          opened.close();
          await store.close();
        }
      },
    };
  } catch (err) {
    opened.close();
    await store.close();
    throw err;
  }
}
