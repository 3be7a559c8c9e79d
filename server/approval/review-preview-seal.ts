import type { KeyRing } from '../recording/key-ring.js';

/**
 * A held request's body as its review keeps it: sealed under the current master key (AES-256-GCM), so the
 * index — SQLite, or a PostgreSQL its operators and backups read — never holds a prompt in clear. Bound to
 * the requester: a sealed preview copied into another review does not open.
 */
export interface SealedPreview {
  /** The master key's id. */
  readonly key: string;
  /** base64 of nonce ‖ ciphertext ‖ tag. */
  readonly sealed: string;
}

function context(requester: string): Buffer {
  return Buffer.from(`sluice review preview\0${requester}`, 'utf8');
}

/** Seals `text` for a review of `requester`. */
export function sealPreview(ring: KeyRing, text: string, requester: string): SealedPreview {
  return { key: ring.currentId, sealed: ring.sealUnder(ring.currentId, Buffer.from(text, 'utf8'), context(requester)).toString('base64') };
}

/** The preview's text; undefined when there is none, or it does not open (a key no longer in the ring, altered bytes, another requester). */
export function openPreview(ring: KeyRing | undefined, preview: SealedPreview | undefined, requester: string): string | undefined {
  if (ring === undefined || preview === undefined || typeof preview.sealed !== 'string') return undefined;
  return ring.openUnder(preview.key, Buffer.from(preview.sealed, 'base64'), context(requester))?.toString('utf8');
}
