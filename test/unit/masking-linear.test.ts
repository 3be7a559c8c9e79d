/**
 * Masking cost is linear in the text, with a small constant, in every detector and rule: for inputs
 * built to be costly (a candidate at nearly every character, long dotted runs around `@`, unfinished
 * tokens), 4n characters cost at most about 6× what n cost, and every character a few microseconds at
 * most. Before, "1 1 1 …" cost the phone detector 0.3 ms of CPU per character. Also: the asynchronous
 * forms mask exactly as the synchronous ones, and the budget of costly checks fails closed.
 */
import { describe, expect, it } from 'vitest';
import { compileProfile, type CompiledProfile } from '../../server/masking/compiled-profile.js';
import { maskJson, maskJsonAsync } from '../../server/masking/json-masker.js';
import { MaskingCounter } from '../../server/masking/masking-summary.js';
import { maskingProfileSchema } from '../../server/masking/profile-schema.js';
import { TextChannel } from '../../server/masking/text-masker.js';

/** A deterministic pseudo-random sequence. */
function lcg(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    return s / 0x7fffffff;
  };
}

/** `unit` repeated to `n` characters. */
function repeat(unit: string, n: number): string {
  return unit.repeat(Math.ceil(n / unit.length)).slice(0, n);
}

/** Random characters of `alphabet`, `n` of them. */
function random(alphabet: string, n: number, seed = 1): string {
  const next = lcg(seed);
  let s = '';
  for (let i = 0; i < n; i++) s += alphabet[Math.floor(next() * alphabet.length)];
  return s;
}

/** Random numbers of `digits` digits separated by `separator`, `n` characters. */
function groups(digits: number, separator: string, n: number): string {
  const next = lcg(digits);
  let s = '';
  while (s.length < n) s += String(Math.floor(next() * 10 ** digits)).padStart(digits, '1') + separator;
  return s.slice(0, n);
}

type Input = (n: number) => string;

/** Per rule, the inputs that cost it most. */
const ADVERSARIAL: Record<string, { profile: Record<string, unknown>; inputs: Record<string, Input> }> = {
  email: {
    profile: { detectors: ['email'] },
    inputs: {
      'a@a@a@': (n) => repeat('a@', n),
      'dotted runs around @': (n) => repeat(`${'a.'.repeat(30)}a@${'b.'.repeat(30)}`, n),
      'long local parts': (n) => repeat(`${'a'.repeat(60)}@`, n),
      'eight long labels, then a digit': (n) => repeat(`x@${`${'a'.repeat(60)}.`.repeat(8)}a1 `, n),
    },
  },
  phone: {
    profile: { detectors: ['phone'], phone_regions: ['US', 'GB', 'DE'] },
    inputs: {
      '1 1 1 1': (n) => repeat('1 ', n),
      'random digits and spaces': (n) => groups(1, ' ', n),
      'random two-digit groups': (n) => groups(2, ' ', n),
      'random 3-3-4 groups': (n) => groups(3, '-', n),
      '(1) (1)': (n) => repeat('(1) ', n),
      'digits, separators and +': (n) => random('0123456789 -.()+', n),
    },
  },
  credit_card: {
    profile: { detectors: ['credit_card'] },
    inputs: {
      '1 1 1 1': (n) => repeat('1 ', n),
      'random digits and separators': (n) => random('0123456789 -', n),
      'long digit run': (n) => repeat('1', n),
    },
  },
  ssn: {
    profile: { detectors: ['ssn'] },
    inputs: {
      '123-45-123-45': (n) => repeat('123-45-', n),
      'random digits and separators': (n) => random('0123456789 -', n, 3),
    },
  },
  iban: {
    profile: { detectors: ['iban'] },
    inputs: {
      'AA11 AA11': (n) => repeat('AA11 ', n),
      'letters and digits': (n) => random('AB0123456789 ', n, 4),
    },
  },
  ip_address: {
    profile: { detectors: ['ip_address'] },
    inputs: {
      'a:a:a:a': (n) => repeat('a:', n),
      '1:1:1:1:1:1:1:1': (n) => repeat('1:1:1:1:1:1:1:1 ', n),
      '1.1.1.1.1': (n) => repeat('1.', n),
      'hex, colons and dots': (n) => random('0123456789abcdef:.', n, 5),
    },
  },
  secret: {
    profile: { detectors: ['secret'] },
    inputs: {
      'sk- and a long token': (n) => repeat(`sk-${'a'.repeat(300)} `, n),
      '.eyJaaaaa': (n) => repeat('.eyJaaaaa', n),
      'JWT parts with an overlong signature': (n) => repeat(`.eyJaaaaa.eyJaaaaa.${'b'.repeat(1100)}`, n),
      'PEM headers without an end': (n) => repeat(`-----BEGIN PRIVATE KEY-----${'x'.repeat(100)}`, n),
      'AWS key names': (n) => repeat('aws_secret_key=', n),
    },
  },
  json_keys: {
    profile: { json_keys: ['password'] },
    inputs: {
      'keys without values': (n) => repeat('"password": "', n),
      'escaped quotes': (n) => repeat(`"password": "${'\\"'.repeat(600)}`, n),
    },
  },
  regex: {
    profile: { regex: [{ name: 'poly', pattern: 'a*a*a*a*b', max_length: 4096 }] },
    inputs: {
      'a a a': (n) => repeat('a', n),
    },
  },
};

/** CPU milliseconds of the fastest of three runs (other processes on the machine do not count). */
function cpuMs(run: () => void): number {
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    const started = process.cpuUsage();
    run();
    const used = process.cpuUsage(started);
    best = Math.min(best, (used.user + used.system) / 1000);
  }
  return best;
}

