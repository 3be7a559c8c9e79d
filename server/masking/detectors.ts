import { isIPv6 } from 'node:net';
import { parsePhoneNumberFromString, type CountryCode } from 'libphonenumber-js/max';
import { ibanValid, luhnValid, ssnValid } from './checksums.js';
import { escapeRegExp, patternRule, type Needle, type TextRule } from './text-rule.js';

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
    case 'phone':
      return [
        patternRule({
          ...common,
          pattern: /(?<![\w+.-])(?:\+|\(\+?)?\d[\d ().-]{5,22}\d(?!\d)/g,
          maxLength: 26,
          chars: /[\d ().+-]/,
          starts: /[\d+(]/,
          validate: (m) => longestPrefix(m[0], /[ ().-]/, (c) => phoneValid(c, options.phoneRegions)),
          contains: DIGIT,
        }),
      ];
    case 'credit_card':
      return [
        patternRule({
          ...common,
          pattern: /(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d])/g,
          maxLength: 19 + 18,
          chars: /[\d -]/,
          starts: /\d/,
          validate: (m) => longestPrefix(m[0], /[ -]/, cardValid),
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

/**
 * The length of the longest prefix of `candidate` ending before a separator (or at its end) that `valid`
 * accepts; 0 when none does. A greedy candidate can swallow a neighbouring number ("415-555-2671 2").
 */
function longestPrefix(candidate: string, separator: RegExp, valid: (c: string) => boolean): number {
  if (valid(candidate)) return candidate.length;
  for (let end = candidate.length - 1; end > 0; end--) {
    if (separator.test(candidate[end]!) && !separator.test(candidate[end - 1]!)) {
      const prefix = candidate.slice(0, end);
      if (valid(prefix)) return prefix.length;
    }
  }
  return 0;
}

function cardValid(candidate: string): boolean {
  const digits = candidate.replace(/[ -]/g, '');
  // All-same digits (0000 0000 0000 0000) pass Luhn but are placeholders, not cards.
  return digits.length >= 13 && digits.length <= 19 && luhnValid(digits) && !/^(\d)\1+$/.test(digits);
}

/** Dates and date-times ("2024-01-15 10") are the commonest digit runs that a phone grammar accepts. */
const DATE_LIKE = /^(?:\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4})(?!\d)/;

/** Whether a candidate is a valid number: international with "+", or national in one of the regions. */
function phoneValid(candidate: string, regions: readonly string[]): boolean {
  const digits = candidate.replace(/\D/g, '');
  if (digits.length < 7 || digits.length > 15 || DATE_LIKE.test(candidate)) return false;
  if (candidate.startsWith('+') || candidate.startsWith('(+')) {
    return parsePhoneNumberFromString(candidate, { extract: false })?.isValid() ?? false;
  }
  return regions.some((r) => parsePhoneNumberFromString(candidate, { defaultCountry: r as CountryCode, extract: false })?.isValid() ?? false);
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
