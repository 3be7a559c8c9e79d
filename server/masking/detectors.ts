import { isIPv6 } from 'node:net';
import { ibanValid, ssnValid } from './checksums.js';
import { phoneLength } from './phone-validator.js';
import { escapeRegExp, patternRule, type Needle, type TextRule } from './text-rule.js';
import { caselessFinder, literalFinder, type TextScan } from './text-scan.js';

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
          ends: /[A-Za-z]/,
          nextStart: emailStart,
          contains: { pattern: /@/g, before: 0, literals: [literalFinder('@')] },
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
          ends: /\d/,
          validate: (value, checks) => phone(value, checks),
          nextStart: phoneStart,
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
          ends: /\d/,
          validate: (value) => cardLength(value),
          nextStart: cardStart,
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
          ends: /\d/,
          // `\d{3}[- ]\d{2}[- ]\d{4}`: the groups stand at fixed places.
          validate: (value) => ssnValid(value.slice(0, 3), value.slice(4, 6), value.slice(7, 11)),
          nextStart: ssnStart,
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
          ends: /[A-Z0-9]/,
          validate: (value) => ibanValid(value),
          nextStart: ibanStart,
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
          ends: /\d/,
          nextStart: ipv4Start,
          contains: DIGIT,
        }),
        patternRule({
          ...common,
          pattern: /(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:])/g,
          maxLength: 45,
          chars: /[0-9A-Fa-f:.]/,
          starts: /[0-9A-Fa-f:]/,
          nextStart: ipv6Start,
          contains: { pattern: /:/g, before: 0, literals: [literalFinder(':')] },
          // The candidate shape also fits times (12:30:45); the address grammar decides.
          validate: (value) => isIPv6(value),
        }),
      ];
    case 'secret':
      return secretRules(common);
  }
}

/*
 * Where the numeric detectors can start. Their look-behinds allow no digit before their first one, so
 * a match begins at the start of a run of digits (or a character or two before it), and what must
 * follow that start is checked on the characters before the pattern is tried: prose is full of short
 * numbers ("in 2024", "3 items") that none of them can match. Each check is implied by its pattern.
 */

/**
 * A phone number: at a run of digits, or at the "+", "(" or "(+" right before it, where no word
 * character, "+", "." or "-" comes before; from its first digit on, at least seven characters a number
 * is written with (`\d[\d ().-]{5,22}\d`), which the years and counts of prose never have.
 */
function phoneStart(text: string, at: number, scan: TextScan): number {
  const starts = scan.runStarts;
  const ends = scan.runEnds;
  for (let i = scan.runAt(at); i !== -1 && i < starts.length; i++) {
    const run = starts[i]!;
    if (!phoneSpan(text, run, ends[i]!)) continue;
    const before = text.charCodeAt(run - 1);
    if (run - 2 >= at && before === 0x2b && text.charCodeAt(run - 2) === 0x28 && !inPhoneWord(text.charCodeAt(run - 3))) return run - 2;
    if (run - 1 >= at && (before === 0x2b || before === 0x28) && !inPhoneWord(text.charCodeAt(run - 2))) return run - 1;
    if (!inPhoneWord(before)) return run;
  }
  return -1;
}

/** Whether the characters of a number (`[\d ().-]`) go on for seven or more from `run`, whose digits end at `end`. */
function phoneSpan(text: string, run: number, end: number): boolean {
  if (end - run >= PHONE_MIN_SPAN) return true;
  for (let i = end; i < run + PHONE_MIN_SPAN; i++) if (!isPhoneChar(text.charCodeAt(i))) return false;
  return true;
}

/** Fewest characters of a phone number from its first digit: `\d[\d ().-]{5,22}\d`. */
const PHONE_MIN_SPAN = 7;

function isPhoneChar(c: number): boolean {
  return isDigitCode(c) || c === 0x20 || c === 0x28 || c === 0x29 || c === 0x2e || c === 0x2d;
}

/** What the phone pattern's look-behind refuses before a number: a word character, "+", "." or "-". */
function inPhoneWord(c: number): boolean {
  return isWordCode(c) || c === 0x2b || c === 0x2e || c === 0x2d;
}

/**
 * A card: not after a hyphen, thirteen digits or more in runs joined by one space or hyphen each
 * (`\d(?:[ -]?\d){12,18}`): the groups of a phone number or an IBAN fall short.
 */
function cardStart(text: string, at: number, scan: TextScan): number {
  const starts = scan.runStarts;
  const ends = scan.runEnds;
  for (let i = scan.runAt(at); i !== -1 && i < starts.length; i++) {
    const run = starts[i]!;
    if (text.charCodeAt(run - 1) === 0x2d) continue;
    let digits = ends[i]! - run;
    for (let j = i; digits < CARD_MIN_DIGITS && joinedRun(text, starts, ends, j); j++) digits += ends[j + 1]! - starts[j + 1]!;
    if (digits >= CARD_MIN_DIGITS) return run;
  }
  return -1;
}

const CARD_MIN_DIGITS = 13;