/** Generous bounds: the rules cost well under 1 µs per character on these inputs. */
const MAX_GROWTH = 6;
const MAX_US_PER_CHAR = 10;
/** Below this, timer resolution and JIT noise dominate a ratio. */
const NOISE_MS = 10;

function profileOf(config: Record<string, unknown>): CompiledProfile {
  return compileProfile('t', maskingProfileSchema.parse(config), {});
}

function expectLinear(label: string, n: number, cost: (n: number) => number): void {
  // Warm up at both sizes: the JIT, and the heap growing to the larger text, would otherwise be billed to one side.
  cost(n);
  cost(4 * n);
  const small = cost(n);
  const large = cost(4 * n);
  const shown = `${label}: ${n} chars ${small.toFixed(2)} ms, ${4 * n} chars ${large.toFixed(2)} ms of CPU`;
  expect(large, shown).toBeLessThanOrEqual(MAX_GROWTH * small + NOISE_MS);
  expect((large * 1000) / (4 * n), shown).toBeLessThan(MAX_US_PER_CHAR);
}

describe('masking cost is linear in every rule', () => {
  for (const [rule, { profile: config, inputs }] of Object.entries(ADVERSARIAL)) {
    const profile = profileOf(config);
    for (const [name, input] of Object.entries(inputs)) {
      it(`${rule}, ${name}: a whole text`, () => {
        expectLinear(`${rule} / ${name}`, 16_384, (n) => {
          const text = input(n);
          return cpuMs(() => profile.text.mask(text, new MaskingCounter()));
        });
      });
      it(`${rule}, ${name}: streamed four characters at a time`, () => {
        expectLinear(`${rule} / ${name} (stream)`, 8_192, (n) => {
          const text = input(n);
          return cpuMs(() => {
            const channel = new TextChannel(profile.text, new MaskingCounter());
            for (let i = 0; i < text.length; i += 4) channel.push(text.slice(i, i + 4));
            channel.end();
          });
        });
      });
    }
  }

  it('all rules together on a megabyte of the costliest inputs: a few hundred ms of CPU at most', () => {
    const all = profileOf({
      detectors: ['email', 'phone', 'credit_card', 'ssn', 'iban', 'ip_address', 'secret'],
      json_keys: ['password'],
      regex: [{ name: 'poly', pattern: 'a*a*a*a*b' }],
    });
    let text = '';
    const pieces = Object.values(ADVERSARIAL).flatMap(({ inputs }) => Object.values(inputs));
    for (let i = 0; text.length < 1024 * 1024; i++) text += pieces[i % pieces.length]!(4096);
    const ms = cpuMs(() => all.text.mask(text, new MaskingCounter()));
    expect((ms * 1000) / text.length, `${ms.toFixed(0)} ms of CPU for ${text.length} chars`).toBeLessThan(MAX_US_PER_CHAR);
  });
});

describe('asynchronous masking', () => {
  const profile = profileOf({
    detectors: ['email', 'phone', 'credit_card', 'ssn', 'iban', 'ip_address', 'secret'],
    json_keys: ['password'],
    regex: [{ name: 'account', pattern: 'ACME-[0-9]{6}', replace: '[ACCOUNT]' }],
  });
  const values = [
    'john.doe@example.com',
    '+1 415 555 2671',
    '(415) 555-2671',
    '4111 1111 1111 1111',
    '123-45-6789',
    'DE89 3704 0044 0532 0130 00',
    '192.168.1.20',
    '2001:db8::8a2e:370:7334',
    'sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv',
    'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U',
    'ACME-123456',
    '"password": "hunter2"',
    '-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n-----END RSA PRIVATE KEY-----',
  ];
  // Every value at many offsets, so some straddle every step boundary of the asynchronous masking.
  const next = lcg(11);
  let text = '';
  for (let i = 0; i < 600; i++) text += `${'word '.repeat(Math.floor(next() * 40))}${values[i % values.length]} 😀 `;

  it('masks a large text exactly as the synchronous form does, whatever the step boundaries cut', async () => {
    const expected = profile.text.mask(text, new MaskingCounter());
    for (const v of ['john.doe@example.com', '4111 1111 1111 1111', 'hunter2', 'ACME-123456']) expect(expected).not.toContain(v);
    const counter = new MaskingCounter();
    expect(await profile.text.maskAsync(text, counter)).toBe(expected);
    expect(counter.total).toBeGreaterThan(values.length * 40);
  });

  it('masks a JSON document exactly as the synchronous walk does', async () => {
    const doc = () => ({ big: text, list: values.map((v, i) => ({ i, v, password: v, nested: [v, { deep: `${v} ${v}` }] })), n: 1 });
    const expected = maskJson(doc(), profile, new MaskingCounter());
    const actual = await maskJsonAsync(doc(), profile, new MaskingCounter());
    expect(actual.changed).toBe(true);
    expect(JSON.stringify(actual.value)).toBe(JSON.stringify(expected.value));
  });
});

describe('the budget of costly checks', () => {
  it('masks a phone number however much junk before it spends the checks (fail closed)', () => {
    const phone = profileOf({ detectors: ['phone'] });
    const junk = groups(1, ' ', 200_000);
    const out = phone.text.mask(`${junk} call 415-555-2671 now`, new MaskingCounter());
    expect(out).not.toContain('415-555-2671');
    expect(out.endsWith(' now')).toBe(true);
  });

  it('leaves text without phone-shaped candidates alone', () => {
    const phone = profileOf({ detectors: ['phone'] });
    const text = `${'The quarterly report covers revenue. '.repeat(2000)}Call 415-555-2671.`;
    expect(phone.text.mask(text, new MaskingCounter())).toBe(`${'The quarterly report covers revenue. '.repeat(2000)}Call [PHONE].`);
  });
});
