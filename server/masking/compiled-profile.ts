import { byPrecedence, detectorRules } from './detectors.js';
import { DEFAULT_MAX_LINE, type MaskingProfileConfig, type MaskingSettings } from './profile-schema.js';
import { linearRegExp } from './regex-safety.js';
import type { ReplacementOptions } from './replacement.js';
import { TextMasker, type MaskEntry } from './text-masker.js';
import { escapeRegExp, patternRule, type TextRule } from './text-rule.js';

/** A custom selector: a replacement for a JSON string value, or undefined to leave it to the other rules. */
export type MaskingSelector = (value: string, path: string) => string | undefined;

/** A loaded selector module. */
export interface SelectorEntry {
  readonly module: string;
  readonly select: MaskingSelector;
}

/** A configured JSON key or path with its profile's style. */
export interface JsonRuleEntry {
  readonly name: string;
  readonly replacement: ReplacementOptions;
}

/** One or more profiles compiled for use: every regex built once, selectors loaded. */
export interface CompiledProfile {
  readonly names: readonly string[];
  readonly entries: readonly MaskEntry[];
  readonly allow: ReadonlySet<string>;
  readonly text: TextMasker;
  /** Lower-cased key → rule. */
  readonly jsonKeys: ReadonlyMap<string, JsonRuleEntry>;
  readonly jsonPaths: readonly JsonRuleEntry[];
  readonly selectors: readonly SelectorEntry[];
  readonly unknownStream: 'mask' | 'block';
  readonly binary: 'block' | 'allow';
  readonly maxJsonBody: number;
  /** Token log-probabilities in answers: masked as the text they spell, or removed. */
  readonly logprobs: 'mask' | 'strip';
  /** Longest line of a masked stream (an SSE line, an NDJSON record). */
  readonly maxLine: number;
}

/** Compiles one validated profile; `selectors` are the profile's modules, already loaded. */
export function compileProfile(
  name: string,
  config: MaskingProfileConfig,
  settings: MaskingSettings,
  selectors: readonly SelectorEntry[] = [],
): CompiledProfile {
  const replacement: ReplacementOptions = { style: config.style, hashKey: settings.hash_key };
  const rules: TextRule[] = [];
  for (const d of byPrecedence(config.detectors)) rules.push(...detectorRules(d, { phoneRegions: config.phone_regions }));
  for (const r of config.regex) rules.push(userRegexRule(r));
  for (const k of config.json_keys) rules.push(jsonKeyTextRule(k));
  const entries = rules.map((rule) => ({ rule, replacement }));
  const allow = new Set(config.allow.map((a) => a.toLowerCase()));
  return {
    names: [name],
    entries,
    allow,
    text: new TextMasker(entries, allow),
    jsonKeys: new Map(config.json_keys.map((k) => [k.toLowerCase(), { name: k, replacement }])),
    jsonPaths: config.json_paths.map((p) => ({ name: p, replacement })),
    selectors,
    unknownStream: config.unknown_stream,
    binary: config.binary,
    maxJsonBody: config.max_json_body,
    logprobs: config.logprobs ?? settings.logprobs ?? 'mask',
    maxLine: settings.max_line ?? DEFAULT_MAX_LINE,
  };
}

/**
 * Several profiles on one connection act as one: every rule of each (a rule already brought by an
 * earlier profile keeps that profile's style), the stricter of each setting.
 */
export function mergeProfiles(profiles: readonly CompiledProfile[]): CompiledProfile {
  if (profiles.length === 1) return profiles[0]!;
  const entries: MaskEntry[] = [];
  const allow = new Set<string>();
  const jsonKeys = new Map<string, JsonRuleEntry>();
  const jsonPaths: JsonRuleEntry[] = [];
  const selectors: SelectorEntry[] = [];
  for (const p of profiles) {
    const earlier = new Set(entries.map((e) => e.rule.rule));
    for (const e of p.entries) if (!earlier.has(e.rule.rule)) entries.push(e);
    for (const a of p.allow) allow.add(a);
    for (const [k, v] of p.jsonKeys) if (!jsonKeys.has(k)) jsonKeys.set(k, v);
    for (const jp of p.jsonPaths) if (!jsonPaths.some((x) => x.name === jp.name)) jsonPaths.push(jp);
    for (const s of p.selectors) if (!selectors.some((x) => x.module === s.module)) selectors.push(s);
  }
  return {
    names: profiles.flatMap((p) => p.names),
    entries,
    allow,
    text: new TextMasker(entries, allow),
    jsonKeys,
    jsonPaths,
    selectors,
    unknownStream: profiles.some((p) => p.unknownStream === 'block') ? 'block' : 'mask',
    binary: profiles.every((p) => p.binary === 'allow') ? 'allow' : 'block',
    maxJsonBody: Math.min(...profiles.map((p) => p.maxJsonBody)),
    logprobs: profiles.some((p) => p.logprobs === 'strip') ? 'strip' : 'mask',
    maxLine: Math.min(...profiles.map((p) => p.maxLine)),
  };
}

/**
 * A configured regex rule, run on RE2 (linear time whatever the pattern; checked at load). A pattern
 * that cannot match white space is held back in a stream only while its trailing word is unfinished;
 * any other pattern holds back its whole `max_length`.
 */
function userRegexRule(r: MaskingProfileConfig['regex'][number]): TextRule {
  return patternRule({
    entity: r.name,
    rule: `regex:${r.name}`,
    label: labelOf(r.name),
    fixed: r.replace,
    pattern: linearRegExp(r.pattern, `${r.flags}g`),
    maxLength: r.max_length,
    chars: mayMatchWhitespace(r.pattern) ? undefined : /\S/,
  });
}

/** Conservative: true unless the source plainly has no way to match a white-space character. */
function mayMatchWhitespace(source: string): boolean {
  // Any raw white-space or control character; any escape of a letter or digit but the few that never
  // denote one (RE2 also has octal escapes, \C, \Q…\E and \p classes); `.`; a negated class; a POSIX
  // class ([[:space:]]).
  return /[\x00-\x20\s]|\\[C-RT-Zace-vxy0-9]|\.|\[\^|\[:/.test(source);
}

/**
 * A `json_keys` entry inside text: `"password": "…"` in a streamed tool call's arguments, a JSON
 * document quoted in a model's answer, or a JSON body too large or too broken to parse. Covers string
 * values up to 1024 characters; parsed JSON bodies are covered for every value type.
 */
function jsonKeyTextRule(key: string): TextRule {
  const k = escapeRegExp(key);
  const prefixes: string[] = [''];
  for (let n = 1; n <= key.length; n++) prefixes.push(escapeRegExp(key.slice(0, n)));
  return patternRule({
    entity: key,
    rule: `json_key:${key}`,
    label: labelOf(key),
    pattern: new RegExp(`"${k}"\\s{0,8}:\\s{0,8}"(?<v>(?:[^"\\\\]|\\\\.){1,1024})`, 'gid'),
    group: 'v',
    contains: { pattern: new RegExp(escapeRegExp(`"${key}"`), 'gi'), before: 0 },
    maxLength: key.length + 2 + 8 + 1 + 8 + 1 + 2048,
    partial: new RegExp(
      `"(?:${prefixes.join('|')})$|"${k}"\\s{0,8}(?::\\s{0,8}(?:"(?:[^"\\\\]|\\\\.){0,1023}\\\\?)?)?$`,
      'gi',
    ),
    partialStart: '"',
  });
}

/** `api_key` → `API_KEY`: the label of a replacement. */
export function labelOf(name: string): string {
  return name.toUpperCase().replace(/[^A-Z0-9]/g, '_');
}
