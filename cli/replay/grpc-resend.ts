import * as grpc from '@grpc/grpc-js';
import { SluiceError } from '../../shared/errors.js';
import type { CliContext } from '../context.js';
import { openTunnel } from '../tunnel/open-tunnel.js';
import type { ResendResult } from './resend-client.js';
import type { GrpcResendPlan } from './resend-request.js';
import type { SessionApi } from './session-api.js';

/** Options of `sendGrpcAgain`; defaults in `DEFAULT_GRPC_RESEND`. */
export interface GrpcResendOptions {
  /** Milliseconds the call may take (its gRPC deadline). */
  readonly timeoutMs: number;
  /** How often, and how many times, to look for the new call's end in its recording before giving up. */
  readonly pollMs: number;
  readonly polls: number;
}

export const DEFAULT_GRPC_RESEND: GrpcResendOptions = { timeoutMs: 120_000, pollMs: 200, polls: 25 };

const identity = (b: Buffer): Buffer => b;

/**
 * Sends a planned unary gRPC re-send as a gRPC call, as the current user, through a tunnel of its own (the
 * path `sluice connect` gives any gRPC client: access, policy, review and masking apply), and returns the
 * new call as its recording holds it, so both sides of the comparison are read the same way: decoded with
 * the connection's descriptors by the gateway, never by this client. The tunnel's session is the re-send's;
 * its `reason` names the exchange it re-sends.
 */
export async function sendGrpcAgain(ctx: CliContext, api: SessionApi, plan: GrpcResendPlan, options: GrpcResendOptions = DEFAULT_GRPC_RESEND): Promise<ResendResult> {
  const tunnel = await openTunnel(ctx, { connection: plan.connection, port: 0, bind: '127.0.0.1', localAuth: false, reason: `re-send of ${plan.resendOf}` });
  const session = tunnel.hello.session_id;
  let outcome: { code: number; details: string };
  try {
    const client = new grpc.Client(tunnel.localUrl!, grpc.credentials.createInsecure());
    const metadata = new grpc.Metadata();
    for (const [k, v] of Object.entries(plan.metadata)) metadata.set(k, v);
    outcome = await new Promise((resolve) => {
      client.makeUnaryRequest(plan.path, identity, identity, plan.message, metadata, { deadline: Date.now() + options.timeoutMs }, (err) => {
        resolve(err === null ? { code: grpc.status.OK, details: '' } : { code: err.code, details: err.details });
      });
    });
    client.close();
  } finally {
    await tunnel.close();
  }
  // The recording is written as the call passes; its end may land a moment after the caller's answer.
  for (let i = 0; i < options.polls; i++) {
    const detail = await api.load(session);
    const exchange = detail.exchanges.find((x) => x.grpc?.status !== undefined || x.error !== undefined);
    if (exchange !== undefined) {
      const status = exchange.grpc?.status ?? outcome.code;
      return status === grpc.status.OK
        ? { session, exchange }
        : { session, exchange, errorMessage: `${exchange.grpc?.statusName ?? status}: ${exchange.grpc?.message ?? outcome.details}` };
    }
    await new Promise((r) => setTimeout(r, options.pollMs));
  }
  throw new SluiceError('ERR_GATEWAY_RESPONSE', { message: `The re-sent call ended (${outcome.code} ${outcome.details}) but session ${session} does not record its end` });
}
