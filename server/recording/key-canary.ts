import { randomBytes } from 'node:crypto';
import { open, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { SluiceError } from '../../shared/errors.js';
import type { ReadinessCheck } from '../readiness.js';
import type { SessionInfo, Store, WrappedSessionKey } from '../store/store.js';
import type { ArchiveReader } from './archive/archive.js';
import { FsArchive } from './archive/fs-archive.js';
import type { KeyRing } from './key-ring.js';
import { readSessionHeader } from './session-file-scanner.js';

/** File name of the key canary under `storage.dir`. */
export const KEY_CANARY_FILE = 'key-canary.json';

const FORMAT = 'sluice-key-canary-v1';
/** Random bytes sealed under each key; only the tag matters, so their value is never compared. */
const CANARY_BYTES = 32;
/** A canary file is a few hundred bytes per key; anything much larger is not one. */
const MAX_CANARY_FILE = 64 * 1024;
/** Sessions read per page while looking for the key ids the index needs. */
const PAGE = 500;
/**
 * Sessions of one key id tried, newest first, when there is no canary. A crash can leave the newest
 * files of a key headerless, so one is not enough; the bound keeps a start over a directory of damaged
 * files from reading all of them.
 */
const MAX_PROOF_SESSIONS = 100;

/** Bound into every seal, so a canary entry cannot be moved to another key id. */
function canaryContext(keyId: string): Buffer {
  return Buffer.from(`${FORMAT}\0${keyId}`, 'utf8');
}

/** The canary: per key id, random bytes sealed under that master key. */
type Canary = Map<string, Buffer>;

/** What `checkKeyCanary` needs: the directory, the running ring, the session index and where session files are. */
export interface KeyCanaryOptions {
  /** `storage.dir`, resolved: the canary's directory. */
  readonly dir: string;
  readonly keyRing: KeyRing;
  /** The index: which sessions use which key, and (format 2) their wrapped data keys. */
  readonly store: Store;
  /** Session files, by the index's names; default the directory archive over `dir`. */
  readonly objects?: ArchiveReader;
}

/**
 * Refuses a key ring that does not fit this data directory, before anything is written with it; then
 * seals the canary under every key of the ring, so the next start can tell.
 *
 * With a canary on disk: every key of the ring that has an entry must open it (same id, other bytes: the
 * data keys of its sessions would not unwrap), and a key id that has an entry but left the ring may go only
 * when no session of the index is wrapped under it. A new key (rotation: newest first, older ones kept)
 * simply gets its entry. Without one (a new directory, or one written before canaries), the index stands
 * in: every key id its sessions use must be in the ring and open the data key of one of its newest
 * sessions whose header can be read (the key itself from the header of a format 1 file, from the index
 * for format 2); when none can, nothing proves the key, so no canary is sealed under it.
 * Throws ERR_MASTER_KEY_MISMATCH naming the key id.
 */
export async function checkKeyCanary(options: KeyCanaryOptions): Promise<void> {
  const { dir, keyRing } = options;
  const file = join(dir, KEY_CANARY_FILE);
  const canary = await readCanary(file);
  const next: Canary = new Map();
  if (canary === undefined) {
    await checkAgainstSessions(options);
  } else {
    for (const id of keyRing.ids) {
      const sealed = canary.get(id);
      if (sealed === undefined) continue;
      if (keyRing.openUnder(id, sealed, canaryContext(id)) === undefined) throw wrongKey(id, file);
      next.set(id, sealed);
    }
    const dropped = [...canary.keys()].filter((id) => !keyRing.has(id));
    if (dropped.length > 0) {
      const [lost] = await newestSessionPerKey(options.store, new Set(dropped));
      if (lost !== undefined) throw lostKey(...lost);
    }
    if (dropped.length === 0 && keyRing.ids.every((id) => canary.has(id))) return;
  }
  for (const id of keyRing.ids) {
    if (!next.has(id)) next.set(id, keyRing.sealUnder(id, randomBytes(CANARY_BYTES), canaryContext(id)));
  }
  await writeCanary(dir, file, next);
}

/**
 * The readiness view of the canary, read afresh on each probe: a directory swapped or re-keyed under a
 * running gateway (another process, a restore from backup) turns it unready instead of failing later
 * when a session is read. Nothing is written here.
 */
export async function keyCanaryHealth(dir: string, keyRing: KeyRing): Promise<ReadinessCheck & { code?: 'ERR_MASTER_KEY_MISMATCH' }> {
  const file = join(dir, KEY_CANARY_FILE);
  let canary: Canary | undefined;
  try {
    canary = await readCanary(file);
  } catch (err) {
    return { ok: false, code: 'ERR_MASTER_KEY_MISMATCH', message: (err as Error).message };
  }
  if (canary === undefined) {
    return { ok: false, code: 'ERR_MASTER_KEY_MISMATCH', message: `The key canary ${file} is missing: the master key cannot be checked (a restart re-creates it from the session index)` };
  }
  for (const id of keyRing.ids) {
    const sealed = canary.get(id);
    if (sealed !== undefined && keyRing.openUnder(id, sealed, canaryContext(id)) === undefined) {
      return { ok: false, code: 'ERR_MASTER_KEY_MISMATCH', message: wrongKey(id, file).message };
    }
  }
  if (!canary.has(keyRing.currentId)) {
    return { ok: false, code: 'ERR_MASTER_KEY_MISMATCH', message: `The key canary ${file} has no entry for master key "${keyRing.currentId}", which new sessions are wrapped with: it was rewritten by a gateway with another key ring` };
  }
  return { ok: true };
}

function wrongKey(id: string, file: string): SluiceError {
  return new SluiceError('ERR_MASTER_KEY_MISMATCH', {
    message:
      `Master key "${id}" does not match the one this data directory was written with (it does not open ${file}): ` +
      'sessions wrapped under it would not unwrap. Start with the key it was written with; to rotate, put the new key first in storage.master_keys and keep the old one after it',
    details: { key_id: id },
  });
}

function lostKey(id: string, session: SessionInfo): SluiceError {
  return new SluiceError('ERR_MASTER_KEY_MISMATCH', {
    message:
      `The key ring has no master key "${id}", which sessions in this data directory are wrapped with (session ${session.id}, among others): ` +
      `add it back to storage.master_keys, after the newest key`,
    details: { key_id: id },
  });
}

function unproven(id: string, tried: number, file: string): SluiceError {
  return new SluiceError('ERR_MASTER_KEY_MISMATCH', {
    message:
      `No session could prove master key "${id}": of the ${tried} newest session${tried === 1 ? '' : 's'} wrapped under it, none has a file with a readable header (missing, truncated or cut short by a crash) and its data key, ` +
      `and there is no key canary ${file} to check it against. Restore ${KEY_CANARY_FILE} (or the session files) from a backup; ` +
      '`sluice audit verify` names the damaged files. The gateway will not seal a canary under a key nothing proved',
    details: { key_id: id },
  });
}

/**
 * No canary yet: the index says which keys its sessions need, and a session of each must prove the bytes.
 * A file that is gone or has no readable header proves nothing either way, so older sessions of that key
 * are tried; a key nothing proves is refused, since the canary sealed next would make it canonical.
 */
async function checkAgainstSessions(options: KeyCanaryOptions): Promise<void> {
  const { dir, keyRing, store } = options;
  const objects = options.objects ?? new FsArchive({ root: dir });
  for (const [id, sessions] of await newestSessionsPerKey(store, MAX_PROOF_SESSIONS)) {
    if (!keyRing.has(id)) throw lostKey(id, sessions[0]!);
    let proved = false;
    for (const session of sessions) {
      const wrapped = await wrappedKeyOf(objects, store, session);
      if (wrapped === undefined || wrapped.keyId !== id) continue;
      try {
        keyRing.unwrap(wrapped, session.id);
      } catch {
        throw wrongKey(id, join(dir, session.file));
      }
      proved = true;
      break;
    }
    if (!proved) throw unproven(id, sessions.length, join(dir, KEY_CANARY_FILE));
  }
}

/** The newest session of each key id the index uses (only of `only`, when given): one pass over the index. */
async function newestSessionPerKey(store: Store, only?: ReadonlySet<string>): Promise<Map<string, SessionInfo>> {
  const found = new Map<string, SessionInfo>();
  for (const [id, sessions] of await newestSessionsPerKey(store, 1, only)) found.set(id, sessions[0]!);
  return found;
}

/** Up to `perKey` sessions of each key id the index uses, newest first: one pass over the index. */
async function newestSessionsPerKey(store: Store, perKey: number, only?: ReadonlySet<string>): Promise<Map<string, SessionInfo[]>> {
  const found = new Map<string, SessionInfo[]>();
  let cursor: string | undefined;
  do {
    const page = await store.listSessions({ limit: PAGE, ...(cursor === undefined ? {} : { cursor }) });
    for (const s of page.sessions) {
      if (only !== undefined && !only.has(s.keyId)) continue;
      const list = found.get(s.keyId) ?? [];
      if (list.length < perKey) list.push(s);
      found.set(s.keyId, list);
    }
    cursor = page.next;
  } while (cursor !== undefined);
  return found;
}

/**
 * The wrapped data key a session proves its master key with, when its file's header can be read: from
 * the header (format 1) or the index (format 2). A session whose file is gone or headerless proves
 * nothing, whatever the index holds: a key is proved against a session that exists on both sides.
 */
async function wrappedKeyOf(objects: ArchiveReader, store: Store, session: SessionInfo): Promise<WrappedSessionKey | undefined> {
  let header;
  try {
    header = await readSessionHeader(objects, session.file);
  } catch {
    return undefined;
  }
  if (header.session !== session.id) return undefined;
  if (header.wrappedKey !== undefined) return header.wrappedKey;
  const stored = await store.getSessionKey(session.id);
  return stored?.keyId === header.keyId ? stored : undefined;
}

/** The canary on disk, or undefined when there is none; a file that is not a canary is refused, never replaced. */
async function readCanary(file: string): Promise<Canary | undefined> {
  let text: string;
  try {
    const bytes = await readFile(file);
    if (bytes.length > MAX_CANARY_FILE) throw malformed(file, 'too large');
    text = bytes.toString('utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err instanceof SluiceError ? err : malformed(file, (err as NodeJS.ErrnoException).code ?? String(err));
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw malformed(file, 'not JSON');
  }
  const { format, keys } = (doc ?? {}) as { format?: unknown; keys?: unknown };
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc) || Object.keys(doc).length !== 2 || format !== FORMAT) {
    throw malformed(file, `not a ${FORMAT} document`);
  }
  if (typeof keys !== 'object' || keys === null || Array.isArray(keys) || Object.keys(keys).length === 0) throw malformed(file, 'no keys');
  const canary: Canary = new Map();
  for (const [id, value] of Object.entries(keys)) {
    if (typeof value !== 'string' || !/^[A-Za-z0-9+/]+={0,2}$/.test(value)) throw malformed(file, `entry "${id}" is not base64`);
    canary.set(id, Buffer.from(value, 'base64'));
  }
  return canary;
}

function malformed(file: string, why: string): SluiceError {
  return new SluiceError('ERR_MASTER_KEY_MISMATCH', {
    message: `The key canary ${file} cannot be read (${why}), so the master key cannot be checked: restore it, or delete it to check the key against the session index instead`,
  });
}

/** Written whole under a temporary name, then renamed: a crash leaves the old canary or the new one, never half of one. */
async function writeCanary(dir: string, file: string, canary: Canary): Promise<void> {
  const doc = { format: FORMAT, keys: Object.fromEntries([...canary].map(([id, sealed]) => [id, sealed.toString('base64')])) };
  const temp = join(dir, `.${KEY_CANARY_FILE}.${randomBytes(6).toString('hex')}`);
  const handle = await open(temp, 'wx', 0o600);
  try {
    await handle.writeFile(`${JSON.stringify(doc, null, 2)}\n`);
    await handle.sync();
  } catch (err) {
    await handle.close();
    await rm(temp, { force: true });
    throw err;
  }
  await handle.close();
  await rename(temp, file);
}
