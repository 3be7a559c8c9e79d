import { describe, expect, it } from 'vitest';
import { ibanValid, luhnValid, ssnValid } from '../../server/masking/checksums.js';
import { compileProfile } from '../../server/masking/compiled-profile.js';
import type { DetectorName } from '../../server/masking/detectors.js';
import { MaskingCounter } from '../../server/masking/masking-summary.js';
import { maskingProfileSchema } from '../../server/masking/profile-schema.js';

function masker(detector: DetectorName, extra: Record<string, unknown> = {}) {
  const p = compileProfile('t', maskingProfileSchema.parse({ detectors: [detector], ...extra }), { hash_key: 'k'.repeat(32) });
  return (text: string) => {
    const counter = new MaskingCounter();
    return { out: p.text.mask(text, counter), count: counter.total };
  };
}

/** Each detector: values it must mask, and near misses it must leave byte for byte. */
const CASES: Record<DetectorName, { hits: string[]; misses: string[] }> = {
  email: {
    hits: ['john.doe@example.com', 'a.b+tag@mail.example.co.uk', 'X_Y@sub-domain.example.org'],
    misses: ['john.doe@', '@example.com', 'john@localhost', 'user@example.c', 'a..b'],
  },
  phone: {
    hits: ['+1 415 555 2671', '(415) 555-2671', '415-555-2671', '+44 20 7946 0958', '+49 30 901820'],
    misses: ['2024-01-15 10', '123-456-7890', '12345', '1.5.2024', '555-0100'],
  },
  credit_card: {
    hits: ['4111 1111 1111 1111', '4111111111111111', '5500-0000-0000-0004', '378282246310005', '6011111111111117'],
    // A 16-digit number failing Luhn, all zeros (passes Luhn, a placeholder), a 20-digit number.
    misses: ['4111 1111 1111 1112', '4111111111111112', '0000 0000 0000 0000', '41111111111111111111'],
  },
  ssn: {
    hits: ['123-45-6789', '078 05 1121'],
    // Areas 000, 666 and 9xx, group 00 and serial 0000 are never issued; mixed separators are not an SSN.
    misses: ['000-12-3456', '666-12-3456', '912-34-5678', '123-00-4567', '123-45-0000', '123-45 6789', '1234-56-7890'],
  },
  iban: {
    hits: ['DE89 3704 0044 0532 0130 00', 'GB82WEST12345698765432', 'FR1420041010050500013M02606'],
    misses: ['DE89 3704 0044 0532 0130 01', 'GB82WEST12345698765433', 'XX00 1234'],
  },
  ip_address: {
    hits: ['192.168.1.20', '10.0.0.1', '2001:db8::8a2e:370:7334', '::1', 'fe80::1ff:fe23:4567:890a'],
    misses: ['256.1.1.1', '1.2.3', '12:30:45', 'dead:beef', '1.2.3.4.5'],
  },
  secret: {
    hits: [
      'sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv',
      'sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345',
      'AKIAIOSFODNN7EXAMPLE',
      'ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789',
      'xoxb-1234567890-abcdefghij',
      'sk_live_4eC39HqLyjWDarjtT1zdp7dc',
      'AIzaSyA1234567890abcdefghijklmnopqrstuv',
      'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U',
      '-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEA\n-----END PRIVATE KEY-----',
    ],
    misses: ['sk-short', 'task-force-alpha-bravo-charlie', 'AKIA1234', 'eyJhbGciOiJIUzI1NiJ9', '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----'],
  },
};

