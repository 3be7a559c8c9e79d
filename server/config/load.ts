import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { SluiceError } from '../../shared/errors.js';
import type { MaskingConfig } from '../masking/load-profiles.js';
import { maskingConfigProblems, maskingProfileName, maskingProfileSchema, maskingSettingsSchema } from '../masking/profile-schema.js';
import { closestKey, knownKeys } from './key-suggestions.js';
import { configSchema, type Config } from './schema.js';
import { parseYamlText, type LocatePath } from './yaml-locations.js';
import { plainIssueMessage } from '../../shared/issue-text.js';

const ENV_REF = /\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}/g;

export interface LoadConfigOptions {
  /** Environment used for `${env:NAME}`; defaults to process.env. */
  env?: NodeJS.ProcessEnv;
}

interface ValidateOptions extends LoadConfigOptions {
  /** Names the file in messages. */
  source?: string;
  /** Where each path was written, when the config came from YAML text: problems then carry `file:line:col`. */
  locate?: LocatePath;
}

/** Read, expand, validate and freeze a sluice.yaml file. */
export async function loadConfigFile(path: string, options: LoadConfigOptions = {}): Promise<Config> {
  return parseConfigText(await readConfigText(path), { ...options, source: path });
}

/** Parse YAML text into a validated, frozen config. */
export function parseConfigText(text: string, options: LoadConfigOptions & { source?: string } = {}): Config {
  const yaml = parseYamlText(text, options.source ?? 'config');
  return validateConfig(yaml.value ?? {}, { ...options, locate: yaml.locate });
}

/** Expand `${env:NAME}` references inside string values, then validate with zod and deep-freeze. */
export function validateConfig(raw: unknown, options: ValidateOptions = {}): Config {
  const expanded = expandAll(raw, options.env ?? process.env);
  const result = configSchema.safeParse(expanded);
  if (!result.success) throw invalidConfig(describeIssues(result.error.issues, configSchema), options);
  return deepFreeze(result.data);
}

/** The masking sections of a config file, alone. */
const maskingSectionsSchema = z
  .object({
    masking: maskingSettingsSchema,
    masking_profiles: z.record(maskingProfileName, maskingProfileSchema).default({}),
  })
  .superRefine((cfg, ctx) => {
    for (const p of maskingConfigProblems({ ...cfg, connections: [] })) ctx.addIssue({ code: 'custom', path: p.path, message: p.message });
  });

/**
 * Only what masking needs from a config file (`masking` and `masking_profiles`), for `sluice mask test`:
 * trying a profile must not need the gateway's secrets, so `${env:NAME}` is expanded (and must be set)
 * in those two sections alone, and the rest of the file is not validated.
 */
export async function loadMaskingConfigFile(path: string, options: LoadConfigOptions = {}): Promise<MaskingConfig> {
  const yaml = parseYamlText(await readConfigText(path), path);
  const raw = yaml.value ?? {};
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw invalidConfig([{ path: [], text: '(root): must be a mapping of sections' }], { source: path });
  }
  const sections = { masking: (raw as Record<string, unknown>).masking, masking_profiles: (raw as Record<string, unknown>).masking_profiles };
  const result = maskingSectionsSchema.safeParse(expandAll(sections, options.env ?? process.env));
  if (!result.success) throw invalidConfig(describeIssues(result.error.issues, maskingSectionsSchema), { source: path, locate: yaml.locate });
  return deepFreeze(result.data);
}

async function readConfigText(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (cause) {
    throw new SluiceError('ERR_CONFIG_UNREADABLE', {
      message: `Cannot read ${path}: ${(cause as NodeJS.ErrnoException).code ?? String(cause)}`,
      cause,
    });
  }
}

function expandAll(raw: unknown, env: NodeJS.ProcessEnv): unknown {
  const missing = new Set<string>();
  const expanded = expandEnv(raw, env, missing);
  if (missing.size > 0) {
    const names = [...missing].sort();
    throw new SluiceError('ERR_CONFIG_ENV_MISSING', {
      message: `The configuration uses environment variables that are not set: ${names.join(', ')}`,
      details: { variables: names },
    });
  }
  return expanded;
}

function expandEnv(value: unknown, env: NodeJS.ProcessEnv, missing: Set<string>): unknown {
  if (typeof value === 'string') {
    return value.replace(ENV_REF, (_, name: string) => {
      const v = env[name];
      if (v === undefined) {
        missing.add(name);
        return '';
      }
      return v;
    });
  }
  if (Array.isArray(value)) return value.map((v) => expandEnv(v, env, missing));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, expandEnv(v, env, missing)]));
  }
  return value;
}

/** One problem: where it is (for the line number) and its text, `path: message`. */
interface Problem {
  path: PropertyKey[];
  text: string;
}

function invalidConfig(problems: readonly Problem[], options: ValidateOptions): SluiceError {
  const source = options.source ?? 'config';
  // Read top to bottom, as the file is; problems with no place in it (a missing section) first.
  const lines = problems
    .map((p) => ({ p, at: options.locate?.(p.path) }))
    .sort((a, b) => (a.at?.line ?? 0) - (b.at?.line ?? 0) || (a.at?.col ?? 0) - (b.at?.col ?? 0))
    .map(({ p, at }) => (at === undefined ? `  ${p.text}` : `  ${source}:${at.line}:${at.col}: ${p.text}`));
  return new SluiceError('ERR_CONFIG_INVALID', {
    message: `${source} has ${problems.length} problem${problems.length === 1 ? '' : 's'}:\n${lines.join('\n')}`,
    // Path first, no position: what the reload API returns and scripts match on.
    details: { problems: problems.map((p) => p.text) },
  });
}

/** `connections[1].upstream: must be a URL` — a path per problem, never the offending value. */
export function formatIssues(issues: readonly z.core.$ZodIssue[], schema: z.ZodType = configSchema): string[] {
  return describeIssues(issues, schema).map((p) => p.text);
}

function describeIssues(issues: readonly z.core.$ZodIssue[], schema: z.ZodType): Problem[] {
  return issues.flatMap((issue): Problem[] => {
    if (issue.code === 'unrecognized_keys') {
      // One problem per key, at the key, with the name it was probably meant to be.
      const known = knownKeys(schema, issue.path);
      return issue.keys.map((key) => {
        const path = [...issue.path, key];
        const guess = closestKey(key, known);
        const hint = guess !== undefined ? ` (did you mean "${guess}"?)` : known.length > 0 ? ` (this section takes: ${known.join(', ')})` : '';
        return { path, text: `${pathText(path)}: unknown key${hint}` };
      });
    }
    return [{ path: [...issue.path], text: `${pathText(issue.path)}: ${plainIssueMessage(issue)}` }];
  });
}

function pathText(parts: readonly PropertyKey[]): string {
  let path = '';
  for (const part of parts) {
    if (typeof part === 'number') path += `[${part}]`;
    else path += path === '' ? String(part) : `.${String(part)}`;
  }
  return path || '(root)';
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
