import { chmodSync, closeSync, existsSync, fchmodSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';

/** Owner read and write, nothing for anyone else: what every file under `storage.dir` gets. */
export const PRIVATE_FILE_MODE = 0o600;

/** The files SQLite keeps for a database in WAL mode. */
function databaseFiles(file: string): string[] {
  return [file, `${file}-wal`, `${file}-shm`];
}

/**
 * Opens a SQLite database in WAL mode whose three files (database, `-wal`, `-shm`) are readable by the
 * owner only, whatever the process umask and whatever mode the directory has, and whose deleted rows are
 * zeroed (`secure_delete`).
 *
 * SQLite creates a new database 0644 minus the umask, and its `-wal` and `-shm` files lazily, copying the
 * database file's mode onto each with fchmod. So the database file is created here first and set 0600
 * with fchmod (umask-proof: the umask narrows the mode an open asks for, never a chmod), and files left by an earlier version are
 * chmodded. Changing the process umask around the open was not chosen: it is process-wide, and the
 * file operations other requests run meanwhile on the thread pool would inherit it. After the open a
 * read forces the WAL and shared-memory files into existence, and all three are chmodded once more, so
 * nothing depends on how a given SQLite build picks modes.
 */
export function openPrivateDatabase(file: string): Database.Database {
  if (file === ':memory:') {
    const db = new Database(file);
    db.pragma('journal_mode = WAL');
    eraseDeletedContent(db);
    return db;
  }
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  if (!existsSync(file)) {
    // An empty file is a valid empty database; `a` never truncates one a concurrent starter just made.
    const fd = openSync(file, 'a', PRIVATE_FILE_MODE);
    try {
      fchmodSync(fd, PRIVATE_FILE_MODE);
    } finally {
      closeSync(fd);
    }
  }
  restrict(file);
  const db = new Database(file);
  try {
    db.pragma('journal_mode = WAL');
    eraseDeletedContent(db);
    db.prepare('SELECT count(*) FROM sqlite_master').get();
    restrict(file);
  } catch (err) {
    db.close();
    throw err;
  }
  return db;
}

/**
 * Deleted rows are overwritten with zeros, not merely unlinked from their page: erasing a session is the
 * deletion of its wrapped data key, and without this the key's bytes stay readable in the page (and in
 * pages freed later) for as long as nothing happens to reuse the space. The setting is per connection.
 */
function eraseDeletedContent(db: Database.Database): void {
  db.pragma('secure_delete = ON');
}

function restrict(file: string): void {
  for (const path of databaseFiles(file)) {
    try {
      chmodSync(path, PRIVATE_FILE_MODE);
    } catch (err) {
      // The WAL and shared-memory files come and go with the last connection.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
}
