import { isIPv6 } from 'node:net';
import { getCountries, getCountryCallingCode, Metadata, parsePhoneNumberFromString, type CountryCode } from 'libphonenumber-js/max';
import { ibanValid, ssnValid } from './checksums.js';
import { escapeRegExp, patternRule, type CheckBudget, type Needle, type TextRule } from './text-rule.js';

/** Names of the built-in detectors, as a profile's `detectors` lists them. */
export const DETECTOR_NAMES = ['email', 'phone', 'credit_card', 'ssn', 'iban', 'ip_address', 'secret'] as const;

/** A built-in detector's name. */
export type DetectorName = (typeof DETECTOR_NAMES)[number];

/**
 * Which detector names a span two of them find exactly alike: the strongest evidence first (a vendor
 * prefix, a checksum, a fixed shape), phone numbers last, whatever order a profile lists them in.
 */
const PRECEDENCE: readonly DetectorName[] = ['secret', 'credit_card', 'iban', 'ssn', 'ip_address', 'email', 'phone'];

/** `names` in the order their rules are tried on ties. */
export function byPrecedence(names: readonly DetectorName[]): DetectorName[] {
  return [...names].sort((a, b) => PRECEDENCE.indexOf(a) - PRECEDENCE.indexOf(b));
}

/** What detectors need from the profile. */
export interface DetectorOptions {
  /** Regions tried, in order, for numbers written without a country code (ISO 3166 alpha-2). */
  readonly phoneRegions: readonly string[];
}

/** The TextRules of one built-in detector (a detector may have several shapes, as `secret` does). */
export function detectorRules(name: DetectorName, options: DetectorOptions): TextRule[] {
  const common = { entity: name, rule: `detector:${name}`, label: name.toUpperCase() };
  switch (name) {
    case 'email':
      return [
        patternRule({
          ...common,
          // Local part ≤ 64, labels ≤ 63 (RFC 5321); the domain's dot-separated labels keep matching linear.
          pattern:
            /(?<![A-Za-z0-9._%+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,24}(?![A-Za-z0-9-]|\.[A-Za-z0-9])/g,
          maxLength: 64 + 1 + 8 * 64 + 24,
          chars: /[A-Za-z0-9._%+@-]/,
          starts: /[A-Za-z0-9]/,
          nextStart: emailStart,
          contains: { pattern: /@/g, before: 0 },
        }),
      ];
    case 'phone': {
      const phone = phoneLength(options.phoneRegions);
      return [
        patternRule({
          ...common,
          pattern: /(?<![\w+.-])(?:\+|\(\+?)?\d[\d ().-]{5,22}\d(?!\d)/g,
          maxLength: 26,
          chars: /[\d ().+-]/,
          starts: /[\d+(]/,
          validate: (m, checks) => phone(m[0], checks),
          contains: DIGIT,
        }),
      ];
    }
    case 'credit_card':
      return [
        patternRule({
          ...common,
          pattern: /(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d])/g,
          maxLength: 19 + 18,
          chars: /[\d -]/,
          starts: /\d/,
          validate: (m) => cardLength(m[0]),
          contains: DIGIT,
        }),
      ];
    case 'ssn':
      return [
        patternRule({
          ...common,
          pattern: /(?<![\d-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\d-])/g,
          maxLength: 11,
          chars: /[\d -]/,
          starts: /\d/,
          validate: (m) => ssnValid(m[1]!, m[3]!, m[4]!),
          contains: DIGIT,
        }),
      ];
    case 'iban':
      return [
        patternRule({
          ...common,
          pattern: /(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])/g,
          maxLength: 4 + 60,
          chars: /[A-Z0-9 ]/,
          starts: /[A-Z]/,
          validate: (m) => ibanValid(m[0]),
          contains: DIGIT,
        }),
      ];
    case 'ip_address':
      return [
        patternRule({
          ...common,
          pattern: /(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?!\d|\.\d)/g,
          maxLength: 15,
          chars: /[\d.]/,
          starts: /\d/,
          contains: DIGIT,
        }),
        patternRule({
          ...common,
          pattern: /(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:])/g,
          maxLength: 45,
          chars: /[0-9A-Fa-f:.]/,
          starts: /[0-9A-Fa-f:]/,
          nextStart: ipv6Start,
          contains: { pattern: /:/g, before: 0 },
          // The candidate shape also fits times (12:30:45); the address grammar decides.
          validate: (m) => isIPv6(m[0]),
        }),
      ];
    case 'secret':
      return secretRules(common);
  }
}

/** Whether a UTF-16 code unit is one an email's local part may contain (`[A-Za-z0-9._%+-]`). */
function isLocalChar(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x5f || c === 0x25 || c === 0x2b || c === 0x2d;
}

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46);
}

