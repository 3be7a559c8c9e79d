/**
 * One real S3-protocol server per test file (`s3rver`, serving a temporary directory), started in
 * `beforeAll` on 127.0.0.1 port 0 and stopped in `afterAll`, its directory removed. Call `s3Fixture()` at
 * the top of the file; each test takes a fresh bucket of its own from it. With `credentialsInEnv`, the
 * file's environment holds the test credentials, where the gateway's own S3 client finds them.
 */
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, vi } from 'vitest';

/** The part of s3rver's API the tests use (the package ships no types). */
interface S3rverInstance {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
  readonly store: { listObjects(bucket: string, options: ListOptions): Promise<ListResult> };
}
interface ListOptions {
  readonly delimiter?: string;
  readonly startAfter?: string;
  readonly prefix?: string;
  readonly maxKeys?: number;
}
interface ListResult {
  readonly objects: { readonly key: string }[];
  readonly commonPrefixes: string[];
  readonly isTruncated: boolean;
}
type S3rverConstructor = new (options: { address: string; port: number; silent: boolean; directory: string; resetOnClose?: boolean }) => S3rverInstance;

/** s3rver takes any credentials; these are what the tests' clients sign with. */
export const TEST_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } as const;

/** The server of a test file. */
export interface TestS3 {
  /** `http://127.0.0.1:PORT`. */
  readonly endpoint: string;
  /** The directory the server keeps its buckets in (to look for plaintext, say). */
  readonly directory: string;
  /** A client of the server (path-style, the test credentials). */
  client(): S3Client;
  /** Creates a fresh, empty bucket; its name. */
  bucket(): Promise<string>;
}

/**
 * s3rver lists keys in the order it walks its directories, so `a/b` comes before `a-c`; S3 lists in the
 * byte order of the keys (`-` before `/`), which archives rely on to page. The server is made to list as S3
 * does: everything under the prefix, sorted, then cut after `startAfter` and at `maxKeys`.
 */
function listInKeyOrder(server: S3rverInstance): void {
  const walk = server.store.listObjects.bind(server.store);
  server.store.listObjects = async (bucket, options) => {
    const all = await walk(bucket, { ...options, startAfter: '', maxKeys: Infinity });
    const after = Buffer.from(options.startAfter ?? '');
    const sorted = all.objects
      .filter((o) => Buffer.compare(Buffer.from(o.key), after) > 0)
      .sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)));
    const max = options.maxKeys ?? Infinity;
    return { ...all, objects: sorted.slice(0, max), isTruncated: sorted.length > max };
  };
}

/** Options of `s3Fixture`. */
export interface S3FixtureOptions {
  /**
   * Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to `TEST_CREDENTIALS` for the file: the gateway's S3
   * client takes credentials from the AWS default chain only. Default false.
   */
  readonly credentialsInEnv?: boolean;
}

/** Starts s3rver for this file; the returned object is usable from `beforeAll` on. */
export function s3Fixture(options: S3FixtureOptions = {}): TestS3 {
  let server: S3rverInstance | undefined;
  let directory: string | undefined;
  let endpoint: string | undefined;
  const clients: S3Client[] = [];

  if (options.credentialsInEnv ?? false) {
    beforeAll(() => {
      vi.stubEnv('AWS_ACCESS_KEY_ID', TEST_CREDENTIALS.accessKeyId);
      vi.stubEnv('AWS_SECRET_ACCESS_KEY', TEST_CREDENTIALS.secretAccessKey);
    });
    afterAll(() => {
      vi.unstubAllEnvs();
    });
  }

  beforeAll(async () => {
    directory = await mkdtemp(join(tmpdir(), 'sluice-s3-'));
    const S3rver = createRequire(import.meta.url)('s3rver') as S3rverConstructor;
    server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory });
    listInKeyOrder(server);
    const address = await server.run();
    endpoint = `http://127.0.0.1:${address.port}`;
  });

  afterAll(async () => {
    for (const c of clients.splice(0)) c.destroy();
    await server?.close();
    if (directory !== undefined) await rm(directory, { recursive: true, force: true });
  });

  const fixture: TestS3 = {
    get endpoint() {
      if (endpoint === undefined) throw new Error('the S3 server starts in beforeAll');
      return endpoint;
    },
    get directory() {
      if (directory === undefined) throw new Error('the S3 server starts in beforeAll');
      return directory;
    },
    client() {
      const c = new S3Client({ endpoint: fixture.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: TEST_CREDENTIALS });
      clients.push(c);
      return c;
    },
    async bucket() {
      const name = `sluice-${randomBytes(6).toString('hex')}`;
      const c = fixture.client();
      await c.send(new CreateBucketCommand({ Bucket: name }));
      return name;
    },
  };
  return fixture;
}