describe('detectors', () => {
  for (const [name, { hits, misses }] of Object.entries(CASES) as [DetectorName, (typeof CASES)[DetectorName]][]) {
    const mask = masker(name);
    it.each(hits)(`${name} masks %j inside a sentence, and nothing around it`, (value) => {
      const { out, count } = mask(`Here: ${value}; thanks.`);
      expect(out).toBe(`Here: [${name.toUpperCase()}]; thanks.`);
      expect(count).toBe(1);
    });
    it.each(misses)(`${name} leaves the near miss %j unchanged`, (value) => {
      const text = `Here: ${value}; thanks.`;
      expect(mask(text)).toEqual({ out: text, count: 0 });
    });
  }

  it('masks a card a greedy candidate would swallow together with its neighbour', () => {
    expect(masker('credit_card')('pay 4111 1111 1111 1111 2 times').out).toBe('pay [CREDIT_CARD] 2 times');
  });

  it('reads national numbers in the configured regions', () => {
    const text = 'call 020 7946 0958 now';
    expect(masker('phone')(text).out).toBe(text);
    expect(masker('phone', { phone_regions: ['US', 'GB'] })(text).out).toBe('call [PHONE] now');
  });

  it('finds AWS secret keys only after their usual name', () => {
    const key = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
    expect(masker('secret')(`aws_secret_access_key = ${key}`).out).toBe('aws_secret_access_key = [SECRET]');
    expect(masker('secret')(`checksum ${key}`).out).toBe(`checksum ${key}`);
  });

  it('finds emails by their @ whatever surrounds it', () => {
    const mask = masker('email');
    expect(mask(`${'x'.repeat(64)}@example.com`).out).toBe('[EMAIL]');
    expect(mask(`${'x'.repeat(65)}@example.com`).count).toBe(0);
    expect(mask('a@b.co,c@d.io and @bob@example.com').out).toBe('[EMAIL],[EMAIL] and @[EMAIL]');
    expect(mask('bob@@example.com, .bob@example.com').out).toBe('bob@@example.com, .bob@example.com');
  });

  it('finds IPv6 addresses by their first colon, and no address inside a longer word', () => {
    const mask = masker('ip_address');
    expect(mask('(::1) and x fe80::1 y').out).toBe('([IP_ADDRESS]) and x [IP_ADDRESS] y');
    expect(mask('abcde::1 and deadbeef:1:2').count).toBe(0);
  });

  it('finds AWS secret keys after any spelling of their name, the last of two names included', () => {
    const key = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
    expect(masker('secret')(`AWS_SECRET_ACCESS_KEY="${key}"`).out).toBe('AWS_SECRET_ACCESS_KEY="[SECRET]"');
    expect(masker('secret')(`aws_secret_key=aws_secret_key: ${key}`).out).toBe('aws_secret_key=aws_secret_key: [SECRET]');
  });

  it('masks every span any rule finds, overlapping spans as one', () => {
    const mask = (detectors: string[], text: string, regex: unknown[] = []) =>
      compileProfile('t', maskingProfileSchema.parse({ detectors, regex }), {}).text.mask(text, new MaskingCounter());
    const cases: [string[], string, string[], unknown[]?][] = [
      [['ip_address', 'phone'], '::1 415-555-2671:2001:db8::1', ['2671', '2001', 'db8']],
      [['ip_address', 'phone', 'email'], '::1 415 555 2671@example.com', ['2671', 'example.com']],
      [['ip_address', 'phone'], '::1 (415) 555-2671', ['555-2671']],
      [['credit_card', 'email'], '6 f4111 1111 1111 1111078-05-1120415-555-26713Zfoo+bar@mail.co.uk', ['1111 1111', 'foo+bar', 'mail.co'], [{ name: 'r1', pattern: '[a-f]\\d' }]],
    ];
    for (const [detectors, text, fragments, regex] of cases) {
      const out = mask(detectors, text, regex);
      for (const f of fragments) expect(out, `${text} → ${out}`).not.toContain(f);
    }
    // A span inside another is masked with it: the card's digits are never also read as a phone number.
    expect(mask(['phone', 'credit_card'], 'card 4111 1111 1111 1111 ok')).toBe('card [CREDIT_CARD] ok');
  });

  it('names a span two detectors find alike after the stronger evidence, whatever the listed order', () => {
    const p = compileProfile('t', maskingProfileSchema.parse({ detectors: ['phone', 'ssn', 'ip_address'] }), {});
    const counter = new MaskingCounter();
    expect(p.entries.map((e) => e.rule.rule)).toEqual(['detector:ssn', 'detector:ip_address', 'detector:ip_address', 'detector:phone']);
    expect(p.text.mask('ssn 123-45-6789', counter)).toBe('ssn [SSN]');
  });

  it('masks an unterminated PEM private key from its header on', () => {
    expect(masker('secret')('key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34Gkx').out).toBe('key:\n[SECRET]');
  });

  it('writes the partial and hash styles', () => {
    expect(masker('credit_card', { style: 'partial' })('card 4111 1111 1111 1111.').out).toBe('card ****1111.');
    const hash = masker('email', { style: 'hash' });
    const a = hash('a john@example.com b').out;
    expect(a).toMatch(/^a <EMAIL:[0-9a-f]{6}> b$/);
    expect(hash('x john@example.com').out.slice(2)).toBe(a.slice(2, -2));
    expect(hash('x jane@example.com').out.slice(2)).not.toBe(a.slice(2, -2));
  });

  it('never masks allowed values', () => {
    const { out, count } = masker('email', { allow: ['Support@Example.com'] })('write support@example.com or bob@example.com');
    expect(out).toBe('write support@example.com or [EMAIL]');
    expect(count).toBe(1);
  });

  it('checks Luhn, mod-97 and SSN areas', () => {
    expect(luhnValid('79927398713')).toBe(true);
    expect(luhnValid('79927398710')).toBe(false);
    expect(ibanValid('GB82 WEST 1234 5698 7654 32')).toBe(true);
    expect(ibanValid('GB82 WEST 1234 5698 7654 31')).toBe(false);
    expect(ssnValid('078', '05', '1120')).toBe(true);
    expect(ssnValid('900', '05', '1120')).toBe(false);
  });
});
