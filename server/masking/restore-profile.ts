import { mergeProfiles, type CompiledProfile } from './compiled-profile.js';
import type { MaskingCounter } from './masking-summary.js';
import { MAX_PLACEHOLDER_LENGTH, PLACEHOLDER_PATTERN, type PlaceholderMap } from './placeholder-map.js';
import { DEFAULT_MAX_JSON_BODY, DEFAULT_MAX_LINE } from './profile-schema.js';
import { patternRule } from './text-rule.js';
import { literalFinder } from './text-scan.js';
import { TextMasker } from './text-masker.js';
import type { ReplacementOptions } from './replacement.js';

/** The summary's name for a placeholder put back: counted apart from every value masked. */
export const RESTORE_ENTITY = 'placeholder';

/** The replacement the restoring rule is compiled with; each exchange binds its own writer in its place. */
const UNBOUND: ReplacementOptions = Object.freeze({ style: 'placeholder' });

/**
 * The answer profiles merged behind the restoring rule, compiled once per answer profile (and once for
 * none): what an exchange binds its placeholders to. Owned by a masking stage, dropped with its profiles.
 */
export class RestoringTemplates {
  readonly #byAnswer = new WeakMap<CompiledProfile, CompiledProfile>();
  #alone: CompiledProfile | undefined;

  /** The template for `answer`: the restoring rule (unbound) ahead of the answer's own rules. */
  of(answer: CompiledProfile | null): CompiledProfile {
    if (answer === null) return (this.#alone ??= restoringTemplate(null));
    let template = this.#byAnswer.get(answer);
    if (template === undefined) {
      template = restoringTemplate(answer);
      this.#byAnswer.set(answer, template);
    }
    return template;
  }
}

/**
 * The answer's masking for an exchange whose prompt left with placeholders: a rule that finds each
 * placeholder the answer repeats and puts its value back, ahead of the answer's own profile (`answer`,
 * or none). Being a text rule, it is applied wherever answer masking reads text, with the same framing:
 * JSON values, each channel of a stream (a placeholder split across deltas is held back until it is
 * whole, at most MAX_PLACEHOLDER_LENGTH characters), tool-call arguments.
 *
 * A restored value is then masked by `answer` on its own, as it would be had the upstream written it:
 * a connection may put emails back and still mask cards. A token the exchange never gave out (altered
 * or invented by the model) is left as it is. With `templates` the rules are compiled once per answer
 * profile and only the exchange's writer is bound here.
 */
export function restoringProfile(
  map: Pick<PlaceholderMap, 'valueOf'>,
  answer: CompiledProfile | null,
  counter: MaskingCounter,
  templates: RestoringTemplates = new RestoringTemplates(),
): CompiledProfile {
  const restore = (token: string): string => {
    const value = map.valueOf(token);
    if (value === undefined) return token;
    return answer === null || answer.text.empty ? value : answer.text.mask(value, counter);
  };
  const template = templates.of(answer);
  const bind = (replacement: ReplacementOptions): ReplacementOptions => (replacement === UNBOUND ? { style: 'placeholder', write: restore } : replacement);
  return { ...template, entries: template.entries.map((e) => ({ rule: e.rule, replacement: bind(e.replacement) })), text: template.text.rebound(bind) };
}

function restoringTemplate(answer: CompiledProfile | null): CompiledProfile {
  const rule = patternRule({
    entity: RESTORE_ENTITY,
    rule: 'restore:placeholder',
    label: 'PLACEHOLDER',
    pattern: new RegExp(PLACEHOLDER_PATTERN.source, 'g'),
    maxLength: MAX_PLACEHOLDER_LENGTH,
    // A placeholder is `<`, then these characters, then `>`: an unfinished one is the trailing run from its `<`.
    chars: /[<A-Z0-9_]/,
    starts: /</,
    contains: { pattern: /</g, before: 0, literals: [literalFinder('<')] },
  });
  const entries = [{ rule, replacement: UNBOUND }];
  const restoring: CompiledProfile = {
    names: ['restore'],
    entries,
    allow: new Set(),
    text: new TextMasker(entries, new Set()),
    jsonKeys: new Map(),
    jsonPaths: [],
    selectors: [],
    unknownStream: 'mask',
    binary: 'allow',
    maxJsonBody: answer?.maxJsonBody ?? DEFAULT_MAX_JSON_BODY,
    logprobs: 'mask',
    maxLine: answer?.maxLine ?? DEFAULT_MAX_LINE,
  };
  return answer === null ? restoring : mergeProfiles([restoring, answer]);
}
