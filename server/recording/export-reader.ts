import { SluiceError } from '../../shared/errors.js';
import { ArchiveError, isArchiveNotFound } from './archive/archive.js';
import type { RecordedEvent } from './event-types.js';
import { HeaderError } from './record-format.js';
import { readSession, SessionReadError } from './session-reader.js';
import type { SessionSource } from './session-source.js';

/** A reading failure as the API reports it: ERR_RECORDING_TAMPERED with the record and byte where reading stopped. */
export function readFailure(sessionId: string, err: unknown): SluiceError {
  if (err instanceof SessionReadError) {
    const where = err.index < 0 ? 'its header' : `record ${err.index} at byte ${err.offset}`;
    return new SluiceError('ERR_RECORDING_TAMPERED', {
      message: `Session ${sessionId} cannot be read past ${where}: ${err.message}`,
      details: { session: sessionId, record: err.index, offset: err.offset },
      cause: err,
    });
  }
  if (err instanceof HeaderError) {
    return new SluiceError('ERR_RECORDING_TAMPERED', {
      message: `Session ${sessionId} cannot be read: ${err.message}`,
      details: { session: sessionId, record: -1, offset: 0 },
      cause: err,
    });
  }
  if (err instanceof ArchiveError && err.code === 'ARCHIVE_BAD_NAME') {
    // Only an edited index names a file no session can have.
    return new SluiceError('ERR_RECORDING_TAMPERED', { message: `The index names no valid file for session ${sessionId}`, details: { session: sessionId }, cause: err });
  }
  if (isArchiveNotFound(err)) {
    // The index says the session exists, so a missing file is lost evidence, not an unknown id.
    return new SluiceError('ERR_RECORDING_TAMPERED', { message: `The file of session ${sessionId} is missing`, details: { session: sessionId }, cause: err });
  }
  return new SluiceError('ERR_INTERNAL', { message: `Session ${sessionId} cannot be read`, cause: err });
}

/**
 * Opens a session's events for streaming. The header, the data key and the first record are read
 * before this resolves, so a file that cannot be opened at all is refused with an HTTP status
 * (ERR_RECORDING_TAMPERED) instead of a stream that ends at once; later failures are thrown by the
 * iterator, after the events before them.
 */
export async function openSessionEvents(sessionId: string, source: SessionSource, name: string): Promise<AsyncGenerator<RecordedEvent>> {
  const events = readSession(source, name);
  let first: IteratorResult<RecordedEvent>;
  try {
    first = await events.next();
  } catch (err) {
    throw readFailure(sessionId, err);
  }
  return (async function* () {
    try {
      if (first.done) return;
      yield first.value;
      yield* events;
    } catch (err) {
      throw readFailure(sessionId, err);
    } finally {
      // A reader that stops early (a client gone) must still close the file.
      await events.return(undefined);
    }
  })();
}
