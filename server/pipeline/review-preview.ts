import type { Exchange } from './exchange.js';
import type { MaskingStage } from './masking-stage.js';
import type { Decision } from './policy-stage.js';

/** Most characters of a held request's body shown to its reviewers. */
export const REVIEW_PREVIEW_CHARS = 4096;

/**
 * The held request's body as its reviewers see it: as the recording keeps it (`raw` as sent; `masked` as the
 * masking profiles leave it, as sent where none applies), JSON pretty-printed, at most
 * {@link REVIEW_PREVIEW_CHARS} characters. Undefined where the recording keeps no bytes (`none`, a body
 * masking cannot read), so a reviewer is never shown what an auditor could not read later.
 */
export async function reviewPreview(exchange: Exchange, masking: MaskingStage, decision: Decision, body: Buffer | undefined): Promise<string | undefined> {
  if (body === undefined || body.length === 0) return undefined;
  const setting = exchange.connection.record.request_body;
  if (setting === 'none') return undefined;
  const extra = decision.mask ?? [];
  const unprofiled = exchange.connection.masking.length === 0 && extra.length === 0;
  const kept = setting === 'raw' || unprofiled ? body : ((await masking.maskRequestBody?.(exchange, body, extra)) ?? undefined);
  if (kept === undefined) return undefined;
  const text = kept.toString('utf8');
  let shown = text;
  try {
    shown = JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    // Not JSON: shown as the text it is.
  }
  return shown.length <= REVIEW_PREVIEW_CHARS ? shown : `${shown.slice(0, REVIEW_PREVIEW_CHARS)}\n… (${shown.length - REVIEW_PREVIEW_CHARS} more characters)`;
}
