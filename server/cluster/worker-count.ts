import { availableParallelism } from 'node:os';
import { SluiceError } from '../../shared/errors.js';

/** Most workers `--workers` accepts: beyond this a typo (`--workers 1000`) would fork the machine to a halt. */
export const MAX_WORKERS = 256;

/** `--workers N|auto` as a count: `auto` is the cores this process may use. ERR_USAGE for anything else. */
export function parseWorkerCount(value: string, cores: number = availableParallelism()): number {
  if (value === 'auto') return Math.max(1, cores);
  if (!/^[0-9]+$/.test(value) || Number(value) < 1 || Number(value) > MAX_WORKERS) {
    throw new SluiceError('ERR_USAGE', { message: `--workers must be a whole number from 1 to ${MAX_WORKERS}, or auto; got ${JSON.stringify(value)}` });
  }
  return Number(value);
}

/**
 * Several workers share the session index, reviews and tunnel slots: each is a replica of its own, and only
 * a shared database keeps them consistent (SQLite would be one file written by N processes, each sure it
 * owns it). ERR_CONFIG_INVALID (exit 2) when N > 1 and `storage.database` is absent.
 */
export function checkWorkersNeedDatabase(count: number, database: string | undefined): void {
  if (count > 1 && database === undefined) {
    throw new SluiceError('ERR_CONFIG_INVALID', {
      message: `--workers ${count} needs storage.database (a postgres:// URL): workers share reviews, grants and the session index, which SQLite cannot share between processes`,
    });
  }
}
