// The bench's identity provider: a real oidc-provider in the parent process (idle while measuring) and a
// client-credentials token for a robot in group ml-eng, as a CI job would get one.
import { randomBytes } from 'node:crypto';
import { startIdp } from '../dist/server/demo/idp.js';

/** The gateway audience every bench config uses. */
export const AUDIENCE = 'urn:sluice:gateway';

/**
 * Starts the provider and returns it with a bearer token the bench gateways accept; `extraClients`
 * (`{ clientId, groups }`, e.g. a reviewer robot) get a token each, in `tokens` by client id.
 */
export async function startBenchIdentity({ extraClients = [] } = {}) {
  const ci = { clientId: 'bench-bot', clientSecret: randomBytes(18).toString('base64url'), groups: ['ml-eng'] };
  const extra = extraClients.map((c) => ({ ...c, clientSecret: randomBytes(18).toString('base64url') }));
  const idp = await startIdp({
    audience: AUDIENCE,
    users: [{ id: 'bench', email: 'bench@example.com', name: 'Bench', groups: ['ml-eng'] }],
    cliClientId: 'sluice-cli',
    ciClients: [ci, ...extra],
  });
  try {
    const token = await clientCredentialsToken({ issuer: idp.issuer, clientId: ci.clientId, clientSecret: ci.clientSecret });
    const tokens = {};
    for (const c of extra) tokens[c.clientId] = await clientCredentialsToken({ issuer: idp.issuer, clientId: c.clientId, clientSecret: c.clientSecret });
    return { idp, token, tokens };
  } catch (err) {
    await idp.close();
    throw err;
  }
}

async function clientCredentialsToken({ issuer, clientId, clientSecret }) {
  const discovery = await fetch(new URL('/.well-known/openid-configuration', issuer), { signal: AbortSignal.timeout(10_000) });
  if (!discovery.ok) throw new Error(`discovery at ${issuer} answered HTTP ${discovery.status}`);
  const { token_endpoint: tokenEndpoint } = await discovery.json();
  const response = await fetch(tokenEndpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_id: clientId, client_secret: clientSecret, resource: AUDIENCE }),
    signal: AbortSignal.timeout(10_000),
  });
  const body = await response.json();
  if (!response.ok || !body.access_token) throw new Error(`client_credentials failed: HTTP ${response.status} ${body.error ?? ''} ${body.error_description ?? ''}`);
  return body.access_token;
}
