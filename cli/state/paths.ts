import { chmod, mkdir, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** Options that locate sluice's local state; tests point `env.XDG_CONFIG_HOME` at a temp dir. */
export interface ConfigDirOptions {
  env: NodeJS.ProcessEnv;
}

/** The directory for CLI state: `$XDG_CONFIG_HOME/sluice`, else `~/.config/sluice`. */
export function configDir(options: ConfigDirOptions): string {
  const base = options.env.XDG_CONFIG_HOME?.trim();
  // XDG says relative values are invalid and must be ignored.
  const root = base && base.startsWith('/') ? base : join(options.env.HOME || homedir(), '.config');
  return join(root, 'sluice');
}

/**
 * Create `dir` (and parents) readable by the owner only, and tighten it to 0700 if it already existed
 * with wider permissions: it holds tokens, so group and world must not even list it.
 */
export async function ensurePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (process.platform === 'win32') return; // POSIX modes mean nothing there; the profile dir is per-user already.
  const info = await stat(dir);
  if ((info.mode & 0o777) !== 0o700) await chmod(dir, 0o700);
}
