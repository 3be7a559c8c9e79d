import { z } from 'zod';
import { SluiceError } from '../../shared/errors.js';

/** How the tokens held for a profile were obtained. */
export type GrantKind = 'device_code' | 'client_credentials';

const storedTokensSchema = z.object({
  accessToken: z.string().min(1),
  refreshToken: z.string().min(1).optional(),
  idToken: z.string().min(1).optional(),
  expiresAt: z.number().optional(),
  grant: z.enum(['device_code', 'client_credentials']),
  clientId: z.string().min(1),
  scope: z.string().optional(),
});

/** The tokens of one profile, as saved after a login or refresh. */
export type StoredTokens = z.infer<typeof storedTokensSchema>;

/** Where tokens live: the OS keychain or a private file per profile. */
export interface TokenStore {
  readonly kind: 'keyring' | 'file';
  /** Human-readable location, for messages ("OS keychain …", a file path). */
  where(profile: string): string;
  get(profile: string): Promise<StoredTokens | undefined>;
  set(profile: string, tokens: StoredTokens): Promise<void>;
  /** Resolves whether anything was removed. */
  delete(profile: string): Promise<boolean>;
}

/** Parse a stored token record; a corrupt one is ERR_TOKEN_STORE naming where it came from. */
export function parseStoredTokens(text: string, where: string): StoredTokens {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new SluiceError('ERR_TOKEN_STORE', { message: `The saved tokens in ${where} are not valid JSON: run \`sluice login\` again`, cause: err });
  }
  const parsed = storedTokensSchema.safeParse(raw);
  if (!parsed.success) {
    throw new SluiceError('ERR_TOKEN_STORE', { message: `The saved tokens in ${where} are malformed: run \`sluice login\` again`, cause: parsed.error });
  }
  return parsed.data;
}
