import { z } from 'zod';
import { DETECTOR_NAMES } from './detectors.js';
import { linearRegExpProblem } from './regex-safety.js';

/** Default bound on a JSON body (and on one SSE event) parsed whole for masking: 8 MiB. */
export const DEFAULT_MAX_JSON_BODY = 8 * 1024 * 1024;

/** Default bound on one line of a masked stream (an SSE line, an NDJSON record): 1 MiB. */
export const DEFAULT_MAX_LINE = 1024 * 1024;

/** What masking does with token log-probabilities: mask their tokens as the text they spell, or remove them. */
const logprobsSetting = z.enum(['mask', 'strip']);

/** Profile names appear in connections' `masking` lists and in `sluice mask test --profile`. */
export const maskingProfileName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'must be lower-case letters, digits, ".", "_" or "-" (at most 63)');

const regexRule = z
  .strictObject({
    name: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'must be lower-case letters, digits, "_" or "-"'),
    /** RE2 syntax: matched in linear time, so no look-around and no back-references. */
    pattern: z.string().min(1).max(1000),
    /** Literal replacement in the redact style; `[NAME]` when absent. */
    replace: z.string().max(200).optional(),
    flags: z.string().regex(/^[imsu]*$/, 'may only hold the flags i, m, s and u').default(''),
    /** Longest text a match can span; a stream holds back at most this much for the rule. */
    max_length: z.number().int().min(1).max(4096).default(128),
  })
  .superRefine((rule, ctx) => {
    const problem = linearRegExpProblem(rule.pattern, `${rule.flags}g`);
    if (problem !== null) {
      ctx.addIssue({ code: 'custom', path: ['pattern'], message: `of regex rule "${rule.name}" cannot run on RE2: ${problem}` });
    }
  });

/** One entry of `masking_profiles`. */
export const maskingProfileSchema = z.strictObject({
  detectors: z.array(z.enum(DETECTOR_NAMES)).default([]),
  /** Values of these keys are masked at any depth (case-insensitive), whatever their type. */
  json_keys: z.array(z.string().min(1).max(200)).default([]),
  /** JSONPath expressions (jsonpath-plus syntax, script filters refused) whose matches are masked. */
  json_paths: z
    .array(
      z
        .string()
        .startsWith('$', 'must start with "$"')
        .refine((p) => !/[()]/.test(p), 'must not use script expressions ("(...)")'),
    )
    .default([]),
  regex: z.array(regexRule).default([]),
  /** Values never masked (exact, case-insensitive): false-positive control. */
  allow: z.array(z.string().min(1)).default([]),
  /** `placeholder`: `<EMAIL_1>`, stable within one request (see the connection's `masking.request`); elsewhere as `redact`. */
  style: z.enum(['redact', 'partial', 'hash', 'placeholder']).default('redact'),
  /** Modules whose default export `(value, path) => string | undefined` masks JSON string values. */
  selectors: z.array(z.string().min(1)).default([]),
  /** Regions for phone numbers written without a country code (ISO 3166 alpha-2). */
  phone_regions: z.array(z.string().regex(/^[A-Z]{2}$/, 'must be an ISO 3166 alpha-2 code such as US')).min(1).default(['US']),
  /** An SSE event of a shape sluice does not know: masked as generic JSON, or the stream is refused. */
  unknown_stream: z.enum(['mask', 'block']).default('mask'),
  /** Binary bodies (images, audio, octet-stream) cannot be masked: refused with 502 unless allowed. */
  binary: z.enum(['block', 'allow']).default('block'),
  /** Bound on a JSON body (and on one SSE event) parsed whole; larger JSON is masked as text. */
  max_json_body: z.number().int().min(1024).default(DEFAULT_MAX_JSON_BODY),
  /** Token log-probabilities in answers; unset: `masking.logprobs`. */
  logprobs: logprobsSetting.optional(),
});

/** Top-level `masking` settings shared by every profile. */
export const maskingSettingsSchema = z
  .strictObject({
    /** HMAC key of the hash style; the same value gives the same token wherever this key is used. */
    hash_key: z.string().min(16, 'must be at least 16 characters').optional(),
    /** Token log-probabilities in answers of every profile that does not set its own; default `mask`. */
    logprobs: logprobsSetting.optional(),
    /**
     * Longest line of a masked stream. Framing is linear in the input, but a line must be held whole
     * before it can be masked, so one without an end is cut off here rather than buffered without bound.
     * Default DEFAULT_MAX_LINE.
     */
    max_line: z.number().int().min(1024).optional(),
  })
  .default({});

/** A validated masking profile. */
export type MaskingProfileConfig = z.output<typeof maskingProfileSchema>;

/** Validated top-level masking settings. */
export type MaskingSettings = z.output<typeof maskingSettingsSchema>;

/** The issues the config's `superRefine` reports for masking: unknown profile names, hash without a key. */
export function maskingConfigProblems(cfg: {
  readonly masking_profiles: Readonly<Record<string, MaskingProfileConfig>>;
  readonly masking: MaskingSettings;
  readonly connections: readonly { readonly masking: readonly string[] }[];
}): { path: (string | number)[]; message: string }[] {
  const problems: { path: (string | number)[]; message: string }[] = [];
  const check = (names: readonly string[] | undefined, path: (string | number)[]) =>
    names?.forEach((name, j) => {
      if (!Object.hasOwn(cfg.masking_profiles, name)) problems.push({ path: [...path, j], message: `unknown masking profile "${name}"` });
    });
  cfg.connections.forEach((c, i) => check(c.masking, ['connections', i, 'masking']));
  for (const [name, profile] of Object.entries(cfg.masking_profiles)) {
    if (profile.style === 'hash' && cfg.masking.hash_key === undefined) {
      problems.push({ path: ['masking_profiles', name, 'style'], message: 'the hash style needs masking.hash_key' });
    }
  }
  return problems;
}
