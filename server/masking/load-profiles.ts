import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { SluiceError } from '../../shared/errors.js';
import { compileProfile, mergeProfiles, type CompiledProfile, type SelectorEntry } from './compiled-profile.js';
import type { MaskingProfileConfig, MaskingSettings } from './profile-schema.js';

/** The masking part of a validated config. */
export interface MaskingConfig {
  readonly masking: MaskingSettings;
  readonly masking_profiles: Readonly<Record<string, MaskingProfileConfig>>;
}

/** Options of `loadMaskingProfiles`. */
export interface LoadMaskingProfilesOptions {
  /** Directory relative selector paths are resolved against (the config file's); default the working directory. */
  readonly baseDir?: string;
}

/** Every profile of a config, compiled once at start; connections look theirs up by name. */
export class MaskingProfiles {
  readonly #profiles: ReadonlyMap<string, CompiledProfile>;
  readonly #merged = new Map<string, CompiledProfile>();

  constructor(profiles: ReadonlyMap<string, CompiledProfile>) {
    this.#profiles = profiles;
  }

  /** Names of the configured profiles. */
  names(): string[] {
    return [...this.#profiles.keys()];
  }

  /** The profiles named (in order) acting as one; null for an empty list. Names are checked at config load. */
  forNames(names: readonly string[]): CompiledProfile | null {
    if (names.length === 0) return null;
    const key = names.join('\u0000');
    let merged = this.#merged.get(key);
    if (merged === undefined) {
      merged = mergeProfiles(
        names.map((n) => {
          const p = this.#profiles.get(n);
          if (p === undefined) throw new SluiceError('ERR_CONFIG_INVALID', { message: `unknown masking profile "${n}"` });
          return p;
        }),
      );
      this.#merged.set(key, merged);
    }
    return merged;
  }
}

/** Compiles every profile and imports its selector modules; a module that fails to load fails the start. */
export async function loadMaskingProfiles(config: MaskingConfig, options: LoadMaskingProfilesOptions = {}): Promise<MaskingProfiles> {
  const baseDir = options.baseDir ?? process.cwd();
  const compiled = new Map<string, CompiledProfile>();
  for (const [name, profile] of Object.entries(config.masking_profiles)) {
    const selectors: SelectorEntry[] = [];
    for (const [i, module] of profile.selectors.entries()) selectors.push(await loadSelector(module, baseDir, `masking_profiles.${name}.selectors[${i}]`));
    compiled.set(name, compileProfile(name, profile, config.masking, selectors));
  }
  return new MaskingProfiles(compiled);
}

async function loadSelector(module: string, baseDir: string, where: string): Promise<SelectorEntry> {
  let loaded: { default?: unknown };
  try {
    loaded = (await import(pathToFileURL(resolve(baseDir, module)).href)) as { default?: unknown };
  } catch (cause) {
    throw new SluiceError('ERR_CONFIG_INVALID', { message: `${where}: cannot load ${module}: ${(cause as Error).message}`, cause });
  }
  const fn = loaded.default;
  if (typeof fn !== 'function') {
    throw new SluiceError('ERR_CONFIG_INVALID', { message: `${where}: ${module} must export a default function (value, path) => string | undefined` });
  }
  return { module, select: fn as SelectorEntry['select'] };
}
