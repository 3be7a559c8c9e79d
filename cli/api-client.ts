import { z } from 'zod';
import { ERRORS, SluiceError, type ErrorCode } from '../shared/errors.js';

const infoSchema = z.looseObject({
  issuer: z.string().min(1),
  cli_client_id: z.string().min(1),
  audience: z.string().min(1),
  version: z.string().optional(),
});

/** `GET /v1/info`: what `sluice login` needs to find the identity provider. */
export type GatewayInfo = z.infer<typeof infoSchema>;

const meSchema = z.looseObject({
  sub: z.string(),
  email: z.string().nullish(),
  name: z.string().nullish(),
  groups: z.array(z.string()).default([]),
  roles: z.array(z.string()).default([]),
  client_id: z.string().nullish(),
  expires_at: z.number().nullish(),
  issuer: z.string().nullish(),
});

/** `GET /v1/me`: who the gateway thinks the bearer is. */
export type Me = z.infer<typeof meSchema>;

const errorBodySchema = z.object({
  error: z.looseObject({ code: z.string(), message: z.string().optional() }),
});

/** Options for {@link ApiClient}. */
export interface ApiClientOptions {
  /** Gateway base URL, e.g. `https://sluice.example.com`. */
  gateway: string;
  /** The bearer token, or a function returning a current one (so long-lived callers pick up refreshes). */
  token?: string | (() => Promise<string>);
  /** Per-request budget; default 30 s. */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

/** Options of one request made through {@link ApiClient.request}. */
export interface ApiRequest<T> {
  method?: string;
  /** Path below the gateway, starting with `/`. */
  path: string;
  /** Send the bearer token (default true). */
  auth?: boolean;
  /** JSON body. */
  body?: unknown;
  query?: Record<string, string | number | boolean | undefined>;
  /** Validates and types the JSON answer. */
  schema: z.ZodType<T>;
}

/** Typed client of the gateway's REST API; every failure is a SluiceError. */
export class ApiClient {
  readonly gateway: string;
  readonly #token: ApiClientOptions['token'];
  readonly #timeoutMs: number;
  readonly #fetch: typeof fetch;

  constructor(options: ApiClientOptions) {
    this.gateway = options.gateway.replace(/\/+$/, '');
    this.#token = options.token;
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    this.#fetch = options.fetch ?? fetch;
  }

  /** `GET /v1/info` (public). */
  info(): Promise<GatewayInfo> {
    return this.request({ path: '/v1/info', auth: false, schema: infoSchema });
  }

  /** `GET /v1/me`: proves the gateway accepts the token. */
  me(): Promise<Me> {
    return this.request({ path: '/v1/me', schema: meSchema });
  }

  /** Make one JSON request; the building block for endpoint methods. */
  async request<T>(req: ApiRequest<T>): Promise<T> {
    const url = new URL(`${this.gateway}${req.path}`);
    for (const [k, v] of Object.entries(req.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const headers: Record<string, string> = { accept: 'application/json' };
    if (req.auth !== false) {
      const token = typeof this.#token === 'function' ? await this.#token() : this.#token;
      if (!token) throw new SluiceError('ERR_NOT_LOGGED_IN');
      headers.authorization = `Bearer ${token}`;
    }
    if (req.body !== undefined) headers['content-type'] = 'application/json';

    let res: Response;
    try {
      res = await this.#fetch(url, {
        method: req.method ?? 'GET',
        headers,
        body: req.body === undefined ? undefined : JSON.stringify(req.body),
        signal: AbortSignal.timeout(this.#timeoutMs),
        redirect: 'error',
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      const why = (err as Error)?.name === 'TimeoutError' ? `no answer within ${this.#timeoutMs} ms` : (cause?.code ?? cause?.message ?? (err as Error)?.message);
      throw new SluiceError('ERR_GATEWAY_UNREACHABLE', { message: `The gateway cannot be reached at ${this.gateway} (${why})`, cause: err });
    }

    const text = await res.text().catch(() => '');
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    if (!res.ok) throw errorFromResponse(res.status, json, `${req.method ?? 'GET'} ${url.pathname}`, this.gateway);
    const parsed = req.schema.safeParse(json);
    if (!parsed.success) {
      throw new SluiceError('ERR_GATEWAY_RESPONSE', {
        message: `The gateway at ${this.gateway} answered ${req.method ?? 'GET'} ${url.pathname} with an unexpected body: ${z.prettifyError(parsed.error).replace(/\n/g, '; ')}`,
        cause: parsed.error,
      });
    }
    return parsed.data;
  }
}

/** The gateway's error body as a SluiceError: same code when the table knows it, else ERR_GATEWAY_RESPONSE. */
function errorFromResponse(status: number, body: unknown, what: string, gateway: string): SluiceError {
  const parsed = errorBodySchema.safeParse(body);
  if (parsed.success) {
    const { code, message, ...details } = parsed.data.error;
    if (Object.hasOwn(ERRORS, code)) {
      return new SluiceError(code as ErrorCode, { message: message ?? ERRORS[code as ErrorCode].message, details: { ...details, status } });
    }
    return new SluiceError('ERR_GATEWAY_RESPONSE', {
      message: `The gateway at ${gateway} answered ${what} with ${status} ${code}${message ? `: ${message}` : ''}`,
      details: { status, gateway_code: code },
    });
  }
  return new SluiceError('ERR_GATEWAY_RESPONSE', {
    message: `The gateway at ${gateway} answered ${what} with HTTP ${status} and no sluice error body (is this a sluice gateway?)`,
    details: { status },
  });
}
