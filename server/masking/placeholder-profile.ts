import type { CompiledProfile, JsonRuleEntry } from './compiled-profile.js';
import type { PlaceholderMap } from './placeholder-map.js';
import type { ReplacementOptions } from './replacement.js';
import type { MaskEntry } from './text-masker.js';

/** What binding a profile needs of an exchange's placeholders: the token of each value it removes. */
export type PlaceholderWriter = Pick<PlaceholderMap, 'tokenFor'>;

/**
 * A shared profile bound to one exchange's placeholders: every rule whose style is `placeholder` (every
 * rule, with `all`, when the request masking setting asks for placeholders) writes `<LABEL_N>` from `map`.
 * The rules and their text searches are the profile's, compiled once when it was loaded (`rebound` shares
 * them); only the writers are the exchange's, so binding costs a few small objects per exchange.
 */
export function withPlaceholders(profile: CompiledProfile, map: PlaceholderWriter, all: boolean): CompiledProfile {
  const write = (value: string, label: string): string => map.tokenFor(value, label);
  const bind = (replacement: ReplacementOptions): ReplacementOptions =>
    all || replacement.style === 'placeholder' ? { ...replacement, style: 'placeholder', write } : replacement;
  const entries: MaskEntry[] = profile.entries.map((e) => ({ rule: e.rule, replacement: bind(e.replacement) }));
  const rebind = (e: JsonRuleEntry): JsonRuleEntry => ({ name: e.name, replacement: bind(e.replacement) });
  return {
    ...profile,
    entries,
    text: profile.text.rebound(bind),
    jsonKeys: profile.jsonKeys.size === 0 ? profile.jsonKeys : new Map([...profile.jsonKeys].map(([k, v]) => [k, rebind(v)])),
    jsonPaths: profile.jsonPaths.length === 0 ? profile.jsonPaths : profile.jsonPaths.map(rebind),
  };
}
