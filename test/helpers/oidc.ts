import { createHmac, createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as jose from 'jose';
import { startIdp, type DemoUser, type IdpClient, type IdpOptions, type RunningIdp } from '../../server/demo/idp.js';

export const TEST_AUDIENCE = 'urn:sluice:gateway';
export const TEST_CLI_CLIENT_ID = 'sluice-cli';

export const TEST_USERS = {
  alice: { id: 'alice', email: 'alice@example.com', name: 'Alice Engineer', groups: ['ml-eng'] },
  bob: { id: 'bob', email: 'bob@example.com', name: 'Bob Lead', groups: ['ml-leads'] },
  carol: { id: 'carol', email: 'carol@example.com', name: 'Carol Security', groups: ['security'] },
  dave: { id: 'dave', email: 'dave@example.com', name: 'Dave Intern', groups: ['interns'] },
} as const satisfies Record<string, DemoUser>;

export const TEST_CI_CLIENT: IdpClient = { clientId: 'ci-bot', clientSecret: 'ci-bot-secret-for-tests', groups: ['ml-eng', 'ci'] };

/** A private signing JWK that always has `kid` and `alg`. */
export type SigningJwk = jose.JWK & { kid: string; alg: string };

export interface TestIdp {
  idp: RunningIdp;
  issuer: string;
  audience: string;
  cliClientId: string;
  ciClient: IdpClient;
  /** Same as `ciClient.clientSecret`. */
  ciSecret: string;
  users: typeof TEST_USERS;
  /** The provider's own private signing key: tokens signed with it verify against the issuer's JWKS. */
  signingKey: SigningJwk;
  /** Claims the IdP would put in a user's access token (iss, aud, sub, email, groups, iat, exp in 5 min). */
  claimsFor(userId: keyof typeof TEST_USERS, extra?: jose.JWTPayload): jose.JWTPayload;
  close(): Promise<void>;
}

/**
 * Fixed RS256 keys committed with the tests, so no test waits for an RSA key to be generated: `ISSUER_KEY`
 * is what every test IdP signs with unless told otherwise; `FOREIGN_KEY` is published by none of them
 * (forged tokens, a key the provider rotates to).
 */
const FIXTURE_KEYS = JSON.parse(readFileSync(new URL('../fixtures/idp/signing-keys.json', import.meta.url), 'utf8')) as {
  issuer: SigningJwk;
  foreign: SigningJwk;
};
export const ISSUER_KEY: SigningJwk = FIXTURE_KEYS.issuer;
export const FOREIGN_KEY: SigningJwk = FIXTURE_KEYS.foreign;

/** Starts the demo IdP with the test users alice/bob/carol/dave, the `sluice-cli` client and the `ci-bot` client. */
export async function startTestIdp(overrides: Partial<IdpOptions> = {}): Promise<TestIdp> {
  const signingKey = (overrides.signingKeys?.[0] as SigningJwk | undefined) ?? ISSUER_KEY;
  const options: IdpOptions = {
    audience: TEST_AUDIENCE,
    users: Object.values(TEST_USERS).map((user) => ({ ...user, groups: [...user.groups] })),
    cliClientId: TEST_CLI_CLIENT_ID,
    ciClients: [TEST_CI_CLIENT],
    title: 'sluice test sign-in',
    ...overrides,
    signingKeys: overrides.signingKeys ?? [signingKey],
  };
  const idp = await startIdp(options);
  const published = idp.publicJwks().keys[0];
  const ciClient = options.ciClients?.[0] ?? TEST_CI_CLIENT;
  return {
    idp,
    issuer: idp.issuer,
    audience: options.audience,
    cliClientId: options.cliClientId,
    ciClient,
    ciSecret: ciClient.clientSecret,
    users: TEST_USERS,
    signingKey: { ...signingKey, kid: published?.kid ?? signingKey.kid },
    claimsFor(userId, extra = {}) {
      const user = TEST_USERS[userId];
      const now = Math.floor(Date.now() / 1000);
      return {
        iss: idp.issuer,
        aud: options.audience,
        sub: user.id,
        email: user.email,
        groups: [...user.groups],
        iat: now,
        exp: now + 300,
        ...extra,
      };
    },
    close: () => idp.close(),
  };
}

/**
 * Signs claims as given with jose. `iat`/`exp` default to now/now+5 min only when absent; a claim set to
 * `undefined` is left out, so tokens without `exp` can be made. The header defaults to the key's alg and kid.
 */
export async function signToken(
  key: jose.JWK | jose.CryptoKey | Uint8Array,
  claims: Record<string, unknown>,
  header: Partial<jose.JWTHeaderParameters> = {},
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const payload: Record<string, unknown> = { iat: now, exp: now + 300, ...claims };
  for (const [name, value] of Object.entries(payload)) if (value === undefined) delete payload[name];
  const isJwk = !(key instanceof Uint8Array) && 'kty' in key;
  const jwk = isJwk ? (key as jose.JWK) : undefined;
  const alg = header.alg ?? jwk?.alg ?? (key instanceof Uint8Array ? 'HS256' : 'RS256');
  const signingKey = jwk ? await jose.importJWK(jwk, alg) : (key as jose.CryptoKey | Uint8Array);
  return new jose.SignJWT(payload)
    .setProtectedHeader({ ...(jwk?.kid ? { kid: jwk.kid } : {}), typ: 'JWT', ...header, alg })
    .sign(signingKey);
}

/** Joins header, payload and signature by hand, for tokens jose refuses to produce. */
export function craftToken(header: Record<string, unknown>, claims: Record<string, unknown>, signature = ''): string {
  return `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}.${signature}`;
}

/** An `alg: none` token (empty signature). */
export function unsignedToken(claims: Record<string, unknown>, header: Record<string, unknown> = {}): string {
  return craftToken({ alg: 'none', typ: 'JWT', ...header }, claims);
}

/**
 * The classic key-confusion token: HS256 with the issuer's PUBLIC key (its SPKI PEM text) as the HMAC secret,
 * which a verifier that trusts the header's alg would accept.
 */
export function hs256WithPublicKey(
  publicJwk: jose.JWK,
  claims: Record<string, unknown>,
  header: Record<string, unknown> = {},
): string {
  const pem = createPublicKey({ key: publicJwk as import('node:crypto').JsonWebKey, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
  const head = { alg: 'HS256', typ: 'JWT', ...(publicJwk.kid ? { kid: publicJwk.kid } : {}), ...header };
  const signingInput = `${b64url(JSON.stringify(head))}.${b64url(JSON.stringify(claims))}`;
  const signature = createHmac('sha256', pem).update(signingInput).digest('base64url');
  return `${signingInput}.${signature}`;
}

function b64url(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64url');
}

export interface DeviceApprovalOptions {
  /** `verification_uri_complete` from the device authorization response. */
  verificationUriComplete: string;
  /** Reuse one browser (its cookies, so its provider session) across approvals; a fresh one by default. */
  browser?: DeviceBrowser;
}

/** A tiny cookie jar: enough for one browser walking the provider's pages on one host. */
class CookieJar {
  readonly #cookies = new Map<string, string>();

  store(response: Response): void {
    for (const line of response.headers.getSetCookie()) {
      const [pair = '', ...attributes] = line.split(';');
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = attributes.some((attribute) => {
        const [key = '', val = ''] = attribute.split('=').map((part) => part.trim());
        if (key.toLowerCase() === 'max-age') return Number(val) <= 0;
        if (key.toLowerCase() === 'expires') return Date.parse(val) <= Date.now();
        return false;
      });
      if (expired || value === '') this.#cookies.delete(name);
      else this.#cookies.set(name, value);
    }
  }

  header(): string {
    return [...this.#cookies].map(([name, value]) => `${name}=${value}`).join('; ');
  }
}

/** A browser session (cookie jar) for the provider's pages. */
export interface DeviceBrowser {
  readonly kind: 'device-browser';
}

/** A browser whose provider session lasts across several approvals, as a person's real browser does. */
export function newDeviceBrowser(): DeviceBrowser {
  return new Browser();
}

interface Page {
  url: string;
  status: number;
  html: string;
}

class Browser implements DeviceBrowser {
  readonly kind = 'device-browser' as const;

  readonly #jar = new CookieJar();

  /**
   * Requests a URL and follows what a browser would follow without a person: redirects, and the provider's
   * self-submitting form pages (the device-code landing, the sign-out when the session belongs to someone else).
   */
  async go(url: string, init: { method?: string; form?: Record<string, string> } = {}): Promise<Page> {
    let current = url;
    let method = init.method ?? 'GET';
    let body = init.form ? new URLSearchParams(init.form).toString() : undefined;
    for (let hop = 0; hop < 20; hop += 1) {
      const response = await fetch(current, {
        method,
        redirect: 'manual',
        headers: {
          cookie: this.#jar.header(),
          ...(body === undefined ? {} : { 'content-type': 'application/x-www-form-urlencoded' }),
        },
        body,
      });
      this.#jar.store(response);
      const location = response.headers.get('location');
      if (response.status >= 300 && response.status < 400 && location) {
        await response.body?.cancel();
        current = new URL(location, current).href;
        method = 'GET';
        body = undefined;
        continue;
      }
      const page = { url: current, status: response.status, html: await response.text() };
      if (page.status === 200 && page.html.includes('document.forms[0].submit()')) {
        const form = findForm(page, () => true);
        current = new URL(form.action, page.url).href;
        method = 'POST';
        body = new URLSearchParams(form.fields).toString();
        continue;
      }
      return page;
    }
    throw new Error(`too many redirects starting at ${url}`);
  }

  /** Submits a form found on the page (by id, or the first one), with extra fields added. */
  submit(page: Page, formId: string | undefined, extra: Record<string, string> = {}): Promise<Page> {
    const form = findForm(page, (attrs) => formId === undefined || attrs.id === formId);
    return this.go(new URL(form.action, page.url).href, { method: 'POST', form: { ...form.fields, ...extra } });
  }
}

interface Form {
  attrs: Record<string, string>;
  action: string;
  fields: Record<string, string>;
}

function parseAttributes(tag: string): Record<string, string> {
  const attrs: Record<string, string> = {};
  for (const match of tag.matchAll(/([a-zA-Z_:.-]+)\s*=\s*"([^"]*)"/g)) {
    attrs[match[1]!.toLowerCase()] = decodeEntities(match[2]!);
  }
  return attrs;
}

function decodeEntities(text: string): string {
  return text
    .replace(/&#(\d+);/g, (_, code: string) => String.fromCharCode(Number(code)))
    .replace(/&#x([0-9a-f]+);/gi, (_, code: string) => String.fromCharCode(parseInt(code, 16)))
    .replace(/&quot;/g, '"')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

function forms(html: string): Form[] {
  return [...html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)].map((match) => {
    const attrs = parseAttributes(match[1]!);
    const fields: Record<string, string> = {};
    for (const input of match[2]!.matchAll(/<input\b([^>]*)>/gi)) {
      const inputAttrs = parseAttributes(input[1]!);
      if (inputAttrs.type === 'hidden' && inputAttrs.name !== undefined) fields[inputAttrs.name] = inputAttrs.value ?? '';
    }
    return { attrs, action: attrs.action ?? '', fields };
  });
}

function findForm(page: Page, predicate: (attrs: Record<string, string>, form: Form) => boolean): Form {
  const form = forms(page.html).find((candidate) => predicate(candidate.attrs, candidate));
  if (!form) throw new Error(`expected a form on ${page.url} (HTTP ${page.status}); ${describe(page)}`);
  return form;
}

/** The page's error message or heading, for failures a person can read. */
function describe(page: Page): string {
  const error = /id="sluice-error"[^>]*>([\s\S]*?)<\/p>/.exec(page.html)?.[1];
  if (error) return `the page says: ${decodeEntities(error.replace(/<[^>]+>/g, '').trim())}`;
  const heading = /<h1[^>]*>([\s\S]*?)<\/h1>/.exec(page.html)?.[1] ?? /<title>([\s\S]*?)<\/title>/.exec(page.html)?.[1];
  return heading ? `the page is "${decodeEntities(heading.replace(/<[^>]+>/g, '').trim())}"` : `body starts ${JSON.stringify(page.html.slice(0, 200))}`;
}

/** Opens the verification link and submits the user-code form that the provider auto-posts in a browser. */
async function openConfirmPage(browser: Browser, verificationUriComplete: string): Promise<Page> {
  const confirm = await browser.go(verificationUriComplete);
  if (!forms(confirm.html).some((form) => form.attrs.id === 'op.deviceConfirmForm')) {
    throw new Error(`expected the code confirmation page after ${verificationUriComplete}; ${describe(confirm)}`);
  }
  return confirm;
}

/**
 * Approves a device code the way a person would: confirms the code, picks `accountId` on the login page,
 * and follows through to the success page. Throws with what the page said if any step goes wrong.
 */
export async function approveDevice(options: DeviceApprovalOptions & { accountId: string }): Promise<void> {
  const browser = (options.browser as Browser | undefined) ?? new Browser();
  const confirm = await openConfirmPage(browser, options.verificationUriComplete);
  const login = await browser.submit(confirm, 'op.deviceConfirmForm');
  const userForm = forms(login.html).find((form) => form.fields.accountId === options.accountId);
  if (!userForm) {
    const offered = forms(login.html)
      .map((form) => form.fields.accountId)
      .filter(Boolean);
    throw new Error(
      offered.length
        ? `user ${options.accountId} is not offered on the login page (offered: ${offered.join(', ')})`
        : `expected the login page after confirming the code; ${describe(login)}`,
    );
  }
  const done = await browser.go(new URL(userForm.action, login.url).href, { method: 'POST', form: userForm.fields });
  if (done.status !== 200 || !done.html.includes('id="sluice-device-success"')) {
    throw new Error(`device approval did not reach the success page (HTTP ${done.status} at ${done.url}); ${describe(done)}`);
  }
}

/**
 * Denies a device code: the person presses cancel on the code confirmation page (`at: 'confirm'`, default)
 * or on the login page (`at: 'login'`). The CLI's poll then ends with `access_denied`.
 */
export async function denyDevice(options: DeviceApprovalOptions & { at?: 'confirm' | 'login' }): Promise<void> {
  const browser = (options.browser as Browser | undefined) ?? new Browser();
  const confirm = await openConfirmPage(browser, options.verificationUriComplete);
  if ((options.at ?? 'confirm') === 'confirm') {
    const aborted = await browser.submit(confirm, 'op.deviceConfirmForm', { abort: 'yes' });
    if (!aborted.html.includes('data-error="cancelled"')) {
      throw new Error(`expected the sign-in to be cancelled; ${describe(aborted)}`);
    }
    return;
  }
  const login = await browser.submit(confirm, 'op.deviceConfirmForm');
  const cancel = forms(login.html).find((form) => form.action.endsWith('/abort'));
  if (!cancel) throw new Error(`expected a cancel button on the login page; ${describe(login)}`);
  const done = await browser.go(new URL(cancel.action, login.url).href, { method: 'POST', form: cancel.fields });
  if (!done.html.includes('data-error="cancelled"')) {
    throw new Error(`expected the sign-in to be cancelled (HTTP ${done.status} at ${done.url}); ${describe(done)}`);
  }
}

export interface ClientCredentialsOptions {
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** Sent as the `resource` parameter. */
  audience: string;
  scope?: string;
}

/** Gets an access token with the client-credentials grant (client_secret_post) using plain fetch. */
export async function clientCredentialsToken(options: ClientCredentialsOptions): Promise<string> {
  const discovery = await fetch(new URL('/.well-known/openid-configuration', options.issuer));
  if (!discovery.ok) throw new Error(`discovery at ${options.issuer} answered HTTP ${discovery.status}`);
  const { token_endpoint: tokenEndpoint } = (await discovery.json()) as { token_endpoint: string };
  const form = new URLSearchParams({
    grant_type: 'client_credentials',
    client_id: options.clientId,
    client_secret: options.clientSecret,
    resource: options.audience,
    ...(options.scope ? { scope: options.scope } : {}),
  });
  const response = await fetch(tokenEndpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: form,
  });
  const body = (await response.json()) as { access_token?: string; error?: string; error_description?: string };
  if (!response.ok || !body.access_token) {
    throw new Error(`client_credentials failed: HTTP ${response.status} ${body.error ?? ''} ${body.error_description ?? ''}`.trim());
  }
  return body.access_token;
}
