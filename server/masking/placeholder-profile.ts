import type { CompiledProfile, JsonRuleEntry } from './compiled-profile.js';
import type { PlaceholderMap } from './placeholder-map.js';
import type { ReplacementOptions } from './replacement.js';
import { TextMasker, type MaskEntry } from './text-masker.js';

/**
 * A shared profile bound to one exchange's placeholders: every rule whose style is `placeholder` (every
 * rule, with `all`, when the request masking setting asks for placeholders) writes `<LABEL_N>` from `map`.
 * The rules themselves are the profile's, compiled once; only the writers are the exchange's.
 */
export function withPlaceholders(profile: CompiledProfile, map: PlaceholderMap, all: boolean): CompiledProfile {
  const write = (value: string, label: string): string => map.tokenFor(value, label);
  const bind = (replacement: ReplacementOptions): ReplacementOptions =>
    all || replacement.style === 'placeholder' ? { ...replacement, style: 'placeholder', write } : replacement;
  const entries: MaskEntry[] = profile.entries.map((e) => ({ rule: e.rule, replacement: bind(e.replacement) }));
  const rebind = (e: JsonRuleEntry): JsonRuleEntry => ({ name: e.name, replacement: bind(e.replacement) });
  return {
    ...profile,
    entries,
    text: new TextMasker(entries, profile.allow),
    jsonKeys: new Map([...profile.jsonKeys].map(([k, v]) => [k, rebind(v)])),
    jsonPaths: profile.jsonPaths.map(rebind),
  };
}
