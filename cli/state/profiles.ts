import { join } from 'node:path';
import { Low } from 'lowdb';
import { JSONFile } from 'lowdb/node';
import { SluiceError } from '../../shared/errors.js';
import { checkProfileName } from './profile-name.js';
import { ensurePrivateDir } from './paths.js';

/** How a profile's tokens were obtained. */
export type LoginKind = 'device_code' | 'client_credentials';

/** What `sluice login` remembers about a gateway, per profile name. */
export interface Profile {
  /** Gateway base URL, without a trailing slash. */
  gateway: string;
  issuer?: string;
  /** The gateway's public CLI client (device code); a client-credentials login keeps its own in the token store. */
  cliClientId?: string;
  audience?: string;
  loginKind?: LoginKind;
  /** For client-credentials logins: where the secret was read from, so renewal can read it again. */
  clientSecretFile?: string;
  updatedAt: string;
}

interface ProfilesData {
  version: 1;
  profiles: Record<string, Profile>;
}

/** Options for {@link openProfiles}. */
export interface ProfilesOptions {
  /** The sluice config directory (see `configDir`). */
  dir: string;
}

/** Saved profiles in `<dir>/profiles.json`. */
export interface Profiles {
  readonly file: string;
  get(name: string): Profile | undefined;
  list(): Record<string, Profile>;
  /** Merge `fields` into the profile (creating it) and write the file. */
  set(name: string, fields: Omit<Profile, 'updatedAt'> & Partial<Pick<Profile, 'updatedAt'>>): Promise<Profile>;
  /** Remove a profile; resolves whether it existed. */
  remove(name: string): Promise<boolean>;
}

/** Open (and read) the profiles file; the directory is created 0700 on first write. */
export async function openProfiles(options: ProfilesOptions): Promise<Profiles> {
  const file = join(options.dir, 'profiles.json');
  const db = new Low<ProfilesData>(new JSONFile<ProfilesData>(file), { version: 1, profiles: {} });
  try {
    await db.read();
  } catch (err) {
    throw new SluiceError('ERR_USAGE', { message: `Cannot read the profiles file ${file}: ${(err as Error).message}`, cause: err });
  }
  // A hand-edited or foreign file must not crash every command.
  if (typeof db.data !== 'object' || db.data === null || typeof db.data.profiles !== 'object' || db.data.profiles === null) {
    throw new SluiceError('ERR_USAGE', { message: `The profiles file ${file} is not a sluice profiles file; move it away and log in again` });
  }

  const write = async (): Promise<void> => {
    await ensurePrivateDir(options.dir);
    await db.write();
  };

  return {
    file,
    get: (name) => {
      checkProfileName(name);
      return Object.hasOwn(db.data.profiles, name) ? db.data.profiles[name] : undefined;
    },
    list: () => ({ ...db.data.profiles }),
    set: async (name, fields) => {
      checkProfileName(name);
      const previous = Object.hasOwn(db.data.profiles, name) ? db.data.profiles[name] : undefined;
      const next: Profile = { ...previous, ...fields, updatedAt: fields.updatedAt ?? new Date().toISOString() };
      db.data.profiles[name] = next;
      await write();
      return next;
    },
    remove: async (name) => {
      checkProfileName(name);
      if (!Object.hasOwn(db.data.profiles, name)) return false;
      delete db.data.profiles[name];
      await write();
      return true;
    },
  };
}
