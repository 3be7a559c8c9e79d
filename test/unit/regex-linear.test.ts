/**
 * Configured regular expressions — masking `regex` rules and CEL `matches()` in policies — run on RE2,
 * in time linear in the text. `a*a*a*a*b` took 23 s on 200 characters and
 * `\d+\s?\d+\s?\d+\s?\d+\s?(?:EUR|USD)` over 40 s on 300 digits on V8's backtracking engine, and both
 * passed `serve --check`; what RE2 cannot run (look-around, back-references) is refused at load.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileProfile } from '../../server/masking/compiled-profile.js';
import { MaskingCounter } from '../../server/masking/masking-summary.js';
import { maskingProfileSchema } from '../../server/masking/profile-schema.js';
import { TextChannel } from '../../server/masking/text-masker.js';
import { compileCel, createPolicyEnvironment, isCompileProblem, type PolicyActivation } from '../../server/policy/cel-expression.js';
import { runCliInProcess } from '../helpers/cli-in-process.js';
import { configProblems } from '../helpers/config-problems.js';
import { tempDir } from '../helpers/temp-dir.js';

const POLYNOMIAL = 'a*a*a*a*b';
const AMOUNT = '\\d+\\s?\\d+\\s?\\d+\\s?\\d+\\s?(?:EUR|USD)';

/** Generous: the backtracking engine needs seconds for a few hundred characters, RE2 milliseconds for these. */
const FAST_MS = 5_000;

const base = {
  identity: { issuer: 'https://idp.example', audience: 'urn:sluice:gateway', cli_client_id: 'cli' },
};

function regexMasker(pattern: string) {
  return compileProfile('t', maskingProfileSchema.parse({ regex: [{ name: 'rule', pattern, replace: '[X]', max_length: 4096 }] }), {});
}

function timed<T>(run: () => T): { value: T; ms: number } {
  const started = performance.now();
  const value = run();
  return { value, ms: performance.now() - started };
}

function activation(json: unknown): PolicyActivation {
  return {
    identity: { sub: 'alice', email: null, name: null, groups: [], roles: [], client_id: null, issuer: 'https://idp.example' },
    connection: { name: 'llm', type: 'http', labels: {} },
    request: { method: 'POST', path: '/v1/chat/completions', query: {}, headers: {}, json, size: 1 },
    session: { id: 'ses_1', reason: null },
    usage: {},
    now: new Date(),
  };
}

describe('masking regex rules run on RE2', () => {
  it.each([
    [POLYNOMIAL, 'a'.repeat(200_000), 'a'.repeat(10) + 'b'],
    [AMOUNT, '1'.repeat(300_000), '12 34 56 78 EUR'],
  ])('%s: a long text without a match is scanned fast, and a match is still masked', (pattern, text, hit) => {
    const profile = regexMasker(pattern);
    const miss = timed(() => profile.text.mask(text, new MaskingCounter()));
    expect(miss.value).toBe(text);
    expect(miss.ms).toBeLessThan(FAST_MS);
    expect(profile.text.mask(`x ${hit} y`, new MaskingCounter())).toBe('x [X] y');
    // A stream holds the text back in pieces and scans it again as it grows: still fast.
    const head = text.slice(0, 20_000);
    const streamed = timed(() => {
      const channel = new TextChannel(profile.text, new MaskingCounter());
      let out = '';
      for (let i = 0; i < head.length; i += 7) out += channel.push(head.slice(i, i + 7));
      return out + channel.end();
    });
    expect(streamed.value).toBe(head);
    expect(streamed.ms).toBeLessThan(FAST_MS);
  });

  it('accepts nested quantifiers, which RE2 runs in linear time', () => {
    for (const pattern of ['(a+)+$', '(a|a)*b', '(\\w+\\s?)*$', '(a{1,9}){1,9}c']) {
      expect(configProblems({ ...base, masking_profiles: { pii: { regex: [{ name: 'r', pattern }] } } }), pattern).toEqual([]);
      const { ms } = timed(() => regexMasker(pattern).text.mask(`${'a'.repeat(50_000)}!`, new MaskingCounter()));
      expect(ms, pattern).toBeLessThan(FAST_MS);
    }
  });

  it.each([
    ['(?<=id:)\\d+', /look-ahead and look-behind are not supported/],
    ['\\d+(?= EUR)', /look-ahead and look-behind are not supported/],
    ['(a)\\1', /back-references are not supported/],
    ['(?<n>a)\\k<n>', /back-references are not supported/],
    ['a{2,1}', /invalid repetition size/],
  ])('refuses %s at load, naming the rule', (pattern, reason) => {
    const found = configProblems({ ...base, masking_profiles: { pii: { regex: [{ name: 'account', pattern }] } } });
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(/^masking_profiles\.pii\.regex\[0\]\.pattern: of regex rule "account" cannot run on RE2: /);
    expect(found[0]).toMatch(reason);
  });
});

