import type { Config } from '../config/schema.js';
import { validateConfig } from '../config/load.js';
import type { DemoUser, IdpClient } from './idp.js';

export const DEMO_AUDIENCE = 'urn:sluice:gateway';
export const DEMO_CLI_CLIENT = 'sluice-cli';
export const DEMO_UPSTREAM_KEY = 'demo-upstream-key';

/** The demo's people: one per role the gateway knows, plus a plain engineer. */
export const DEMO_USERS: DemoUser[] = [
  { id: 'alice', email: 'alice@example.com', name: 'Alice (ML engineer)', groups: ['ml-eng'] },
  { id: 'bob', email: 'bob@example.com', name: 'Bob (ML lead, reviewer)', groups: ['ml-eng', 'ml-leads'] },
  { id: 'carol', email: 'carol@example.com', name: 'Carol (security, auditor)', groups: ['security'] },
];

/** The demo's CI client (client-credentials grant). */
export function demoCiClient(secret: string): IdpClient {
  return { clientId: 'ci-bot', clientSecret: secret, groups: ['ml-eng', 'ci'] };
}

export interface DemoConfigOptions {
  issuer: string;
  listen: string;
  modelUrl: string;
  echoAddress: string;
  dataDir: string;
  /** Base64 master key of the demo's recordings. */
  masterKey: string;
  /** The checkpoint signing key, outside `dataDir`. */
  signingKeyFile: string;
}

/** The gateway config that joins the demo identity provider and the demo upstreams. */
export function demoConfig(options: DemoConfigOptions): Config {
  return validateConfig(demoConfigDocument(options));
}

/**
 * The demo's config as it would be written in sluice.yaml, the master key included: the demo writes it
 * (with the key as `${env:SLUICE_MASTER_KEY}`) so what it runs can be read and run by `sluice serve`.
 */
export function demoConfigDocument(options: DemoConfigOptions): Record<string, unknown> {
  return {
    listen: options.listen,
    identity: { issuer: options.issuer, audience: DEMO_AUDIENCE, cli_client_id: DEMO_CLI_CLIENT, groups_claim: 'groups' },
    roles: { admin: ['platform'], auditor: ['security'], reviewer: ['ml-leads'] },
    storage: { dir: options.dataDir, master_key: options.masterKey, signing_key: options.signingKeyFile },
    connections: [
      {
        name: 'llm',
        type: 'http',
        description: 'Demo OpenAI-compatible model (answers contain fake PII)',
        upstream: options.modelUrl,
        headers: { authorization: `Bearer ${DEMO_UPSTREAM_KEY}` },
        allow_groups: ['ml-eng', 'ml-leads', 'security'],
        masking: ['pii'],
      },
      {
        name: 'echo',
        type: 'tcp',
        description: 'A TCP echo service',
        upstream: `tcp://${options.echoAddress}`,
        allow_groups: ['ml-eng'],
      },
    ],
    masking_profiles: {
      pii: { detectors: ['email', 'phone', 'credit_card', 'ssn', 'iban', 'ip_address', 'secret'], json_keys: ['password', 'api_key'] },
    },
    policies: [
      {
        name: 'big-answers-denied',
        when: 'request.json != null && has(request.json.max_tokens) && request.json.max_tokens > 4096',
        action: 'deny',
        message: 'max_tokens above 4096 is not allowed on the demo model',
      },
      {
        name: 'frontier-models-need-review',
        when: 'request.json != null && has(request.json.model) && request.json.model.startsWith("gpt-5")',
        action: 'review',
        reviewers: ['ml-leads'],
        timeout: '10m',
        message: 'Frontier models need an ML lead to approve each call',
      },
    ],
  };
}
