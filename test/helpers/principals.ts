import type { Principal } from '../../server/identity/principal.js';

/** A signed-in person as the gateway sees them once their token is verified: `sub@example.com`, never expiring. */
export function person(sub: string, groups: string[], roles: Principal['roles'] = []): Principal {
  return { sub, email: `${sub}@example.com`, groups, roles, expiresAt: 0, issuer: 'https://idp' };
}
