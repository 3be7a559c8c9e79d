import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsCommand,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
  type CompletedPart,
} from '@aws-sdk/client-s3';
import { Readable } from 'node:stream';
import {
  ArchiveError,
  checkListPrefix,
  checkObjectName,
  MAX_LIST_PAGE,
  type ArchiveBody,
  type ArchiveListOptions,
  type ArchivePage,
  type RecordingArchive,
} from './archive.js';

/** Where the bucket is: `storage.recordings` of type `s3`. Credentials are never here: the AWS default chain supplies them. */
export interface S3ArchiveSettings {
  readonly bucket: string;
  /** Key prefix every object name is put under (`recordings/`); default none. */
  readonly prefix?: string;
  readonly region?: string;
  /** An S3-compatible endpoint (MinIO, Ceph RGW, GCS interoperability); default AWS's. */
  readonly endpoint?: string;
  /** Path-style URLs (`endpoint/bucket/key`), which most S3-compatible servers need. */
  readonly forcePathStyle?: boolean;
}

/** Options of the bucket archive. */
export interface S3ArchiveOptions extends S3ArchiveSettings {
  /** The client to use; default one built from the settings with the AWS default credential chain. */
  readonly client?: S3Client;
  /** Objects up to this size go up in one PutObject; larger ones in parts. Default 64 MiB. */
  readonly multipartThreshold?: number;
  /** Bytes per part of a multipart upload (S3 wants at least 5 MiB but for the last). Default 16 MiB. */
  readonly partSize?: number;
}

/** One PutObject up to here: S3 needs a stream's length up front, so a body is held in memory until it is known to fit. */
const DEFAULT_MULTIPART_THRESHOLD = 64 * 1024 * 1024;
const DEFAULT_PART_SIZE = 16 * 1024 * 1024;
/** The smallest part S3 accepts, last part aside. */
const MIN_PART_SIZE = 5 * 1024 * 1024;
/** Defaults of the client the archive builds: a stalled bucket must fail an upload, not hang the hand-off forever. */
const CONNECTION_TIMEOUT_MS = 5_000;
const REQUEST_TIMEOUT_MS = 60_000;
const MAX_ATTEMPTS = 3;

/**
 * The archive as an S3-compatible bucket: object `a/b.rec` is the key `<prefix>a/b.rec`. Objects are the
 * session files' bytes exactly (encrypted and chained as on disk), so no plaintext ever reaches the bucket.
 * A put never replaces an object: it checks first and asks the server to refuse an existing key
 * (`If-None-Match: *`, honoured by AWS S3 and MinIO), so a forged object cannot overwrite sealed evidence.
 */
export class S3Archive implements RecordingArchive {
  readonly bucket: string;
  readonly prefix: string;
  readonly #client: S3Client;
  readonly #ownsClient: boolean;
  readonly #threshold: number;
  readonly #partSize: number;
  readonly #where: string;

  constructor(options: S3ArchiveOptions) {
    this.bucket = options.bucket;
    this.prefix = normalisePrefix(options.prefix);
    this.#ownsClient = options.client === undefined;
    this.#client = options.client ?? s3ClientOf(options);
    this.#partSize = Math.max(MIN_PART_SIZE, options.partSize ?? DEFAULT_PART_SIZE);
    this.#threshold = Math.max(0, options.multipartThreshold ?? DEFAULT_MULTIPART_THRESHOLD);
    this.#where = `s3://${this.bucket}/${this.prefix}${options.endpoint === undefined ? '' : ` at ${options.endpoint}`}`;
  }

  /** The bucket key of object `name`; throws ARCHIVE_BAD_NAME for a name no object may have. */
  keyOf(name: string): string {
    checkObjectName(name);
    return `${this.prefix}${name}`;
  }

