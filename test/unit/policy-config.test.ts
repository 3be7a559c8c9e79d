import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../server/config/load.js';
import { SluiceError } from '../../shared/errors.js';

const base = `
identity:
  issuer: https://idp.example.com
  audience: sluice
  cli_client_id: sluice-cli
connections:
  - name: llm
    type: http
    upstream: http://127.0.0.1:8000
    allow_groups: [ml-eng]
`;

function problemsOf(text: string): string[] {
  try {
    parseConfigText(text, { source: 'sluice.yaml' });
  } catch (err) {
    expect((err as SluiceError).code).toBe('ERR_CONFIG_INVALID');
    return ((err as SluiceError).details?.problems as string[]) ?? [];
  }
  throw new Error('expected the config to be rejected');
}

describe('policies in sluice.yaml', () => {
  it('accepts rules of every action and fills the defaults', () => {
    const cfg = parseConfigText(`${base}
policies:
  - name: no-big-completions
    when: request.json.max_tokens > 4096
    action: deny
    message: max_tokens is limited to 4096
  - name: frontier-models-need-review
    when: connection.name == "llm" && request.json.model.startsWith("gpt-5")
    action: review
    reviewers: [ml-leads]
    timeout: 10m
  - name: rest
    when: "true"
    action: allow
`);
    expect(cfg.policy_default).toBe('allow');
    expect(cfg.policies.map((p) => p.action)).toEqual(['deny', 'review', 'allow']);
    const review = cfg.policies[1]!;
    expect(review.action === 'review' && review.min_approvals).toBe(1);
    expect(cfg.approval).toEqual({ default_timeout: '10m', max_held_per_user: 5, max_held_total: 100, resend_window: '10m', webhooks: [] });
    expect(cfg.connections[0]!.requires_grant).toBe(false);
  });

  it('fails the config on a bad expression, naming the rule and the position', () => {
    const problems = problemsOf(`${base}
policies:
  - name: ok
    when: "true"
    action: allow
  - name: also-ok
    when: identity.sub == "x"
    action: allow
  - name: broken
    when: request.json.model.startsWith(
    action: deny
  - name: unknown-variable
    when: user.groups.exists(g, g == "x")
    action: deny
  - name: not-boolean
    when: request.size + 1
    action: deny
`);
    expect(problems).toEqual([
      'policies[2].when: Unexpected token: EOF at line 1, column 31',
      'policies[3].when: Unknown variable: user at line 1, column 1',
      'policies[4].when: must be a boolean expression, but it is of type int at line 1, column 1',
    ]);
  });

  it('reports a position on the right line of a multi-line expression', () => {
    const problems = problemsOf(`${base}
policies:
  - name: multi
    when: |
      identity.sub == "x" &&
        request.json.model == = "y"
    action: deny
`);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^policies\[0\]\.when: .* at line 2, column \d+$/);
  });

  it('checks each action\'s own fields, duplicate names and masking profiles', () => {
    const problems = problemsOf(`${base}
policies:
  - name: r
    when: "true"
    action: review
  - name: r
    when: "true"
    action: allow
    reviewers: [x]
  - name: m
    when: "true"
    action: allow
    mask: [no-such-profile]
  - name: bad
    when: "true"
    action: hold
policy_default: maybe
`);
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^policies\[0\]\.reviewers: /),
        expect.stringMatching(/^policies\[1\](\.reviewers)?: .*reviewers/),
        expect.stringMatching(/^policies\[3\]\.action: /),
        expect.stringMatching(/^policy_default: /),
      ]),
    );
  });

  it('refuses masking profiles that do not exist and grants nobody can approve', () => {
    const problems = problemsOf(`
identity:
  issuer: https://idp.example.com
  audience: sluice
  cli_client_id: sluice-cli
connections:
  - name: prod-db
    type: tcp
    upstream: tcp://127.0.0.1:5432
    allow_groups: [dba]
    requires_grant: true
policies:
  - name: m
    when: "true"
    action: allow
    mask: [no-such-profile]
`);
    expect(problems).toEqual([
      'policies[0].mask[0]: no masking profile is named "no-such-profile"',
      'connections[0].grant.reviewers: requires_grant needs reviewers: set grant.reviewers or roles.reviewer',
    ]);
  });

  it('validates webhooks', () => {
    const problems = problemsOf(`${base}
approval:
  webhooks:
    - url: ftp://hooks.example.com/x
      secret: short
      format: teams
`);
    expect(problems).toEqual(
      expect.arrayContaining([
        'approval.webhooks[0].url: must be an http:// or https:// URL',
        'approval.webhooks[0].secret: must be at least 16 characters',
        expect.stringMatching(/^approval\.webhooks\[0\]\.format: /),
      ]),
    );
  });
});