/**
 * Where an email can start: its local part is the whole run of local-part characters before an `@`
 * (the pattern's look-behind allows no other start), at most 64 long.
 */
function emailStart(text: string, at: number): number {
  for (let sign = text.indexOf('@', at + 1); sign !== -1; sign = text.indexOf('@', sign + 1)) {
    let start = sign;
    while (start > 0 && sign - start <= 64 && isLocalChar(text.charCodeAt(start - 1))) start--;
    if (start >= at && start < sign && sign - start <= 64) return start;
  }
  return -1;
}

/**
 * Where an IPv6 address can start: its first colon comes after at most four hex digits, and the
 * pattern's look-behind allows a start only where that run of hex digits begins.
 */
function ipv6Start(text: string, at: number): number {
  for (let colon = text.indexOf(':', at); colon !== -1; colon = text.indexOf(':', colon + 1)) {
    let start = colon;
    while (start > at && colon - start < 4 && isHex(text.charCodeAt(start - 1))) start--;
    if (start > 0 && isHex(text.charCodeAt(start - 1))) continue;
    return start;
  }
  return -1;
}

/** The name an AWS secret access key follows, up to where the key itself begins. */
const AWS_SECRET_NAME = /aws_?secret_?(?:access_?)?key["']?\s{0,3}[:=]\s{0,3}["']?/gi;
/** Longest text AWS_SECRET_NAME can match, with room to spare. */
const AWS_SECRET_NAME_MAX = 40;

/** Where an AWS secret access key can start: right after its name. */
function awsSecretStart(text: string, at: number): number {
  AWS_SECRET_NAME.lastIndex = Math.max(0, at - AWS_SECRET_NAME_MAX);
  for (let m = AWS_SECRET_NAME.exec(text); m !== null; m = AWS_SECRET_NAME.exec(text)) {
    const end = m.index + m[0].length;
    if (end >= at) return end;
  }
  return -1;
}

/** Luhn's doubled digit, by digit. */
const LUHN_DOUBLE = [0, 2, 4, 6, 8, 1, 3, 5, 7, 9];

/**
 * The length of the longest card number that `candidate` begins with, ending at its end or before a
 * separator; 0 when none. A greedy candidate can swallow a neighbouring number ("4111 … 1111 2"). One
 * pass: the Luhn sums of every prefix, for both parities, are kept as the digits go by.
 */
function cardLength(candidate: string): number {
  let evenDoubled = 0;
  let oddDoubled = 0;
  let digits = 0;
  let first = -1;
  let allSame = true;
  let best = 0;
  for (let i = 0; i <= candidate.length; i++) {
    const c = i < candidate.length ? candidate.charCodeAt(i) : -1;
    const digit = c >= 0x30 && c <= 0x39;
    if (!digit && i > 0 && isDigitCode(candidate.charCodeAt(i - 1))) {
      // A prefix of k digits doubles the digits at indices of k's parity (counted from its right end).
      const sum = digits % 2 === 0 ? evenDoubled : oddDoubled;
      // All-same digits (0000 0000 0000 0000) pass Luhn but are placeholders, not cards.
      if (digits >= 13 && digits <= 19 && sum % 10 === 0 && !allSame) best = i;
    }
    if (!digit) continue;
    const d = c - 0x30;
    if (digits % 2 === 0) {
      evenDoubled += LUHN_DOUBLE[d]!;
      oddDoubled += d;
    } else {
      evenDoubled += d;
      oddDoubled += LUHN_DOUBLE[d]!;
    }
    if (first === -1) first = d;
    else if (d !== first) allSame = false;
    digits++;
  }
  return best;
}

function isDigitCode(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/** Dates and date-times ("2024-01-15 10") are the commonest digit runs that a phone grammar accepts. */
const DATE_LIKE = /^(?:\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4})(?!\d)/;

/**
 * Digits a national number may carry besides its national significant number: a national prefix with
 * a carrier code (Colombia's "0444", China's five-digit carrier prefixes) or the country code written
 * without "+".
 */
const NATIONAL_EXTRA_DIGITS = 5;

/**
 * What a region admits before the library is asked: the digit counts a national number of it can have
 * (its national lengths and those of the regions sharing its country code, with room for prefixes), and
 * its international dialling prefix, after which a number of any country may follow. Never refutes a
 * number that the library would accept; lets through many it refutes.
 */
interface RegionFilter {
  readonly region: CountryCode;
  /** 1 at each digit count a national number may have. */
  readonly counts: Uint8Array;
  readonly idd: RegExp | null;
}

function regionFilter(region: string): RegionFilter {
  const counts = new Uint8Array(16);
  try {
    const code = getCountryCallingCode(region as CountryCode);
    for (const country of getCountries()) {
      if (getCountryCallingCode(country) !== code) continue;
      const metadata = new Metadata();
      metadata.selectNumberingPlan(country);
      for (const length of metadata.numberingPlan?.possibleLengths() ?? []) {
        for (let extra = 0; extra <= NATIONAL_EXTRA_DIGITS; extra++) if (length + extra < counts.length) counts[length + extra] = 1;
      }
    }
    const metadata = new Metadata();
    metadata.selectNumberingPlan(region as CountryCode);
    const prefix = metadata.numberingPlan?.IDDPrefix();
    return { region: region as CountryCode, counts, idd: prefix ? new RegExp(`^(?:${prefix})`) : null };
  } catch {
    // A region the library does not know: every candidate goes to the library, which refutes it.
    return { region: region as CountryCode, counts: counts.fill(1), idd: null };
  }
}

/** Most prefix ends a phone candidate (at most 26 characters) can have. */
const MAX_PHONE_ENDS = 16;

/**
 * The phone check: the length of the longest prefix of a candidate, ending at its end or before a
 * separator, that is a valid number (international with "+", or national in one of `regions`); 0 when
 * none. Cheap tests come first (digit count, national lengths, dates); the library's validation, which
 * costs 10–50 µs, draws on the exchange's budget, and verdicts are remembered by candidate and by digits.
 */
function phoneLength(regions: readonly string[]): (candidate: string, checks: CheckBudget) => number {
  const filters = regions.map(regionFilter);
  // Scratch space of one call: checks run one at a time, to completion.
  const ends = new Int32Array(MAX_PHONE_ENDS);
  const counts = new Int32Array(MAX_PHONE_ENDS);
  const iddSeen = new Int8Array(filters.length);
  return (candidate, checks) => {
    const candidateKey = `\u0000${candidate}`;
    const known = checks.recall(candidateKey);
    if (known !== undefined) return known;
    let prefixes = 0;
    let digitCount = 0;
    for (let i = 0; i <= candidate.length && prefixes < MAX_PHONE_ENDS; i++) {
      const c = i < candidate.length ? candidate.charCodeAt(i) : -1;
      if (c === -1 || isPhoneSeparator(c)) {
        if (i > 0 && !isPhoneSeparator(candidate.charCodeAt(i - 1))) {
          ends[prefixes] = i;
          counts[prefixes++] = digitCount;
        }
      } else if (isDigitCode(c)) {
        digitCount++;
      }
    }
    const international = candidate.startsWith('+') || candidate.startsWith('(+');
    let digits: string | undefined;
    let decided = true;
    let found = 0;
    iddSeen.fill(0);
    for (let k = prefixes - 1; k >= 0 && found === 0; k--) {
      const count = counts[k]!;
      if (count < 7 || count > 15) continue;
      const prefix = candidate.slice(0, ends[k]);
      if (DATE_LIKE.test(prefix)) continue;
      digits ??= candidate.replace(/\D/g, '');
      const significant = digits.slice(0, count);
      for (let r = international ? -1 : 0; r < (international ? 0 : filters.length) && found === 0; r++) {
        const filter = r === -1 ? null : filters[r]!;
        if (filter !== null && filter.counts[count] !== 1) {
          if (filter.idd === null) continue;
          if (iddSeen[r] === 0) iddSeen[r] = filter.idd.test(digits) ? 1 : -1;
          if (iddSeen[r] === -1) continue;
        }
        const key = `${filter?.region ?? '+'}${significant}`;
        let verdict = checks.recall(key);
        if (verdict === undefined) {
          if (!checks.spend()) {
            // Budget spent: the shape alone decides, and it decides to mask.
            decided = false;
            verdict = 1;
          } else {
            const parsed = parsePhoneNumberFromString(prefix, filter === null ? { extract: false } : { defaultCountry: filter.region, extract: false });
            verdict = parsed?.isValid() === true ? 1 : 0;
            checks.remember(key, verdict);
          }
        }
        if (verdict === 1) found = ends[k]!;
      }
    }
    if (decided) checks.remember(candidateKey, found);
    return found;
  };
}

function isPhoneSeparator(c: number): boolean {
  return c === 0x20 || c === 0x28 || c === 0x29 || c === 0x2e || c === 0x2d;
}

const PEM_HEADER = '-----BEGIN ';

/** Every match of the numeric detectors has a digit. */
const DIGIT: Needle = { pattern: /\d/g, before: 0 };

/** The needle of a rule whose every match begins with one of `prefixes`. */
function literal(...prefixes: string[]): { contains: Needle } {
  return { contains: { pattern: new RegExp(prefixes.map(escapeRegExp).join('|'), 'g'), before: 0 } };
}

/** Well-known credential shapes. Each is anchored on a vendor prefix so ordinary words never match. */
function secretRules(common: { entity: string; rule: string; label: string }): TextRule[] {
  const token = /[A-Za-z0-9_-]/;
  return [
    // OpenAI (sk-, sk-proj-), Anthropic (sk-ant-) and the many services that copied the sk- prefix.
    patternRule({ ...common, pattern: /(?<![\w-])sk-[A-Za-z0-9_-]{20,200}(?![\w-])/g, maxLength: 203, chars: token, ...literal('sk-') }),
    // Stripe live and test keys.
    patternRule({ ...common, pattern: /(?<![\w-])[rsp]k_(?:live|test)_[A-Za-z0-9]{16,200}(?![\w-])/g, maxLength: 208, chars: token, ...literal('rk_', 'sk_', 'pk_') }),
    // GitHub classic and fine-grained tokens.
    patternRule({ ...common, pattern: /(?<![\w-])(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})(?![\w-])/g, maxLength: 266, chars: token, ...literal('gh', 'github_pat_') }),
    // Slack tokens.
    patternRule({ ...common, pattern: /(?<![\w-])xox[abposr]-[A-Za-z0-9-]{10,200}(?![\w-])/g, maxLength: 205, chars: token, ...literal('xox') }),
    // Google API keys.
    patternRule({ ...common, pattern: /(?<![\w-])AIza[0-9A-Za-z_-]{35}(?![\w-])/g, maxLength: 39, chars: token, ...literal('AIza') }),
    // AWS access key ids.
    patternRule({ ...common, pattern: /(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}(?![A-Za-z0-9])/g, maxLength: 20, chars: /[A-Z0-9]/, ...literal('AKIA', 'ASIA', 'ABIA', 'ACCA') }),
    // AWS secret access keys: 40 base64 characters are too common alone, so only after their usual name.
    patternRule({
      ...common,
      pattern: /(?<=aws_?secret_?(?:access_?)?key["']?\s{0,3}[:=]\s{0,3}["']?)[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])/gi,
      maxLength: 40,
      chars: /[A-Za-z0-9/+]/,
      nextStart: awsSecretStart,
      contains: { pattern: /aws/gi, before: AWS_SECRET_NAME_MAX },
    }),
    // JWTs: a JSON header and payload (both start "eyJ") and a signature.
    patternRule({
      ...common,
      pattern: /(?<![\w-])eyJ[A-Za-z0-9_-]{5,4096}\.eyJ[A-Za-z0-9_-]{5,8192}\.[A-Za-z0-9_-]{0,1024}(?![\w-])/g,
      maxLength: 3 + 4096 + 4 + 8192 + 1 + 1024,
      chars: /[A-Za-z0-9_.-]/,
      ...literal('eyJ'),
    }),
    // PEM private keys: the whole block, or, if no END line follows within 16 KiB, everything after BEGIN
    // up to that bound, so an unterminated key is never sent.
    patternRule({
      ...common,
      pattern:
        /-----BEGIN (?:[A-Z0-9]{1,20} ){0,3}PRIVATE KEY-----(?:[\s\S]{0,16384}?-----END (?:[A-Z0-9]{1,20} ){0,3}PRIVATE KEY-----|[\s\S]{0,16384})/g,
      maxLength: 70 + 16384 + 70,
      partial: pemPartial(),
      ...literal(PEM_HEADER),
    }),
  ];
}

/**
 * Where an unfinished PEM private key could begin: a prefix of "-----BEGIN " at the very end, or a BEGIN
 * line (complete or not) not yet followed by its END line.
 */
function pemPartial(): RegExp {
  const prefixes: string[] = [];
  for (let n = 1; n < PEM_HEADER.length; n++) prefixes.push(PEM_HEADER.slice(0, n));
  const headerPrefix = prefixes.map((p) => p.replace(/-/g, '\\-')).join('|');
  return new RegExp(
    `(?:${headerPrefix})$|-----BEGIN (?:[A-Z0-9 ]{0,60}$|(?:[A-Z0-9]{1,20} ){0,3}PRIVATE(?: K?E?Y?-{0,5})?$|(?:[A-Z0-9]{1,20} ){0,3}PRIVATE KEY-----(?![\\s\\S]*-----END (?:[A-Z0-9]{1,20} ){0,3}PRIVATE KEY-----)[\\s\\S]*$)`,
    'g',
  );
}
