import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { SluiceError } from '../../shared/errors.js';
import { openAiErrorType } from '../../shared/openai-error-type.js';

/** How long a local connection answered by sluice itself may keep sending before it is cut. */
const DRAIN_MS = 5000;

/**
 * Answer a local HTTP client from the CLI itself, with an OpenAI-style error body, and close the connection.
 * What the client still sends is read and dropped for a while: closing a socket with unread input resets
 * it, and the client would see a reset instead of the answer.
 */
export function answerLocally(socket: Socket, error: SluiceError, options: { status?: number; type?: string; headers?: Record<string, string> } = {}): void {
  const status = options.status ?? error.status;
  const body = JSON.stringify({ error: { type: options.type ?? openAiErrorType(status), code: error.code, message: `sluice: ${error.message}` } });
  const extra = Object.entries(options.headers ?? {})
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  if (socket.writable) {
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n` +
        `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}connection: close\r\n\r\n${body}`,
    );
  }
  const timer = setTimeout(() => socket.destroy(), DRAIN_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
  socket.resume();
}
