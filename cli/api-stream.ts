import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ERRORS, SluiceError, type ErrorCode } from '../shared/errors.js';

/** Options of {@link ApiStream}: the same gateway and token an `ApiClient` takes. */
export interface ApiStreamOptions {
  gateway: string;
  token: string | (() => Promise<string>);
  /** Time allowed for the response head; the body may take as long as it needs. Default 30 s. */
  headTimeoutMs?: number;
  fetch?: typeof fetch;
}

/**
 * Streamed GETs of the gateway's REST API, for answers too large to hold (session events, exports):
 * NDJSON line by line, or bytes straight to a file or stream. Failures are SluiceErrors, like `ApiClient`'s.
 */
export class ApiStream {
  readonly gateway: string;
  readonly #o: ApiStreamOptions;
  /** The listener each response put on the caller's signal, removed once its body is read. */
  readonly #aborts = new WeakMap<Response, () => void>();

  constructor(options: ApiStreamOptions) {
    this.gateway = options.gateway.replace(/\/+$/, '');
    this.#o = options;
  }

  /** Parsed lines of an NDJSON answer, as they arrive. */
  async *ndjson(path: string, query: Record<string, string | number | boolean | undefined> = {}, signal?: AbortSignal): AsyncGenerator<unknown> {
    const res = await this.#get(path, query, signal);
    try {
      yield* lines(res, path, this.gateway);
    } finally {
      signal?.removeEventListener('abort', this.#aborts.get(res)!);
    }
  }

  /**
   * Writes an answer's bytes to `to`: a file path (written to a temporary name and renamed once
   * complete, so an interrupted download never leaves a partial file under the real name) or a stream.
   * Resolves to the response headers.
   */
  async download(path: string, query: Record<string, string | number | boolean | undefined>, to: string | Writable): Promise<Headers> {
    const res = await this.#get(path, query);
    const body = Readable.fromWeb(res.body! as never);
    const fail = (err: unknown): SluiceError =>
      new SluiceError('ERR_GATEWAY_RESPONSE', { message: `The gateway at ${this.gateway} broke off ${path} before its end (${(err as Error).message})`, cause: err });
    if (typeof to !== 'string') {
      try {
        await pipeline(body, to, { end: false });
      } catch (err) {
        throw fail(err);
      }
      return res.headers;
    }
    const partial = `${to}.partial-${process.pid}`;
    try {
      await pipeline(body, createWriteStream(partial, { mode: 0o600 }));
      await rename(partial, to);
    } catch (err) {
      await rm(partial, { force: true });
      const local = err as NodeJS.ErrnoException;
      if (local.syscall !== undefined) throw new SluiceError('ERR_USAGE', { message: `Cannot write ${to} (${local.code ?? local.message})`, cause: err });
      throw fail(err);
    }
    return res.headers;
  }

  async #get(path: string, query: Record<string, string | number | boolean | undefined>, signal?: AbortSignal): Promise<Response> {
    const url = new URL(`${this.gateway}${path}`);
    for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, String(v));
    const token = typeof this.#o.token === 'function' ? await this.#o.token() : this.#o.token;
    const head = AbortSignal.timeout(this.#o.headTimeoutMs ?? 30_000);
    const controller = new AbortController();
    const abort = (): void => controller.abort();
    head.addEventListener('abort', abort);
    signal?.addEventListener('abort', abort);
    let res: Response;
    try {
      res = await (this.#o.fetch ?? fetch)(url, { headers: { authorization: `Bearer ${token}` }, signal: controller.signal, redirect: 'error' });
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause;
      throw new SluiceError('ERR_GATEWAY_UNREACHABLE', { message: `The gateway cannot be reached at ${this.gateway} (${cause?.code ?? (err as Error).message})`, cause: err });
    } finally {
      head.removeEventListener('abort', abort);
    }
    this.#aborts.set(res, abort);
    if (!res.ok) {
      signal?.removeEventListener('abort', abort);
      throw await errorOf(res, `GET ${url.pathname}`, this.gateway);
    }
    if (res.body === null) throw new SluiceError('ERR_GATEWAY_RESPONSE', { message: `The gateway at ${this.gateway} answered GET ${url.pathname} with no body` });
    return res;
  }
}

/** Parsed NDJSON lines of a response body, as they arrive. */
async function* lines(res: Response, path: string, gateway: string): AsyncGenerator<unknown> {
  const decoder = new TextDecoder();
  let rest = '';
  for await (const chunk of Readable.fromWeb(res.body! as never) as AsyncIterable<Uint8Array>) {
    rest += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = rest.indexOf('\n')) >= 0) {
      const line = rest.slice(0, nl);
      rest = rest.slice(nl + 1);
      if (line.trim() !== '') yield parseLine(line, path, gateway);
    }
  }
  rest += decoder.decode();
  if (rest.trim() !== '') yield parseLine(rest, path, gateway);
}

function parseLine(line: string, path: string, gateway: string): unknown {
  try {
    return JSON.parse(line) as unknown;
  } catch (cause) {
    throw new SluiceError('ERR_GATEWAY_RESPONSE', { message: `The gateway at ${gateway} sent a line of ${path} that is not JSON`, cause });
  }
}

/** The gateway's error body as a SluiceError with the same code, when the table knows it. */
async function errorOf(res: Response, what: string, gateway: string): Promise<SluiceError> {
  let body: { error?: { code?: unknown; message?: unknown } & Record<string, unknown> } | undefined;
  try {
    body = (await res.json()) as typeof body;
  } catch {
    body = undefined;
  }
  const code = body?.error?.code;
  if (typeof code === 'string' && Object.hasOwn(ERRORS, code)) {
    const { code: _code, message, ...details } = body!.error!;
    return new SluiceError(code as ErrorCode, { message: typeof message === 'string' ? message : ERRORS[code as ErrorCode].message, details: { ...details, status: res.status } });
  }
  return new SluiceError('ERR_GATEWAY_RESPONSE', { message: `The gateway at ${gateway} answered ${what} with HTTP ${res.status}`, details: { status: res.status } });
}
