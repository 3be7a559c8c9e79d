/**
 * Reading what a gateway recorded, after the fact and with no gateway, the way `sluice audit verify`
 * does: session files from the directory archive over `storage.dir`, the data keys of format 2 files
 * from the index (opened read-only).
 */
import type { KeyObject } from 'node:crypto';
import { FsArchive } from '../../server/recording/archive/fs-archive.js';
import { openDirectoryIndex } from '../../server/recording/audit-index.js';
import type { RecordedEvent } from '../../server/recording/event-types.js';
import type { KeyRing } from '../../server/recording/key-ring.js';
import { readSession } from '../../server/recording/session-reader.js';
import { NO_SESSION_KEYS, type SessionKeyLookup, type SessionSource } from '../../server/recording/session-source.js';
import { verifySession, type VerifyOptions, type VerifyResult } from '../../server/recording/verify-session.js';
import { verifyStorageDir, type SessionVerdict, type VerifyDirOptions } from '../../server/recording/verify-storage-dir.js';
import type { WrappedSessionKey } from '../../server/store/store.js';

/** A source over `dir` with the keys given (none: only format 1 files open). */
export function dirSource(dir: string, keyRing: KeyRing, keys: SessionKeyLookup = NO_SESSION_KEYS): SessionSource {
  return { objects: new FsArchive({ root: dir }), keys, keyRing };
}

/** Keys held in memory, by session id: what a test that writes files with `SessionWriter` keeps. */
export function memoryKeys(entries: Iterable<readonly [string, WrappedSessionKey]> = []): SessionKeyLookup & { set(id: string, key: WrappedSessionKey): void } {
  const keys = new Map<string, WrappedSessionKey>(entries);
  return {
    getSessionKey: async (id) => keys.get(id),
    set: (id, key) => void keys.set(id, key),
  };
}

/** Runs `use` with a source over a storage directory whose index holds the keys; the index is closed after. */
export async function withStoredSource<T>(dir: string, keyRing: KeyRing, use: (source: SessionSource) => Promise<T>): Promise<T> {
  const index = await openDirectoryIndex(dir);
  try {
    return await use(dirSource(dir, keyRing, index ?? NO_SESSION_KEYS));
  } finally {
    await index?.close();
  }
}

/** Every event of the session file `file` (its name under `dir`), read with the index's key. */
export function readStoredSession(dir: string, file: string, keyRing: KeyRing): Promise<RecordedEvent[]> {
  return withStoredSource(dir, keyRing, async (source) => {
    const events: RecordedEvent[] = [];
    for await (const e of readSession(source, file)) events.push(e);
    return events;
  });
}

/** The verdict on the session file `file` of `dir`, its key from the index. */
export function verifyStoredSession(dir: string, file: string, keyRing: KeyRing, options: VerifyOptions & { publicKey: KeyObject | string }): Promise<VerifyResult> {
  return withStoredSource(dir, keyRing, (source) => verifySession(source, file, options));
}

/** `verifyStorageDir` over a storage directory as `sluice audit verify` opens it: its archive, and its index when it has one. */
export async function* verifyDirectory(options: Omit<VerifyDirOptions, 'archive' | 'index'>): AsyncGenerator<SessionVerdict> {
  const index = await openDirectoryIndex(options.dir);
  try {
    yield* verifyStorageDir({ ...options, archive: new FsArchive({ root: options.dir }), ...(index === undefined ? {} : { index }) });
  } finally {
    await index?.close();
  }
}
