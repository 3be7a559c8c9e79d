import type { Config, Role } from '../config/schema.js';

/** Who is calling, as the gateway established it from a verified token. */
export interface Principal {
  sub: string;
  email?: string;
  name?: string;
  groups: string[];
  roles: Role[];
  clientId?: string;
  /** Seconds since the epoch. */
  expiresAt: number;
  issuer: string;
}

/** Roles granted by membership of any configured group. */
export function rolesFor(groups: readonly string[], roles: Config['roles']): Role[] {
  return (Object.keys(roles) as Role[]).filter((role) => roles[role].some((g) => groups.includes(g)));
}

export function hasRole(principal: Principal, ...wanted: Role[]): boolean {
  return wanted.some((r) => principal.roles.includes(r));
}

export function inAnyGroup(principal: Principal, groups: readonly string[]): boolean {
  return groups.some((g) => principal.groups.includes(g));
}

/** The principal as JSON for callers and policy rules: snake_case, absent claims as null. */
export function principalJson(p: Principal) {
  return {
    sub: p.sub,
    email: p.email ?? null,
    name: p.name ?? null,
    groups: p.groups,
    roles: p.roles,
    client_id: p.clientId ?? null,
    issuer: p.issuer,
  };
}
