import { readFileSync } from 'node:fs';

function readVersion(): string {
  // dist/shared/version.js and shared/version.ts both sit two levels below package.json at most.
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'sluice' && pkg.version) return pkg.version;
    } catch {
      // try the next candidate
    }
  }
  return '0.0.0';
}

/** The package version, shown by `--version` and `/v1/info`. */
export const VERSION = readVersion();
