import { SluiceError } from '../../shared/errors.js';
import type { Carrier } from '../pipeline/carrier.js';
import type { Exchange } from '../pipeline/exchange.js';
import type { MaskedRequestBody, MaskingStage } from '../pipeline/masking-stage.js';

/** Whether the exchange's connection masks request bodies: only then is a body read whole before it is forwarded. */
export function masksRequests(exchange: Exchange): boolean {
  const connection = exchange.connection;
  return connection.type === 'http' && connection.request_masking !== undefined;
}

/**
 * The whole request body, read before anything is forwarded: a body cannot be masked while its start is
 * already upstream. Bounded by the carrier's body limit (`max_body`): a longer one rejects with
 * ERR_BODY_TOO_LARGE, as a streamed body over it would. Undefined for a request without a body.
 */
export async function wholeRequestBody(carrier: Carrier): Promise<Buffer | undefined> {
  const arrived = carrier.takeBody();
  if (arrived !== undefined) return arrived;
  const stream = carrier.requestBody(undefined);
  if (stream === null) return undefined;
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** A request body as the caller sent it, and as it is forwarded when it is masked. */
export interface RequestToForward {
  readonly asSent: Buffer | undefined;
  readonly masked: MaskedRequestBody | null;
}

/** A body masked by the connection's request profiles ahead of policy, with the bytes it was masked from. */
export interface MaskedAhead {
  readonly asSent: Buffer;
  readonly masked: MaskedRequestBody;
}

/**
 * Masks a body read ahead for policy by the connection's request profiles, so rules judge what will
 * leave. The result is reused for forwarding (`requestToForward`): the body is masked once, and the
 * placeholders the rules saw are those the upstream gets.
 */
export async function maskAhead(exchange: Exchange, asSent: Buffer, masking: MaskingStage): Promise<MaskedAhead> {
  const masked = (await masking.maskRequest?.(exchange, asSent)) ?? null;
  if (masked === null) throw unmaskable(exchange);
  return { asSent, masked };
}

/**
 * Takes the request body for forwarding: as it arrived (undefined when it still streams) when nothing
 * masks it; read whole and masked when the connection masks requests or the matched rule names
 * `mask_request` profiles (`extra`). A body already masked ahead for policy is not masked again; a rule's
 * profiles then mask what the connection's left, numbering on from its placeholders. Fails closed: a
 * masking stage that cannot mask requests refuses the exchange rather than forward the body as sent.
 */
export async function requestToForward(
  exchange: Exchange,
  carrier: Carrier,
  masking: MaskingStage,
  extra: readonly string[] = [],
  ahead: MaskedAhead | null = null,
): Promise<RequestToForward> {
  const byConnection = masksRequests(exchange);
  if (!byConnection && extra.length === 0) return { asSent: carrier.takeBody(), masked: null };
  const asSent = await wholeRequestBody(carrier);
  if (asSent === undefined) return { asSent, masked: null };
  let masked: MaskedRequestBody | null = null;
  if (byConnection) {
    // The bytes policy judged are the bytes that leave: anything else is masked on its own, never forwarded as sent.
    masked = ahead !== null && ahead.asSent.equals(asSent) ? ahead.masked : ((await masking.maskRequest?.(exchange, asSent)) ?? null);
    if (masked === null) throw unmaskable(exchange);
  }
  if (extra.length > 0) {
    const more = masked === null ? { profiles: extra } : { profiles: extra, placeholders: masked.placeholders };
    masked = (await masking.maskRequest?.(exchange, masked?.body ?? asSent, more)) ?? null;
    if (masked === null) throw unmaskable(exchange);
  }
  return { asSent, masked };
}

function unmaskable(exchange: Exchange): SluiceError {
  return new SluiceError('ERR_REQUEST_UNMASKABLE', {
    message: `Connection "${exchange.connection.name}" masks request bodies, and this gateway's masking stage cannot`,
    details: { connection: exchange.connection.name },
  });
}
