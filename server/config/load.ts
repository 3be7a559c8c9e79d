import { readFile } from 'node:fs/promises';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import type { z } from 'zod';
import { SluiceError } from '../../shared/errors.js';
import { configSchema, type Config } from './schema.js';

const ENV_REF = /\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}/g;

export interface LoadConfigOptions {
  /** Environment used for `${env:NAME}`; defaults to process.env. */
  env?: NodeJS.ProcessEnv;
}

/** Read, expand, validate and freeze a sluice.yaml file. */
export async function loadConfigFile(path: string, options: LoadConfigOptions = {}): Promise<Config> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw new SluiceError('ERR_CONFIG_UNREADABLE', {
      message: `Cannot read ${path}: ${(cause as NodeJS.ErrnoException).code ?? String(cause)}`,
      cause,
    });
  }
  return parseConfigText(text, { ...options, source: path });
}

/** Parse YAML text into a validated, frozen config. */
export function parseConfigText(text: string, options: LoadConfigOptions & { source?: string } = {}): Config {
  let raw: unknown;
  try {
    raw = parseYaml(text, { prettyErrors: true });
  } catch (cause) {
    const where = cause instanceof YAMLParseError && cause.linePos ? ` at line ${cause.linePos[0].line}` : '';
    throw new SluiceError('ERR_CONFIG_INVALID', {
      message: `${options.source ?? 'config'}: not valid YAML${where}`,
      details: { problems: [`YAML${where}: ${(cause as Error).message.split('\n')[0]}`] },
      cause,
    });
  }
  return validateConfig(raw ?? {}, options);
}

/** Expand `${env:NAME}` references inside string values, then validate with zod and deep-freeze. */
export function validateConfig(raw: unknown, options: LoadConfigOptions & { source?: string } = {}): Config {
  const env = options.env ?? process.env;
  const missing = new Set<string>();
  const expanded = expandEnv(raw, env, missing);
  if (missing.size > 0) {
    const names = [...missing].sort();
    throw new SluiceError('ERR_CONFIG_ENV_MISSING', {
      message: `The configuration uses environment variables that are not set: ${names.join(', ')}`,
      details: { variables: names },
    });
  }
  const result = configSchema.safeParse(expanded);
  if (!result.success) {
    const problems = formatIssues(result.error.issues);
    throw new SluiceError('ERR_CONFIG_INVALID', {
      message: `${options.source ?? 'config'} has ${problems.length} problem${problems.length === 1 ? '' : 's'}:\n${problems.map((p) => `  ${p}`).join('\n')}`,
      details: { problems },
    });
  }
  return deepFreeze(result.data);
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

/** `connections[1].upstream: must be a URL` — a path per problem, never the offending value. */
export function formatIssues(issues: readonly z.core.$ZodIssue[]): string[] {
  return issues.map((issue) => {
    let path = '';
    for (const part of issue.path) {
      if (typeof part === 'number') path += `[${part}]`;
      else path += path === '' ? String(part) : `.${String(part)}`;
    }
    let message = issue.message;
    if (issue.code === 'invalid_type' && /received undefined/.test(message)) message = 'is required';
    return `${path || '(root)'}: ${message}`;
  });
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
