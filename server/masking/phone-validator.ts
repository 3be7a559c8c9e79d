import { getCountries, getCountryCallingCode, Metadata, parsePhoneNumberFromString, type CountryCode } from 'libphonenumber-js/max';
import metadataJson from 'libphonenumber-js/max/metadata';
import type { CheckBudget } from './text-rule.js';

/** Dates and date-times ("2024-01-15 10") are the commonest digit runs that a phone grammar accepts. */
const DATE_LIKE = /^(?:\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4})(?!\d)/;

/**
 * Digits a national number may carry besides its national significant number: a national prefix with
 * a carrier code (Colombia's "0444", China's five-digit carrier prefixes) or the country code written
 * without "+".
 */
const NATIONAL_EXTRA_DIGITS = 5;

/** Most prefix ends a phone candidate (at most 26 characters) can have. */
const MAX_PHONE_ENDS = 16;

/** The number types whose patterns the library tries (its getNumberType), by their names in the metadata. */
const NUMBER_TYPES = ['FIXED_LINE', 'MOBILE', 'PREMIUM_RATE', 'TOLL_FREE', 'SHARED_COST', 'VOIP', 'PERSONAL_NUMBER', 'PAGER', 'UAN', 'VOICEMAIL'];

/** The parts of the library's numbering plan that validation reads (present at run time, not in its typings). */
interface PlanPatterns {
  nationalNumberPattern(): string;
  possibleLengths(): number[];
  hasTypes(): boolean;
  type(name: string): { pattern(): string; possibleLengths(): number[] | undefined } | undefined;
}

/** One country's validation patterns, compiled once: what the library compiles again on every call. */
interface CountryPatterns {
  readonly national: RegExp;
  /** Null when the plan has no types: the national pattern alone decides, as in the library. */
  readonly types: readonly { readonly pattern: RegExp; readonly lengths: Uint8Array | null }[] | null;
}

/** The countries sharing one calling code: one union of their national patterns refutes most digit strings in one test. */
interface CallingCodePatterns {
  readonly union: RegExp;
  readonly countries: readonly CountryPatterns[];
}

function whole(pattern: string): RegExp {
  return new RegExp(`^(?:${pattern})$`);
}

function lengthTable(lengths: readonly number[] | undefined): Uint8Array | null {
  if (lengths === undefined) return null;
  const table = new Uint8Array(32);
  for (const n of lengths) if (n < table.length) table[n] = 1;
  return table;
}

function countryPatterns(country: CountryCode): CountryPatterns {
  const metadata = new Metadata();
  metadata.selectNumberingPlan(country);
  const plan = metadata.numberingPlan as unknown as PlanPatterns;
  if (!plan.hasTypes()) return { national: whole(plan.nationalNumberPattern()), types: null };
  const types: { pattern: RegExp; lengths: Uint8Array | null }[] = [];
  for (const name of NUMBER_TYPES) {
    const type = plan.type(name);
    const pattern = type?.pattern();
    // An empty pattern stands for "same as fixed line" in the library's metadata: that one is tried already.
    if (type === undefined || !pattern) continue;
    types.push({ pattern: whole(pattern), lengths: lengthTable(type.possibleLengths()) });
  }
  return { national: whole(plan.nationalNumberPattern()), types };
}

/**
 * Whether `national` is a valid national significant number of some country in `patterns`, by the
 * library's metadata and the library's own test (its getNumberType): the national pattern, then a
 * number type whose lengths and pattern both fit.
 */
function validIn(patterns: CallingCodePatterns, national: string): boolean {
  if (!patterns.union.test(national)) return false;
  for (const country of patterns.countries) {
    if (!country.national.test(national)) continue;
    if (country.types === null) return true;
    for (const type of country.types) {
      if (type.lengths !== null && type.lengths[national.length] !== 1) continue;
      if (type.pattern.test(national)) return true;
    }
  }
  return false;
}

/**
 * The library's metadata, compiled on first use per calling code: a number that plainly fits it is
 * taken as valid without the library's parse, which costs 10–30 µs a call (it compiles each pattern
 * again every time). Only acceptance is decided here, in the direction that masks; anything that does
 * not fit as written (national prefixes, dialling prefixes, calling codes without countries) goes to
 * the library as before.
 */
class PhoneMetadata {
  readonly #compiled = new Map<string, CallingCodePatterns>();

  /** The calling code `digits` starts with (codes are prefix-free: at most one fits), or undefined. */
  callingCodeOf(digits: string): string | undefined {
    for (let n = 1; n <= 3 && n < digits.length; n++) {
      const code = digits.slice(0, n);
      // Non-geographic codes (+800, +882…) have no countries but are calling codes all the same.
      if (Object.hasOwn(metadataJson.country_calling_codes, code) || Object.hasOwn(metadataJson.nonGeographic, code)) return code;
    }
    return undefined;
  }

