import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as jose from 'jose';
import type {
  Adapter,
  AdapterFactory,
  AdapterPayload,
  ClientMetadata,
  Configuration,
  default as ProviderType,
} from 'oidc-provider';

export interface DemoUser {
  id: string;
  email: string;
  name: string;
  groups: string[];
}

/** A confidential client for the client-credentials grant; its tokens carry `groups` and `sub` = clientId. */
export interface IdpClient {
  clientId: string;
  clientSecret: string;
  groups: string[];
  /** How the client authenticates at the token endpoint. Default `client_secret_post`, openid-client's default. */
  tokenEndpointAuthMethod?: 'client_secret_post' | 'client_secret_basic';
}

export interface IdpOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0 (any free port). */
  port?: number;
  /** The gateway's audience, used as the resource indicator: an absolute URI such as `urn:sluice:gateway`. */
  audience: string;
  users: DemoUser[];
  /** Public client (no secret) allowed the device-code and refresh-token grants. */
  cliClientId: string;
  ciClients?: IdpClient[];
  /** Lifetime of access tokens from every grant. Default 3600. */
  accessTokenTtlSeconds?: number;
  /** Private JWKs to sign with; the first one signs. Default: one RS256 key generated in memory. */
  signingKeys?: jose.JWK[];
  /** Shown on the sign-in pages. */
  title?: string;
}

export interface RunningIdp {
  /** `http://127.0.0.1:PORT`, no trailing slash. */
  issuer: string;
  close(): Promise<void>;
  /** The public half of the signing keys, as served on the provider's jwks_uri. */
  publicJwks(): { keys: jose.JWK[] };
}

/** The resource server's own scope; requested or not, consent grants it with the audience. */
const GATEWAY_SCOPE = 'gateway';
const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
const DAY = 24 * 60 * 60;
const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const;
const MAX_FORM_BYTES = 16 * 1024;

type OidcProviderModule = typeof import('oidc-provider');
let loading: Promise<OidcProviderModule> | undefined;

/**
 * oidc-provider 9 prints an "Unsupported runtime" warning when imported on Node 20, which STACK.md says
 * it is tested and supported on here. Drop exactly that line while the module evaluates, and load it once
 * so concurrent starts cannot interleave the console swap.
 */
function loadOidcProvider(): Promise<OidcProviderModule> {
  loading ??= (async () => {
    const warn = console.warn;
    console.warn = (...args: unknown[]) => {
      if (typeof args[0] === 'string' && args[0].startsWith('oidc-provider WARNING: Unsupported runtime')) return;
      warn.apply(console, args);
    };
    try {
      return await import('oidc-provider');
    } finally {
      console.warn = warn;
    }
  })();
  return loading;
}

