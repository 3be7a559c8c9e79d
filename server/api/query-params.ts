import { z } from 'zod';
import { SluiceError } from '../../shared/errors.js';

/**
 * A time in a query string: ISO 8601 (a date alone is its UTC midnight), or epoch seconds or milliseconds.
 * Below 10^12 a number is seconds: 10^12 ms is 2001, and 10^12 s is tens of thousands of years away.
 */
export const instant = z
  .string()
  .trim()
  .transform((v, ctx) => {
    if (/^\d+(\.\d+)?$/.test(v)) {
      const n = Number(v);
      return n < 1e12 ? Math.round(n * 1000) : Math.round(n);
    }
    const ms = Date.parse(v);
    if (Number.isNaN(ms)) {
      ctx.addIssue({ code: 'custom', message: 'must be an ISO 8601 time or epoch seconds/milliseconds' });
      return z.NEVER;
    }
    return ms;
  });

/** A request's query string read strictly by `schema` (none is an empty one); anything else is ERR_BAD_REQUEST naming what is wrong. */
export function parseQuery<T>(schema: z.ZodType<T>, query: unknown): T {
  const parsed = schema.safeParse(query ?? {});
  if (!parsed.success) throw new SluiceError('ERR_BAD_REQUEST', { message: `Invalid query: ${z.prettifyError(parsed.error).replace(/\n/g, '; ')}` });
  return parsed.data;
}
