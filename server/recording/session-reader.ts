import type { EventType, RecordedEvent } from './event-types.js';
import { KeyUnavailableError } from './key-ring.js';
import { decodeRecord, type DecodedRecord } from './record-events.js';
import { sessionAad, sha256, type SessionHeader } from './record-format.js';
import { scanSessionObject } from './session-file-scanner.js';
import { sessionDataKey, type SessionSource } from './session-source.js';

/** A session file that cannot be read past a point: altered, reordered, or its key is unavailable. */
export class SessionReadError extends Error {
  readonly code = 'SESSION_UNREADABLE';
  /** 0-based position of the record (-1 for the header) and byte offset of the problem. */
  readonly index: number;
  readonly offset: number;
  constructor(message: string, index: number, offset: number, options?: ErrorOptions) {
    super(message, options);
    this.name = 'SessionReadError';
    this.index = index;
    this.offset = offset;
  }
}

/** Options of `readSession`. */
export interface ReadSessionOptions {
  /** Called with the header before the first event (for the session id and start time). */
  readonly onHeader?: (header: SessionHeader) => void;
}

/**
 * Streams a session file's decrypted events in order, with no gateway: the archive object, the key ring,
 * and (from version 2 on) the index's copy of the wrapped data key. Each record's authenticity and chain,
 * and the `seq` of every event in it (counted across the session, records sharing none), are checked as
 * it is read; an altered or reordered record, or one missing an event, throws SessionReadError with its
 * position. A file cut inside its last record (a crash mid-write) simply ends after the last whole
 * record: use `verifySession` to tell a sealed session from an interrupted one.
 */
export async function* readSession(source: SessionSource, name: string, options: ReadSessionOptions = {}): AsyncGenerator<RecordedEvent> {
  let dataKey: Buffer | undefined;
  let header: SessionHeader | undefined;
  let aad: Buffer = Buffer.alloc(0);
  let prev: Buffer = Buffer.alloc(0);
  /** The `seq` the next event must carry: the events of every record before it. */
  let nextSeq = 0;
  for await (const item of scanSessionObject(source.objects, name)) {
    switch (item.kind) {
      case 'header': {
        header = item.header;
        try {
          dataKey = await sessionDataKey(header, source);
        } catch (cause) {
          if (!(cause instanceof KeyUnavailableError)) throw cause;
          throw new SessionReadError(`Session ${header.session}: ${cause.message}`, -1, 0, { cause });
        }
        aad = sessionAad(header.session);
        prev = sha256(item.bytes);
        options.onHeader?.(header);
        break;
      }
      case 'truncated':
        return;
      case 'bad-length':
        throw new SessionReadError(`Record ${item.index} at byte ${item.offset} has an impossible length`, item.index, item.offset);
      case 'record': {
        let record: DecodedRecord;
        try {
          record = decodeRecord(item.frame, dataKey!, aad, header!);
        } catch (cause) {
          throw new SessionReadError(`Record ${item.index} at byte ${item.offset} does not authenticate`, item.index, item.offset, { cause });
        }
        if (!record.events.every((e, i) => e.meta.seq === nextSeq + i) || !record.prev.equals(prev)) {
          throw new SessionReadError(`Record ${item.index} at byte ${item.offset} is out of order or does not chain`, item.index, item.offset);
        }
        prev = sha256(item.frame);
        nextSeq += record.events.length;
        // Every event of a record has the record's position and offset: a record is the smallest unit a reader seeks to.
        for (const event of record.events) {
          const { seq, t, type, ...fields } = event.meta;
          yield { seq, t, type: type as EventType, fields: fields as never, record: item.index, offset: item.offset, ...(event.payload ? { payload: event.payload } : {}) };
        }
        break;
      }
    }
  }
}
