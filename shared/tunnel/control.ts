/**
 * Control messages of the tunnel: JSON in WebSocket text messages, each with a `type`.
 * The multiplexer only validates them; the gateway and the CLI give them meaning.
 * Unknown fields are dropped (a newer peer may add some); unknown types are rejected.
 */
import { z } from 'zod';
import { SluiceError } from '../errors.js';
import { MAX_WINDOW } from './frames.js';

/** Largest control message in bytes (UTF-8). */
export const MAX_CONTROL_BYTES = 64 * 1024;

const shortText = z.string().min(1).max(256);
const text = z.string().max(4096);

/** Gateway → CLI right after the upgrade: what this tunnel is and the limits the gateway enforces. */
export const helloSchema = z.object({
  type: z.literal('hello'),
  version: z.number().int().min(1),
  // the recorded session this tunnel's exchanges go to (`sluice sessions show` takes it)
  session_id: shortText,
  // Any well-formed type, not only today's: a CLI carries a type it does not know (a newer gateway's) as plain bytes.
  connection: z.object({ name: shortText, type: z.string().regex(/^[a-z][a-z0-9-]{0,31}$/) }),
  window: z.number().int().min(1).max(MAX_WINDOW),
  max_frame: z.number().int().min(1).max(MAX_WINDOW),
  max_streams: z.number().int().min(1).max(65_536),
});

/** Gateway → CLI: something the user should see, e.g. "waiting for approval r_…". */
export const noticeSchema = z.object({
  type: z.literal('notice'),
  level: z.enum(['info', 'warn']),
  message: text,
  code: z.string().min(1).max(64).optional(),
});

/** CLI → gateway: a fresh bearer token before the current one expires. */
export const reauthSchema = z.object({
  type: z.literal('reauth'),
  token: z.string().min(1).max(16 * 1024),
});

/** Gateway → CLI: the fresh token was accepted; the tunnel now lives until `expires_at` (Unix seconds). */
export const reauthOkSchema = z.object({
  type: z.literal('reauth_ok'),
  expires_at: z.number().int().min(0),
});

/** Either side, just before it closes the WebSocket: why (a code of shared/errors.ts). */
export const errorSchema = z.object({
  type: z.literal('error'),
  // any well-formed code, not only today's table: a newer gateway's code must still reach the user
  code: z.string().regex(/^ERR_[A-Z0-9_]{1,60}$/),
  message: text,
});

/** Gateway → CLI, at most about once a second while it changes: the exchanges this tunnel carried. */
export const statsSchema = z.object({
  type: z.literal('stats'),
  requests: z.number().int().min(0),
  active: z.number().int().min(0),
  errors: z.number().int().min(0),
});

/**
 * Gateway → CLI: this gateway is shutting down. The CLI opens a new tunnel at once (a load balancer sends it
 * to another replica) for new streams, keeping its local port, and closes this one once its streams end.
 */
export const drainSchema = z.object({
  type: z.literal('drain'),
  message: text,
});

/** Any control message. */
export const controlSchema = z.discriminatedUnion('type', [helloSchema, noticeSchema, reauthSchema, reauthOkSchema, errorSchema, statsSchema, drainSchema]);

/** A validated control message. */
export type ControlMessage = z.infer<typeof controlSchema>;
/** The `hello` control message. */
export type HelloMessage = z.infer<typeof helloSchema>;

function protocolError(message: string, cause?: unknown): SluiceError {
  return new SluiceError('ERR_TUNNEL_PROTOCOL', { message: `Malformed control message: ${message}`, cause });
}

/** Parses and validates a control message; throws SluiceError ERR_TUNNEL_PROTOCOL on anything else. */
export function parseControl(input: string | Buffer): ControlMessage {
  const size = typeof input === 'string' ? Buffer.byteLength(input, 'utf8') : input.length;
  if (size > MAX_CONTROL_BYTES) throw protocolError(`${size} bytes exceeds ${MAX_CONTROL_BYTES}`);
  let value: unknown;
  try {
    value = JSON.parse(typeof input === 'string' ? input : input.toString('utf8'));
  } catch (err) {
    throw protocolError('not JSON', err);
  }
  const parsed = controlSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue && issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
    throw protocolError(`${where}${issue?.message ?? 'invalid'}`, parsed.error);
  }
  return parsed.data;
}

/** Validates and serializes a control message; throws SluiceError ERR_TUNNEL_PROTOCOL if it is invalid or too large. */
export function encodeControl(msg: ControlMessage): string {
  const parsed = controlSchema.safeParse(msg);
  if (!parsed.success) throw protocolError(parsed.error.issues[0]?.message ?? 'invalid', parsed.error);
  const json = JSON.stringify(parsed.data);
  if (Buffer.byteLength(json, 'utf8') > MAX_CONTROL_BYTES) throw protocolError(`exceeds ${MAX_CONTROL_BYTES} bytes`);
  return json;
}