/** Whether run `i` goes on in run `i + 1` after one space or hyphen (the separators of a card or an SSN). */
function joinedRun(text: string, starts: readonly number[], ends: readonly number[], i: number): boolean {
  const end = ends[i]!;
  const sep = text.charCodeAt(end);
  return (sep === 0x20 || sep === 0x2d) && i + 1 < starts.length && starts[i + 1] === end + 1;
}

/**
 * An SSN: not after a hyphen, runs of exactly three, two and four digits joined by the same hyphen or
 * space (`(\d{3})([- ])(\d{2})\2(\d{4})`), no hyphen after.
 */
function ssnStart(text: string, at: number, scan: TextScan): number {
  const starts = scan.runStarts;
  const ends = scan.runEnds;
  for (let i = scan.runAt(at); i !== -1 && i + 2 < starts.length; i++) {
    const run = starts[i]!;
    const end = ends[i]!;
    if (end - run !== 3 || text.charCodeAt(run - 1) === 0x2d || !joinedRun(text, starts, ends, i) || !joinedRun(text, starts, ends, i + 1)) continue;
    const sep = text.charCodeAt(end);
    if (ends[i + 1]! - starts[i + 1]! !== 2 || text.charCodeAt(ends[i + 1]!) !== sep) continue;
    if (ends[i + 2]! - starts[i + 2]! !== 4 || text.charCodeAt(ends[i + 2]!) === 0x2d) continue;
    return run;
  }
  return -1;
}

/**
 * An IPv4 address: not after a dot, four runs of one to three digits joined by dots (each octet is a
 * whole run: a dot follows the first three, no digit the last).
 */
function ipv4Start(text: string, at: number, scan: TextScan): number {
  const starts = scan.runStarts;
  const ends = scan.runEnds;
  for (let i = scan.runAt(at); i !== -1 && i + 3 < starts.length; i++) {
    const run = starts[i]!;
    if (text.charCodeAt(run - 1) === 0x2e) continue;
    let octets = 0;
    for (let j = i; octets < 4 && ends[j]! - starts[j]! <= 3; j++) {
      octets++;
      if (octets < 4 && !(text.charCodeAt(ends[j]!) === 0x2e && j + 1 < starts.length && starts[j + 1] === ends[j]! + 1)) break;
    }
    if (octets === 4) return run;
  }
  return -1;
}

/** An IBAN: two capital letters, after no letter or digit, right before a run of at least two digits (the check digits). */
function ibanStart(text: string, at: number, scan: TextScan): number {
  const starts = scan.runStarts;
  const ends = scan.runEnds;
  for (let i = scan.runAt(at + 2); i !== -1 && i < starts.length; i++) {
    const run = starts[i]!;
    if (ends[i]! - run >= 2 && isCapital(text.charCodeAt(run - 2)) && isCapital(text.charCodeAt(run - 1)) && !isAlnum(text.charCodeAt(run - 3))) return run - 2;
  }
  return -1;
}

function isCapital(c: number): boolean {
  return c >= 0x41 && c <= 0x5a;
}

function isAlnum(c: number): boolean {
  return isDigitCode(c) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

/** `\w` of a regular expression without the u flag: ASCII letters, digits and "_". */
function isWordCode(c: number): boolean {
  return isAlnum(c) || c === 0x5f;
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

/**
 * How far before the key the "key" ending its name can start: `key["']?\s{0,3}[:=]\s{0,3}["']?`. That
 * word, not "aws", is the rule's needle: its "k" is rarer in prose than the "w" of "aws".
 */
const AWS_KEY_BEFORE = 3 + 1 + 3 + 1 + 3 + 1;

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

const PEM_HEADER = '-----BEGIN ';

/** Every match of the numeric detectors has a digit, at the start of a run of digits inside the match. */
const DIGIT: Needle = { pattern: /\d/g, before: 0, digitRun: true };

/** The needle and the starts of a rule whose every match begins with one of `prefixes`. */
function literal(...prefixes: string[]): { contains: Needle; nextStart: (text: string, at: number, scan: TextScan) => number } {
  const finders = prefixes.map(literalFinder);
  return {
    contains: { pattern: new RegExp(prefixes.map(escapeRegExp).join('|'), 'g'), before: 0, literals: finders },
    nextStart: (_text, at, scan) => {
      let first = -1;
      for (const p of finders) {
        const found = scan.literalAt(p, at);
        if (found !== -1 && (first === -1 || found < first)) first = found;
      }
      return first;
    },
  };
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
    patternRule({ ...common, pattern: /(?<![\w-])(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})(?![\w-])/g, maxLength: 266, chars: token, ...literal('ghp_', 'gho_', 'ghu_', 'ghs_', 'ghr_', 'github_pat_') }),
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
      // Spelled out in either case so the search stays case-sensitive, as the other needles it joins;
      // found by its rarest letter in both cases.
      contains: { pattern: /[kK][eE][yY]/g, before: AWS_KEY_BEFORE, literals: [caselessFinder('key')] },
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
      partialStart: '-',
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
