import type { ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { SluiceError } from '../../shared/errors.js';
import { EXCHANGE_REF } from '../../shared/sessions-api.js';
import type { ConnectionConfig } from '../config/schema.js';
import type { Principal } from '../identity/principal.js';
import { sendErrorResponse } from '../pipeline/error-response.js';
import type { SessionRef } from '../pipeline/exchange.js';
import { discardSessionRecorder } from '../pipeline/recorder.js';
import { requestPathFor } from '../pipeline/request-path.js';
import type { ExchangeHandler } from '../pipeline/run-exchange.js';
import { runHttpExchange } from '../protocols/http-carrier.js';

/** What the direct-proxy route needs from the gateway. */
export interface ProxyRouteDeps {
  /** The configured connections, read per request so a reload takes effect. */
  readonly connections: () => readonly ConnectionConfig[];
  /** Verifies the caller's bearer token; throws a SluiceError when it is missing or invalid. */
  readonly authenticate: (req: FastifyRequest) => Promise<Principal>;
  /** The same exchange handler the tunnel's protocols use. */
  readonly exchange: ExchangeHandler;
  /**
   * The recording session of a call; by default every call is a session of its own, recorded nowhere (a
   * gateway without storage). `resendOf` is set when the call re-sends a recorded exchange
   * (`x-sluice-resend-of`): such a call gets a session of its own.
   */
  readonly sessionFor?: (
    principal: Principal,
    req: FastifyRequest,
    options: { readonly resendOf?: string; readonly response?: ServerResponse },
  ) => SessionRef;
  /**
   * Throws unless the caller may read the recorded exchange a re-send names (ERR_NOT_FOUND,
   * ERR_FORBIDDEN): a re-send is labelled in the index, and a label nobody checked would be a forgery.
   */
  readonly checkResendOf?: (principal: Principal, exchangeRef: string) => Promise<void>;
}

const PREFIX = '/v1/proxy/';

/** Request header naming the recorded exchange a call re-sends: `<session id>#<exchange number, from 1>`. */
export const RESEND_OF_HEADER = 'x-sluice-resend-of';

/** Response header telling the caller which recording session holds its call. */
export const SESSION_HEADER = 'x-sluice-session';


/** The validated `x-sluice-resend-of` value, or undefined when the header is absent. */
export function resendOfHeader(req: FastifyRequest): string | undefined {
  const value = req.headers[RESEND_OF_HEADER];
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !EXCHANGE_REF.test(value)) {
    throw new SluiceError('ERR_BAD_REQUEST', { message: `${RESEND_OF_HEADER} must be "<session id>#<exchange number>", such as ses_…#1` });
  }
  return value;
}

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];

/** A proxy URL cut in two: `/v1/proxy/<connection>` as sent, and the upstream path and query after it. */
function splitProxyUrl(url: string): { readonly route: string; readonly path: string } {
  const rest = url.slice(PREFIX.length);
  let i = 0;
  while (i < rest.length && rest[i] !== '/' && rest[i] !== '?') i++;
  const route = url.slice(0, PREFIX.length + i);
  if (i === rest.length) return { route, path: '/' };
  return { route, path: rest[i] === '/' ? rest.slice(i) : `/${rest.slice(i)}` };
}

/** The upstream path and query of a proxy URL: everything after `/v1/proxy/<connection>`. */
export function upstreamPathOf(url: string): string {
  return splitProxyUrl(url).path;
}

/**
 * Registers `ANY /v1/proxy/:connection/*`: automated agents call a connection's upstream with their bearer
 * token and go through the same pipeline as the tunnel. The route takes over the raw request in `onRequest`,
 * so fastify never reads or parses the body: it streams to the upstream as it arrives.
 */
export function registerProxyRoutes(app: FastifyInstance, deps: ProxyRouteDeps): void {
  const sessionFor = deps.sessionFor ?? (() => ({ id: `ses_${randomUUID().replaceAll('-', '')}`, recorder: discardSessionRecorder }));

  const takeOver = async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    reply.hijack();
    const res = reply.raw;
    try {
      const principal = await deps.authenticate(req);
      const name = (req.params as { connection: string }).connection;
      const connection = deps.connections().find((c) => c.name === name);
      if (connection === undefined) {
        throw new SluiceError('ERR_CONNECTION_UNKNOWN', {
          message: `No connection is named "${name}"`,
          details: { connection: name },
        });
      }
      if (connection.type !== 'http') {
        throw new SluiceError('ERR_BAD_REQUEST', {
          message: `Connection "${name}" is a ${connection.type} connection; the proxy route carries HTTP only (use \`sluice connect ${name}\`)`,
          details: { connection: name },
        });
      }
      const url = splitProxyUrl(req.raw.url ?? req.url);
      try {
        // fastify's access line reads the URL once the response is done: it names the path that was judged
        // and forwarded, as the recording does, not the spelling the caller chose.
        req.raw.url = url.route + requestPathFor(url.path, connection);
      } catch {
        // The pipeline refuses this target itself, so the refusal is recorded in the caller's session.
      }
      const resendOf = resendOfHeader(req);
      if (resendOf !== undefined) await deps.checkResendOf?.(principal, resendOf);
      const session = sessionFor(principal, req, { response: res, ...(resendOf === undefined ? {} : { resendOf }) });
      // Set before the pipeline writes the head, which keeps headers set this way.
      res.setHeader(SESSION_HEADER, session.id);
      runHttpExchange(deps.exchange, req.raw, res, {
        principal,
        connection,
        session,
        clientAddress: req.ip,
        via: 'proxy',
        path: url.path,
      });
    } catch (error) {
      if (error instanceof SluiceError && error.status === 401) {
        res.setHeader('www-authenticate', `Bearer realm="sluice", error="invalid_token", error_description="${error.code}"`);
      }
      sendErrorResponse(res, error, req.id);
    }
  };

  app.route({
    method: METHODS,
    url: `${PREFIX}:connection/*`,
    onRequest: takeOver,
    // Never reached: onRequest hijacks every request, before fastify would read the body.
    handler: async () => undefined,
  });
}
