import { SluiceError } from '../../shared/errors.js';
import type { Carrier } from '../pipeline/carrier.js';
import type { Exchange } from '../pipeline/exchange.js';
import type { MaskingStage, RestoreMap } from '../pipeline/masking-stage.js';

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

/** A request body as the caller sent it, and as it is forwarded when the connection masks requests. */
export interface RequestToForward {
  readonly asSent: Buffer | undefined;
  readonly masked: { readonly body: Buffer; readonly restore: RestoreMap | null } | null;
}

/**
 * Takes the request body for forwarding: as it arrived (undefined when it still streams) on a connection
 * that masks no request; read whole and masked on one that does. Fails closed: a masking stage that cannot
 * mask requests refuses the exchange rather than forward the body as sent.
 */
export async function requestToForward(exchange: Exchange, carrier: Carrier, masking: MaskingStage): Promise<RequestToForward> {
  if (!masksRequests(exchange)) return { asSent: carrier.takeBody(), masked: null };
  const asSent = await wholeRequestBody(carrier);
  if (asSent === undefined) return { asSent, masked: null };
  const masked = (await masking.maskRequest?.(exchange, asSent)) ?? null;
  if (masked === null) {
    throw new SluiceError('ERR_REQUEST_UNMASKABLE', {
      message: `Connection "${exchange.connection.name}" masks request bodies, and this gateway's masking stage cannot`,
      details: { connection: exchange.connection.name },
    });
  }
  return { asSent, masked };
}