/** Starts a real OpenID provider for `sluice demo` and tests: device code, client credentials, JWT access tokens. */
export async function startIdp(options: IdpOptions): Promise<RunningIdp> {
  const ttl = options.accessTokenTtlSeconds ?? 3600;
  if (!Number.isSafeInteger(ttl) || ttl <= 0) {
    throw new TypeError(`accessTokenTtlSeconds must be a positive integer, got ${String(options.accessTokenTtlSeconds)}`);
  }
  if (!URL.canParse(options.audience)) {
    throw new TypeError(`audience must be an absolute URI (oidc-provider resource indicators), got ${JSON.stringify(options.audience)}`);
  }
  const { Provider, errors, interactionPolicy } = await loadOidcProvider();

  const signingKeys = await resolveSigningKeys(options.signingKeys);
  const signingAlg = algorithmFor(signingKeys[0]!);
  const users = new Map(options.users.map((user) => [user.id, user]));
  const ciClients = new Map((options.ciClients ?? []).map((client) => [client.clientId, client]));
  const title = options.title ?? 'sluice sign-in';

  const host = options.host ?? '127.0.0.1';
  let provider: ProviderType | undefined;
  let providerCallback: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  const server = createServer((req, res) => {
    if (!provider || !providerCallback) {
      sendHtml(res, 503, page(title, 'Starting', '<p>The sign-in service is starting. Try again in a moment.</p>'));
      return;
    }
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (path.startsWith('/interaction/')) {
      handleInteraction(provider, req, res, path).catch((err: unknown) => sendError(res, err));
      return;
    }
    providerCallback(req, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const issuer = `http://${issuerHost(host)}:${port}`;

  const policy = interactionPolicy.base();
  // A browser keeps its provider session, so without this the second `sluice login` in the same browser
  // would silently reuse the first person; the demo is about switching people, so always ask.
  policy.get('login')?.checks.add(
    new interactionPolicy.Check('demo_pick_user', 'a demo user is picked for every sign-in', (ctx) =>
      ctx.oidc.result?.login ? interactionPolicy.Check.NO_NEED_TO_PROMPT : interactionPolicy.Check.REQUEST_PROMPT,
    ),
  );

  const clients: ClientMetadata[] = [
    {
      client_id: options.cliClientId,
      client_name: 'sluice CLI',
      token_endpoint_auth_method: 'none',
      grant_types: [DEVICE_CODE_GRANT, 'refresh_token'],
      response_types: [],
      redirect_uris: [],
    },
    ...[...ciClients.values()].map(
      (client): ClientMetadata => ({
        client_id: client.clientId,
        client_secret: client.clientSecret,
        client_name: client.clientId,
        token_endpoint_auth_method: client.tokenEndpointAuthMethod ?? 'client_secret_post',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
      }),
    ),
  ];

  const configuration: Configuration = {
    adapter: createMemoryAdapter(),
    clients,
    jwks: { keys: signingKeys as NonNullable<Configuration['jwks']>['keys'] },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    clientDefaults: { id_token_signed_response_alg: signingAlg as 'RS256' },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
    scopes: ['openid', 'offline_access', 'profile', 'email', GATEWAY_SCOPE],
    async findAccount(_ctx, sub) {
      const user = users.get(sub);
      if (!user) return undefined;
      return {
        accountId: user.id,
        claims: () => ({ sub: user.id, email: user.email, email_verified: true, name: user.name }),
      };
    },
    interactions: { policy, url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      deviceFlow: {
        enabled: true,
        userCodeInputSource: (ctx, form, out, err) => {
          ctx.body = page(title, 'Connect a device', userCodeInputBody(form, err, out?.error));
        },
        userCodeConfirmSource: (ctx, form, client, _deviceInfo, userCode) => {
          ctx.body = page(title, 'Confirm the code', userCodeConfirmBody(form, client.clientName ?? client.clientId, userCode));
        },
        successSource: (ctx) => {
          ctx.body = page(
            title,
            'Signed in',
            '<p id="sluice-device-success">You are signed in. Return to your terminal; you can close this page.</p>',
          );
        },
      },
      clientCredentials: { enabled: true },
      introspection: {
        enabled: true,
        // Confidential clients may introspect any token; a public client only its own.
        allowedPolicy: (_ctx, client, token) => client.clientAuthMethod !== 'none' || token.clientId === client.clientId,
      },
      revocation: {
        enabled: true,
        allowedPolicy: (_ctx, client, token) => token.clientId === client.clientId,
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: (_ctx, _client, oneOf) => (oneOf?.includes(options.audience) ? options.audience : oneOf ?? options.audience),
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resourceIndicator) => {
          if (resourceIndicator !== options.audience) {
            throw new errors.InvalidTarget(`unknown resource indicator; this provider only issues tokens for ${options.audience}`);
          }
          return {
            scope: GATEWAY_SCOPE,
            audience: options.audience,
            accessTokenFormat: 'jwt',
            accessTokenTTL: ttl,
            jwt: { sign: { alg: signingAlg as 'RS256' } },
          };
        },
      },
    },
    extraTokenClaims(_ctx, token) {
      if (token.kind === 'ClientCredentials') {
        const client = token.clientId === undefined ? undefined : ciClients.get(token.clientId);
        return client ? { groups: [...client.groups] } : undefined;
      }
      const user = token.accountId === undefined ? undefined : users.get(token.accountId);
      return user ? { groups: [...user.groups], email: user.email, name: user.name } : undefined;
    },
    issueRefreshToken: (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    // The CLI has no browser session to keep alive: tokens must outlive the sign-in page's cookie.
    expiresWithSession: () => false,
    // Browser pages are never a client of these endpoints; CLI and CI talk to them without an Origin.
    clientBasedCORS: () => false,
    ttl: {
      AccessToken: ttl,
      ClientCredentials: ttl,
      DeviceCode: 10 * 60,
      IdToken: 60 * 60,
      Interaction: 10 * 60,
      RefreshToken: 14 * DAY,
      Session: 14 * DAY,
      Grant: 14 * DAY,
    },
    renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = page(title, 'Sign-in failed', errorBody(out.error, out.error_description));
    },
  };

  try {
    provider = new Provider(issuer, configuration);
  } catch (err) {
    // The port is already taken and the provider rejected its configuration: do not leak the listener.
    server.close();
    server.closeAllConnections();
    throw err;
  }
  providerCallback = provider.callback() as (req: IncomingMessage, res: ServerResponse) => void;

  async function handleInteraction(op: ProviderType, req: IncomingMessage, res: ServerResponse, path: string) {
    const [, , uid, action] = path.split('/');
    const details = await op.interactionDetails(req, res);
    if (details.uid !== uid) {
      throw new errors.InvalidRequest('the sign-in page does not match this browser session; start again from the device page');
    }
    const clientId = String(details.params.client_id ?? '');
    const clientName = (await op.Client.find(clientId))?.clientName ?? clientId;

    if (req.method === 'POST' && action === 'login') {
      const form = await readForm(req);
      const accountId = form.get('accountId') ?? '';
      if (details.prompt.name !== 'login' || !users.has(accountId)) {
        sendHtml(res, 400, page(title, 'Pick a user', loginBody(uid, clientName, [...users.values()], 'Pick one of the listed users.')));
        return;
      }
      await op.interactionFinished(req, res, { login: { accountId } }, { mergeWithLastSubmission: false });
      return;
    }
    if (req.method === 'POST' && action === 'abort') {
      await op.interactionFinished(
        req,
        res,
        { error: 'access_denied', error_description: 'End-User aborted interaction' },
        { mergeWithLastSubmission: false },
      );
      return;
    }
    if (req.method !== 'GET' || action !== undefined) {
      sendHtml(res, 404, page(title, 'Not found', '<p>There is no such sign-in page.</p>'));
      return;
    }
    if (details.prompt.name === 'login') {
      sendHtml(res, 200, page(title, 'Sign in', loginBody(uid, clientName, [...users.values()])));
      return;
    }
    if (details.prompt.name === 'consent') {
      const accountId = details.session?.accountId;
      if (!accountId) throw new errors.InvalidRequest('no signed-in user for this consent');
      const grant = details.grantId
        ? await op.Grant.find(details.grantId)
        : new op.Grant({ accountId, clientId });
      if (!grant) throw new errors.InvalidRequest('the grant for this sign-in has expired; start again');
      // The demo has no consent screen: grant what was asked, plus the gateway as the token audience.
      const missing = details.prompt.details as {
        missingOIDCScope?: string[];
        missingOIDCClaims?: string[];
        missingResourceScopes?: Record<string, string[]>;
      };
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
      grant.addResourceScope(options.audience, GATEWAY_SCOPE);
      const grantId = await grant.save();
      await op.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
      return;
    }
    throw new errors.InvalidRequest(`unsupported prompt ${details.prompt.name}`);
  }

  function sendError(res: ServerResponse, err: unknown) {
    const status = typeof (err as { statusCode?: unknown }).statusCode === 'number' ? (err as { statusCode: number }).statusCode : 500;
    const code = (err as { error?: unknown }).error;
    const description = (err as { error_description?: unknown }).error_description;
    if (res.headersSent) {
      res.destroy();
      return;
    }
    sendHtml(
      res,
      status,
      page(
        title,
        'Sign-in failed',
        errorBody(typeof code === 'string' ? code : 'server_error', typeof description === 'string' ? description : status === 500 ? 'unexpected error' : undefined),
      ),
    );
  }

  const publicKeys = signingKeys.map(publicJwk);
  return {
    issuer,
    publicJwks: () => ({ keys: publicKeys.map((key) => ({ ...key })) }),
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}

async function resolveSigningKeys(keys: jose.JWK[] | undefined): Promise<jose.JWK[]> {
  if (keys && keys.length > 0) {
    return Promise.all(
      keys.map(async (key) => {
        if (!key.d) throw new TypeError(`signing key ${key.kid ?? '(no kid)'} is not a private key`);
        return { use: 'sig', ...key, kid: key.kid ?? (await jose.calculateJwkThumbprint(key)) };
      }),
    );
  }
  const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
  const jwk = await jose.exportJWK(privateKey);
  return [{ ...jwk, kid: await jose.calculateJwkThumbprint(jwk), alg: 'RS256', use: 'sig' }];
}

function algorithmFor(key: jose.JWK): string {
  if (key.alg) return key.alg;
  switch (key.kty) {
    case 'RSA':
      return 'RS256';
    case 'EC':
      return key.crv === 'P-384' ? 'ES384' : key.crv === 'P-521' ? 'ES512' : 'ES256';
    case 'OKP':
      return 'EdDSA';
    default:
      throw new TypeError(`unsupported signing key type ${String(key.kty)}`);
  }
}

function publicJwk(key: jose.JWK): jose.JWK {
  const copy: Record<string, unknown> = { ...key };
  for (const member of PRIVATE_JWK_MEMBERS) delete copy[member];
  return copy as jose.JWK;
}

function issuerHost(host: string): string {
  // An issuer must be an address clients can reach, and "any interface" is not one.
  if (host === '0.0.0.0' || host === '::') return '127.0.0.1';
  return host.includes(':') ? `[${host}]` : host;
}

/**
 * Storage for one provider instance. oidc-provider's own in-memory adapter prints a "you MUST change it"
 * warning on every start; this one is scoped to its provider and bounded so a long demo cannot grow it.
 */
function createMemoryAdapter(maxEntries = 10_000): AdapterFactory {
  const grantable = new Set(['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest']);
  const entries = new Map<string, { payload: AdapterPayload; expiresAt: number }>();
  const byUserCode = new Map<string, string>();
  const bySessionUid = new Map<string, string>();
  const byGrant = new Map<string, Set<string>>();

  function remove(key: string): void {
    const entry = entries.get(key);
    if (!entry) return;
    entries.delete(key);
    const { userCode, uid, grantId } = entry.payload;
    if (userCode && byUserCode.get(userCode) === key) byUserCode.delete(userCode);
    if (uid && bySessionUid.get(uid) === key) bySessionUid.delete(uid);
    const members = grantId ? byGrant.get(grantId) : undefined;
    members?.delete(key);
    if (grantId && members?.size === 0) byGrant.delete(grantId);
  }

  function read(key: string | undefined): AdapterPayload | undefined {
    const entry = key === undefined ? undefined : entries.get(key);
    if (!entry || key === undefined) return undefined;
    if (entry.expiresAt <= Date.now()) {
      remove(key);
      return undefined;
    }
    return structuredClone(entry.payload);
  }

  return (model: string): Adapter => {
    const keyFor = (id: string) => `${model}:${id}`;
    return {
      async upsert(id, payload, expiresIn) {
        const key = keyFor(id);
        remove(key);
        const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Infinity;
        entries.set(key, { payload: structuredClone(payload), expiresAt });
        if (payload.userCode) byUserCode.set(payload.userCode, key);
        if (model === 'Session' && payload.uid) bySessionUid.set(payload.uid, key);
        if (grantable.has(model) && payload.grantId) {
          const members = byGrant.get(payload.grantId) ?? new Set<string>();
          members.add(key);
          byGrant.set(payload.grantId, members);
        }
        for (const oldest of entries.keys()) {
          if (entries.size <= maxEntries) break;
          remove(oldest);
        }
      },
      find: async (id) => read(keyFor(id)),
      findByUserCode: async (userCode) => read(byUserCode.get(userCode)),
      findByUid: async (uid) => read(bySessionUid.get(uid)),
      async consume(id) {
        const entry = entries.get(keyFor(id));
        if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
      },
      async destroy(id) {
        remove(keyFor(id));
      },
      async revokeByGrantId(grantId) {
        for (const key of [...(byGrant.get(grantId) ?? [])]) remove(key);
        byGrant.delete(grantId);
      },
    };
  };
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  let body = '';
  for await (const chunk of req) {
    body += String(chunk);
    if (body.length > MAX_FORM_BYTES) throw Object.assign(new Error('form too large'), { statusCode: 413, error: 'invalid_request' });
  }
  return new URLSearchParams(body);
}

function sendHtml(res: ServerResponse, status: number, html: string): void {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(html),
  });
  res.end(html);
}

function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title: string, heading: string, body: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(heading)} · ${escapeHtml(title)}</title>
<style>
  body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f4f5f7;color:#1f2328;margin:0;padding:40px 16px}
  main{max-width:460px;margin:0 auto;background:#fff;border-radius:10px;box-shadow:0 1px 3px rgba(0,0,0,.12);padding:28px 32px}
  header{font-size:13px;color:#57606a;letter-spacing:.04em;text-transform:uppercase;margin-bottom:6px}
  h1{font-size:22px;margin:0 0 16px}
  p{line-height:1.5}
  .code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:28px;letter-spacing:.12em;text-align:center;background:#f6f8fa;border-radius:8px;padding:12px;margin:16px 0}
  .error{color:#b42318;background:#fef3f2;border-radius:6px;padding:10px 12px}
  input[type=text]{width:100%;box-sizing:border-box;font-size:22px;text-align:center;text-transform:uppercase;letter-spacing:.12em;padding:10px;border:1px solid #d0d7de;border-radius:6px;margin-bottom:12px}
  button{font:inherit;cursor:pointer;border-radius:6px;border:1px solid #d0d7de;background:#f6f8fa;padding:10px 14px;width:100%}
  button.primary{background:#1f6feb;border-color:#1f6feb;color:#fff;font-weight:600}
  button.link{background:none;border:none;color:#57606a;text-decoration:underline;padding:6px}
  .user{display:block;text-align:left;margin:0 0 10px}
  .user strong{display:block}
  .user span{color:#57606a;font-size:14px}
  .chip{display:inline-block;font-size:12px;background:#ddf4ff;color:#0969da;border-radius:10px;padding:1px 8px;margin:4px 4px 0 0}
  form{margin:0}
</style>
</head>
<body>
<main>
<header>${escapeHtml(title)}</header>
<h1>${escapeHtml(heading)}</h1>
${body}
</main>
</body>
</html>`;
}

function userCodeInputBody(form: string, err: Error | undefined, code: string | undefined): string {
  let message = '<p>Enter the code shown in your terminal.</p>';
  if (err) {
    const name = err.name;
    // Cancelling on the code page and on the login page arrive as different errors; a person sees one outcome.
    const cancelled = name === 'AbortedError' || code === 'access_denied';
    const text = cancelled
      ? 'Sign-in cancelled. The device was not connected.'
      : name === 'NoCodeError' || name === 'NotFoundError'
        ? 'That code is not valid. Check it and try again.'
        : name === 'ExpiredError'
          ? 'That code has expired. Run the sign-in command again for a new one.'
          : name === 'AlreadyUsedError'
            ? 'That code has already been used.'
            : 'Something went wrong with that code. Try again.';
    message = `<p class="error" id="sluice-error" data-error="${cancelled ? 'cancelled' : escapeHtml(name)}">${escapeHtml(text)}</p>`;
  }
  return `${message}
${form}
<button class="primary" type="submit" form="op.deviceInputForm">Continue</button>`;
}

function userCodeConfirmBody(form: string, clientName: string, userCode: string): string {
  return `<p><strong>${escapeHtml(clientName)}</strong> is asking to sign in. Continue only if this code matches the one in your terminal:</p>
<div class="code">${escapeHtml(userCode)}</div>
${form}
<button class="primary" autofocus type="submit" form="op.deviceConfirmForm">Continue</button>
<button class="link" type="submit" form="op.deviceConfirmForm" name="abort" value="yes">Cancel, this is not my code</button>`;
}

function loginBody(uid: string, clientName: string, users: DemoUser[], error?: string): string {
  const action = `/interaction/${encodeURIComponent(uid)}`;
  const buttons = users
    .map(
      (user) => `<form method="post" action="${action}/login">
<input type="hidden" name="accountId" value="${escapeHtml(user.id)}">
<button class="user" type="submit"><strong>${escapeHtml(user.name)}</strong><span>${escapeHtml(user.email)}</span><br>${user.groups
        .map((group) => `<span class="chip">${escapeHtml(group)}</span>`)
        .join('')}</button>
</form>`,
    )
    .join('\n');
  return `${error ? `<p class="error" id="sluice-error">${escapeHtml(error)}</p>` : ''}
<p><strong>${escapeHtml(clientName)}</strong> is asking you to sign in. This is a demo identity provider: pick who you are, no password.</p>
${buttons}
<form method="post" action="${action}/abort"><button class="link" type="submit">Cancel sign-in</button></form>`;
}

function errorBody(code: string, description: string | undefined): string {
  return `<p class="error" id="sluice-error" data-error="${escapeHtml(code)}">${escapeHtml(code)}${description ? `: ${escapeHtml(description)}` : ''}</p>
<p>Start again from your terminal.</p>`;
}
