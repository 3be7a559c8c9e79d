import { configDir } from '../state/paths.js';
import { openProfiles, type Profiles } from '../state/profiles.js';
import { openTokenStore } from './token-store.js';
import type { TokenStore } from './stored-tokens.js';

/** The CLI's local state: the config directory, saved profiles and the token store. */
export interface LocalState {
  dir: string;
  profiles: Profiles;
  store: TokenStore;
}

/** Options for {@link openLocalState}. */
export interface OpenLocalStateOptions {
  env: NodeJS.ProcessEnv;
  /** Defaults to `configDir({ env })`. */
  dir?: string;
}

/** Open profiles and the token store the way every command does (env decides paths and the backend). */
export async function openLocalState(options: OpenLocalStateOptions): Promise<LocalState> {
  const dir = options.dir ?? configDir({ env: options.env });
  const [profiles, store] = await Promise.all([openProfiles({ dir }), openTokenStore({ dir, env: options.env })]);
  return { dir, profiles, store };
}
