import type { Store } from '../store/store.js';
import type { ArchiveReader } from './archive/archive.js';
import { KeyUnavailableError, type KeyRing } from './key-ring.js';
import type { SessionHeader } from './record-format.js';

/** Where sessions' wrapped data keys are kept: the index (`Store`), or an offline reader of it. */
export type SessionKeyLookup = Pick<Store, 'getSessionKey'>;

/** A lookup with no keys at all: a directory copied without its index. */
export const NO_SESSION_KEYS: SessionKeyLookup = Object.freeze({ getSessionKey: async () => undefined });

/** What reading a session needs: where its bytes are, where its wrapped data key is, and the master keys. */
export interface SessionSource {
  readonly objects: ArchiveReader;
  readonly keys: SessionKeyLookup;
  readonly keyRing: KeyRing;
}

/**
 * The index holds no data key for a version 2 session: it was erased, or the lookup is not the index the
 * session was recorded with (or none at all). A verifier without the index says so rather than "broken".
 */
export class DataKeyNotStoredError extends KeyUnavailableError {
  constructor(message: string) {
    super(message);
    this.name = 'DataKeyNotStoredError';
  }
}

/**
 * The data key of the session a header opens. Version 1 files carry it wrapped in the header; version 2
 * files name the master key and leave the wrapped key to the index, so an erased session (its key row
 * deleted) no longer opens. Throws KeyUnavailableError saying which (DataKeyNotStoredError for no key).
 */
export async function sessionDataKey(header: SessionHeader, source: Pick<SessionSource, 'keys' | 'keyRing'>): Promise<Buffer> {
  if (header.wrappedKey !== undefined) return source.keyRing.unwrap(header.wrappedKey, header.session);
  const stored = await source.keys.getSessionKey(header.session);
  if (stored === undefined) {
    throw new DataKeyNotStoredError(`The index holds no data key for session ${header.session}: it was erased, or this is not the index it was recorded with`);
  }
  if (stored.keyId !== header.keyId) {
    throw new KeyUnavailableError(`The index holds the data key of session ${header.session} under master key "${stored.keyId}", but its file names "${header.keyId}"`);
  }
  return source.keyRing.unwrap(stored, header.session);
}
