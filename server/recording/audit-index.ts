import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { SessionStatus } from '../store/store.js';
import type { SessionKeyLookup } from './session-source.js';
import { INDEX_FILE } from './storage-layout.js';

/** A session as the index knows it, for verification. */
export interface AuditedSession {
  readonly id: string;
  /** Its archive name. */
  readonly file: string;
  readonly status: SessionStatus;
  /** Known once sealed. */
  readonly records?: number;
  readonly finalHash?: string;
}

/** What `audit verify` asks of the session index: which sessions exist, and their wrapped data keys. */
export interface AuditIndex extends SessionKeyLookup {
  /** Every session (or only `only`), oldest first. */
  sessions(only?: string): AsyncIterable<AuditedSession>;
  close(): Promise<void>;
}

/**
 * The index of a storage directory, opened read-only for verification (verifying evidence must never
 * change it), or undefined when the directory has none. SQLite is loaded here, on demand, so the CLI
 * loads it only to verify a directory that has an index.
 */
export async function openDirectoryIndex(dir: string): Promise<AuditIndex | undefined> {
  const file = join(dir, INDEX_FILE);
  if (!existsSync(file)) return undefined;
  const { SqliteAuditIndex } = await import('./sqlite-audit-index.js');
  return new SqliteAuditIndex(file);
}

/**
 * The index in the PostgreSQL of `storage.database`, opened read-only, with where it is in words (no
 * password). `pg` is loaded here, on demand, so the CLI loads it only to verify storage indexed there.
 */
export async function openDatabaseIndex(options: { readonly url: string; readonly replica?: string }): Promise<{ index: AuditIndex; where: string }> {
  const { PostgresAuditIndex, databaseLocation } = await import('./postgres-audit-index.js');
  const index = await PostgresAuditIndex.open(options);
  return { index, where: `PostgreSQL ${databaseLocation(options.url)}` };
}