  /** Whether `national` fits a country of calling code `code` (never for a non-geographic code: the library decides those). */
  fits(code: string, national: string): boolean {
    let patterns = this.#compiled.get(code);
    if (patterns === undefined) {
      const countries = (Object.hasOwn(metadataJson.country_calling_codes, code) ? metadataJson.country_calling_codes[code]! : []).map((c) => countryPatterns(c as CountryCode));
      patterns = { union: whole(countries.map((c) => c.national.source.slice(1, -1)).join('|') || '(?!)'), countries };
      this.#compiled.set(code, patterns);
    }
    return validIn(patterns, national);
  }
}

/**
 * What a region admits before the library is asked: the digit counts a national number of it can have
 * (its national lengths and those of the regions sharing its country code, with room for prefixes), and
 * its international dialling prefix, after which a number of any country may follow. Never refutes a
 * number that the library would accept; lets through many it refutes.
 */
interface RegionFilter {
  readonly region: CountryCode;
  /** Its calling code; undefined for a region the library does not know. */
  readonly code: string | undefined;
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
    return { region: region as CountryCode, code, counts, idd: prefix ? new RegExp(`^(?:${prefix})`) : null };
  } catch {
    // A region the library does not know: every candidate goes to the library, which refutes it.
    return { region: region as CountryCode, code: undefined, counts: counts.fill(1), idd: null };
  }
}

/**
 * The phone check: the length of the longest prefix of a candidate, ending at its end or before a
 * separator, that is a valid number (international with "+", or national in one of `regions`); 0 when
 * none. Cheap tests come first (digit count, national lengths, dates, the calling code, the metadata's
 * patterns as written); the library's validation, which costs 10–50 µs, draws on the exchange's budget,
 * and verdicts are remembered by candidate and by digits.
 */
export function phoneLength(regions: readonly string[]): (candidate: string, checks: CheckBudget) => number {
  const filters = regions.map(regionFilter);
  const metadata = new PhoneMetadata();
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
    let digits: string | undefined;
    for (let i = 0; i <= candidate.length && prefixes < MAX_PHONE_ENDS; i++) {
      const c = i < candidate.length ? candidate.charCodeAt(i) : -1;
      if (c === -1 || isPhoneSeparator(c)) {
        if (i > 0 && !isPhoneSeparator(candidate.charCodeAt(i - 1))) {
          ends[prefixes] = i;
          counts[prefixes++] = digitCount;
        }
      } else if (c >= 0x30 && c <= 0x39) {
        digitCount++;
      }
    }
    const bracketed = candidate.startsWith('(+');
    const international = bracketed || candidate.startsWith('+');
    let decided = true;
    let found = 0;
    iddSeen.fill(0);
    for (let k = prefixes - 1; k >= 0 && found === 0; k--) {
      const count = counts[k]!;
      if (count < 7 || count > 15) continue;
      const prefix = candidate.slice(0, ends[k]);
      if (DATE_LIKE.test(prefix)) continue;
      digits ??= digitsOf(candidate);
      const significant = digits.slice(0, count);
      // After "+" the library reads a calling code first; digits that begin with none are no number.
      const code = international ? metadata.callingCodeOf(significant) : undefined;
      if (international && code === undefined) continue;
      for (let r = international ? -1 : 0; r < (international ? 0 : filters.length) && found === 0; r++) {
        const filter = r === -1 ? null : filters[r]!;
        if (filter !== null && filter.counts[count] !== 1) {
          if (filter.idd === null) continue;
          if (iddSeen[r] === 0) iddSeen[r] = filter.idd.test(digits) ? 1 : -1;
          if (iddSeen[r] === -1) continue;
        }
        // The library reads "(+1 …" otherwise than "+1 …" (it refutes the first): verdicts are kept apart.
        const key = `${filter?.region ?? (bracketed ? '(+' : '+')}${significant}`;
        let verdict = checks.recall(key);
        if (verdict === undefined) {
          if (filter === null ? metadata.fits(code!, significant.slice(code!.length)) : filter.code !== undefined && metadata.fits(filter.code, significant)) {
            verdict = 1;
            checks.remember(key, verdict);
          } else if (!checks.spend()) {
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

/** The digits of `text`, its runs of them joined (a pattern's replace costs more than a candidate's few runs). */
function digitsOf(text: string): string {
  let digits = '';
  let run = -1;
  for (let i = 0; i <= text.length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : -1;
    if (c >= 0x30 && c <= 0x39) {
      if (run === -1) run = i;
    } else if (run !== -1) {
      digits += text.slice(run, i);
      run = -1;
    }
  }
  return digits;
}

function isPhoneSeparator(c: number): boolean {
  return c === 0x20 || c === 0x28 || c === 0x29 || c === 0x2e || c === 0x2d;
}
