import { SluiceError } from '../../shared/errors.js';

const PROFILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Reject profile names that could escape the state directory or confuse a keychain; returns the name. */
export function checkProfileName(name: string): string {
  if (!PROFILE_NAME.test(name)) {
    throw new SluiceError('ERR_USAGE', {
      message: `Invalid profile name "${name}": use letters, digits, ".", "_" or "-" (at most 64, not starting with "." or "-")`,
    });
  }
  return name;
}