describe('CEL matches() runs on RE2', () => {
  it.each([
    [POLYNOMIAL, 'a'.repeat(100_000)],
    [AMOUNT, '1'.repeat(100_000)],
  ])('request.json.prompt.matches(%j) answers fast on a long prompt', (pattern, prompt) => {
    const compiled = compileCel(createPolicyEnvironment(), `request.json.prompt.matches(${JSON.stringify(pattern)})`);
    if (isCompileProblem(compiled)) throw new Error(compiled.message);
    const { value, ms } = timed(() => compiled.evaluate(activation({ prompt })));
    expect(value).toBe(false);
    expect(ms).toBeLessThan(FAST_MS);
    expect(compiled.evaluate(activation({ prompt: pattern === POLYNOMIAL ? 'aaab' : '1 2 3 4 USD' }))).toBe(true);
  });

  it('matches inside macros too', () => {
    const compiled = compileCel(createPolicyEnvironment(), `request.json.items.exists(x, x.matches(${JSON.stringify(POLYNOMIAL)}))`);
    if (isCompileProblem(compiled)) throw new Error(compiled.message);
    const { value, ms } = timed(() => compiled.evaluate(activation({ items: ['a'.repeat(100_000), 'c'] })));
    expect(value).toBe(false);
    expect(ms).toBeLessThan(FAST_MS);
    expect(compiled.evaluate(activation({ items: ['c', 'ab'] }))).toBe(true);
  });

  it('refuses at load a literal pattern RE2 cannot run, with its position', () => {
    const found = configProblems({ ...base, policies: [{ name: 'r', when: 'request.path.matches("(?<=/v1)/chat")', action: 'deny' }] });
    expect(found).toEqual([expect.stringMatching(/^policies\[0\]\.when: matches\(\): the pattern cannot run on RE2: .*look-behind.* at line 1, column 22$/)]);
  });

  it('fails the evaluation (the request is refused, never allowed) for a pattern from the request that RE2 cannot run', () => {
    const compiled = compileCel(createPolicyEnvironment(), 'request.path.matches(request.json.pattern)');
    if (isCompileProblem(compiled)) throw new Error(compiled.message);
    expect(() => compiled.evaluate(activation({ pattern: '(a)\\1' }))).toThrow(/cannot run on RE2/);
  });
});

describe('sluice serve --check', () => {
  it('refuses a regex rule and a matches() pattern RE2 cannot run, and accepts the ones that hung before (exit 2, then 0)', async () => {
    const dir = await tempDir('sluice-regex-');
    const write = async (name: string, regex: string, when: string) => {
      const file = join(dir, name);
      await writeFile(
        file,
        `identity: {issuer: "https://idp.example.com", audience: sluice, cli_client_id: sluice-cli}
masking_profiles:
  pii:
    regex: [{name: amount, pattern: ${JSON.stringify(regex)}}]
policies:
  - {name: by-path, when: ${JSON.stringify(when)}, action: deny}
`,
      );
      return file;
    };
    const refused = await runCliInProcess(['serve', '--config', await write('bad.yaml', '(?<=EUR )\\d+', 'request.path.matches("(a)\\\\1")'), '--check']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('masking_profiles.pii.regex[0].pattern: of regex rule "amount" cannot run on RE2');
    expect(refused.stderr).toContain('policies[0].when: matches(): the pattern cannot run on RE2');

    const accepted = await runCliInProcess(['serve', '--config', await write('good.yaml', AMOUNT, `request.path.matches(${JSON.stringify(POLYNOMIAL)})`), '--check']);
    // (It may warn that the example identity provider cannot be reached; nothing about the patterns.)
    expect(accepted.code, accepted.stderr).toBe(0);
    expect(accepted.stderr).not.toMatch(/RE2|regex|matches/);
  }, 60_000);
});