  async put(name: string, body: ArchiveBody): Promise<void> {
    const key = this.keyOf(name);
    if (await this.#exists(key, name)) throw exists(name);
    if (Buffer.isBuffer(body) && body.length <= this.#threshold) return this.#putWhole(key, name, body);
    const source = Buffer.isBuffer(body) ? Readable.from([body]) : body;
    const chunks = source[Symbol.asyncIterator]();
    // Read up to the threshold: a body that ends before it goes up whole, a longer one in parts.
    const head = await readUpTo(chunks, this.#threshold + 1);
    if (head.done) return this.#putWhole(key, name, head.bytes);
    await this.#putInParts(key, name, head.bytes, chunks);
  }

  async get(name: string): Promise<Readable> {
    const key = this.keyOf(name);
    const out = await this.#send(name, 'GetObject', (client) => client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key })));
    return asReadable(out.Body);
  }

  async range(name: string, offset: number, length: number): Promise<Buffer> {
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
      throw new RangeError(`A range needs a non-negative offset and length (got ${offset}, ${length})`);
    }
    const key = this.keyOf(name);
    // An empty range has no Range header: ask whether the object is there, so a missing one is still named.
    if (length === 0) {
      if (!(await this.#exists(key, name))) throw notFound(name);
      return Buffer.alloc(0);
    }
    try {
      const out = await this.#send(name, 'GetObject', (client) => client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: `bytes=${offset}-${offset + length - 1}` })));
      const bytes = await bytesOf(asReadable(out.Body));
      // A server that ignores Range sends the whole object: cut the range out of it.
      return out.ContentRange === undefined && out.$metadata.httpStatusCode === 200 ? bytes.subarray(offset, offset + length) : bytes.subarray(0, length);
    } catch (err) {
      // From the object's end on there are no bytes; S3 says so with 416 InvalidRange.
      if (err instanceof S3ServiceException && (err.name === 'InvalidRange' || err.$metadata.httpStatusCode === 416)) return Buffer.alloc(0);
      throw err;
    }
  }

  async list(prefix: string, options: ArchiveListOptions = {}): Promise<ArchivePage> {
    checkListPrefix(prefix);
    const limit = Math.min(Math.max(1, options.limit ?? MAX_LIST_PAGE), MAX_LIST_PAGE);
    // Pages are addressed by the last name seen (`Marker`), not by a continuation token: the contract's
    // `next` is a name, which every archive can resume from and which outlives a server's token. ListObjects
    // (version 1) takes exactly that, and every S3-compatible server has it; s3rver cannot make a version 2
    // token under OpenSSL 3 (it ciphers tokens with DES).
    const out = await this.#send(prefix, 'ListObjects', (client) =>
      client.send(
        new ListObjectsCommand({
          Bucket: this.bucket,
          Prefix: `${this.prefix}${prefix}`,
          MaxKeys: limit,
          ...(options.after === undefined ? {} : { Marker: `${this.prefix}${options.after}` }),
        }),
      ),
    );
    const objects = (out.Contents ?? []).flatMap((o) => {
      const name = o.Key?.slice(this.prefix.length);
      if (o.Key === undefined || name === undefined || !o.Key.startsWith(this.prefix)) return [];
      try {
        checkObjectName(name);
      } catch {
        return []; // a key no object could be named after was not put here by the archive
      }
      return [{ name, size: o.Size ?? 0 }];
    });
    const last = out.Contents?.at(-1)?.Key;
    return out.IsTruncated === true && last !== undefined ? { objects, next: last.slice(this.prefix.length) } : { objects };
  }

  /**
   * Deletes the object. S3 deletes are idempotent, so a retried sweep succeeds. Unlike the directory archive
   * nothing can be zeroed first (objects are immutable), and in a versioned bucket the bytes stay as a
   * noncurrent version: the README says to keep versioning off or expire noncurrent versions.
   */
  async delete(name: string): Promise<void> {
    const key = this.keyOf(name);
    await this.#send(name, 'DeleteObject', (client) => client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key })));
  }

  /** Releases the client's sockets when the archive built it. */
  close(): void {
    if (this.#ownsClient) this.#client.destroy();
  }

  async #putWhole(key: string, name: string, bytes: Buffer): Promise<void> {
    await this.#send(name, 'PutObject', (client) => client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: bytes, ContentLength: bytes.length, IfNoneMatch: '*' })));
  }

  /** A multipart upload; aborted on any failure, so a failed put leaves no object and no stored parts behind. */
  async #putInParts(key: string, name: string, first: Buffer, rest: AsyncIterator<Uint8Array>): Promise<void> {
    const created = await this.#send(name, 'CreateMultipartUpload', (client) => client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key })));
    const uploadId = created.UploadId;
    if (uploadId === undefined) throw new Error(`${this.#where} started a multipart upload of ${name} without an upload id`);
    const parts: CompletedPart[] = [];
    try {
      let pending = first;
      let done = false;
      while (!done || pending.length > 0) {
        // Full parts while more is coming; the remainder (any size) once the body has ended.
        while (!done && pending.length < this.#partSize) {
          const more = await readUpTo(rest, this.#partSize - pending.length);
          pending = Buffer.concat([pending, more.bytes]);
          done = more.done;
        }
        const part = done ? pending : pending.subarray(0, this.#partSize);
        pending = done ? Buffer.alloc(0) : pending.subarray(this.#partSize);
        const partNumber = parts.length + 1;
        const out = await this.#send(name, 'UploadPart', (client) => client.send(new UploadPartCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId, PartNumber: partNumber, Body: part, ContentLength: part.length })));
        parts.push({ PartNumber: partNumber, ETag: out.ETag });
      }
      // No If-None-Match here: S3-compatible servers that honour it on PutObject refuse it on completion
      // (NotImplemented). The check before the upload stands; a race needs two writers of one session id.
      await this.#send(name, 'CompleteMultipartUpload', (client) => client.send(new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId, MultipartUpload: { Parts: parts } })));
    } catch (err) {
      await this.#client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId })).catch(() => undefined);
      throw err;
    }
  }

  async #exists(key: string, name: string): Promise<boolean> {
    try {
      await this.#send(name, 'HeadObject', (client) => client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key })));
      return true;
    } catch (err) {
      if (err instanceof ArchiveError && err.code === 'ARCHIVE_NOT_FOUND') return false;
      throw err;
    }
  }

  /** Sends a request, mapping the bucket's answers to the contract's errors and naming the bucket in any other failure. */
  async #send<T>(name: string, operation: string, send: (client: S3Client) => Promise<T>): Promise<T> {
    try {
      return await send(this.#client);
    } catch (err) {
      if (err instanceof ArchiveError) throw err;
      if (err instanceof S3ServiceException) {
        const status = err.$metadata.httpStatusCode;
        if (err.name === 'NoSuchKey' || err.name === 'NotFound' || (status === 404 && err.name !== 'NoSuchBucket')) throw notFound(name, err);
        if (err.name === 'PreconditionFailed' || status === 412) throw exists(name, err);
        if (err.name === 'InvalidRange' || status === 416) throw err;
        throw new Error(`The recordings bucket ${this.#where} refused ${operation} of ${name}: ${err.name}${status === undefined ? '' : ` (HTTP ${status})`}: ${err.message}`, { cause: err });
      }
      const code = (err as NodeJS.ErrnoException).code;
      const why = code ?? (err as Error).name ?? 'error';
      throw new Error(`The recordings bucket ${this.#where} could not be reached for ${operation} of ${name}: ${why}: ${(err as Error).message}`, { cause: err });
    }
  }
}

/** The client of `settings`: credentials and, where unset, the region from the AWS default chain. */
export function s3ClientOf(settings: S3ArchiveSettings): S3Client {
  return new S3Client({
    // An S3-compatible server at an endpoint of its own rarely has regions; signing still needs a name.
    ...(settings.region !== undefined ? { region: settings.region } : settings.endpoint !== undefined ? { region: 'us-east-1' } : {}),
    ...(settings.endpoint === undefined ? {} : { endpoint: settings.endpoint }),
    forcePathStyle: settings.forcePathStyle ?? false,
    maxAttempts: MAX_ATTEMPTS,
    requestHandler: { connectionTimeout: CONNECTION_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS },
  });
}

/** `a/b` and `a/b/` both become `a/b/`; none stays none. */
function normalisePrefix(prefix: string | undefined): string {
  if (prefix === undefined || prefix === '' || prefix === '/') return '';
  const trimmed = prefix.replace(/^\/+|\/+$/g, '');
  checkObjectName(trimmed);
  return `${trimmed}/`;
}

function notFound(name: string, cause?: unknown): ArchiveError {
  return new ArchiveError('ARCHIVE_NOT_FOUND', name, `No archive object ${name}`, cause === undefined ? undefined : { cause });
}

function exists(name: string, cause?: unknown): ArchiveError {
  return new ArchiveError('ARCHIVE_EXISTS', name, `Archive object ${name} exists; sealed objects are never replaced`, cause === undefined ? undefined : { cause });
}

/** Reads from `chunks` until `limit` bytes are in hand or the body ends (`done`); at most one chunk's worth past `limit` is never taken. */
async function readUpTo(chunks: AsyncIterator<Uint8Array>, limit: number): Promise<{ bytes: Buffer; done: boolean }> {
  const parts: Buffer[] = [];
  let size = 0;
  while (size < limit) {
    const next = await chunks.next();
    if (next.done === true) return { bytes: Buffer.concat(parts), done: true };
    const chunk = Buffer.from(next.value.buffer, next.value.byteOffset, next.value.byteLength);
    parts.push(chunk);
    size += chunk.length;
  }
  return { bytes: Buffer.concat(parts), done: false };
}

function asReadable(body: unknown): Readable {
  if (body instanceof Readable) return body;
  if (body === undefined) return Readable.from([]);
  return Readable.from(body as AsyncIterable<Uint8Array>);
}

async function bytesOf(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}
