import { describe, expect, it } from 'vitest';
import { CredentialScanner, injectedCredentials } from '../../server/masking/credential-masker.js';
import { MaskingCounter } from '../../server/masking/masking-summary.js';

const TOKEN = 'sk-live/0123456789abcdef';

function scanned(body: string, size: number): { out: string; counter: MaskingCounter } {
  const counter = new MaskingCounter();
  const scanner = new CredentialScanner(injectedCredentials({ authorization: `Bearer ${TOKEN}`, 'x-version': 'v2' }), counter);
  const bytes = Buffer.from(body);
  const parts: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += size) parts.push(scanner.push(bytes.subarray(at, at + size)));
  parts.push(scanner.end());
  return { out: Buffer.concat(parts).toString(), counter };
}

describe('the injected credential', () => {
  it('takes every header value and the token after its scheme, short values aside', () => {
    expect(injectedCredentials({ authorization: `Bearer ${TOKEN}`, 'x-version': 'v2' })).toEqual(
      expect.arrayContaining([`Bearer ${TOKEN}`, TOKEN, 'sk-live\\/0123456789abcdef']),
    );
    expect(injectedCredentials({ 'x-version': 'v2' })).toEqual([]);
  });

  it('is replaced raw and JSON-escaped across any chunk boundary, keeping the body length', () => {
    const body = `{"a":"Bearer ${TOKEN}","b":"sk-live\\/0123456789abcdef","v":"v2"}`;
    for (const size of [1, 2, 5, 13, 1000]) {
      const { out, counter } = scanned(body, size);
      expect(out).not.toContain('0123456789abcdef');
      expect(out).toContain('"v":"v2"');
      expect(Buffer.byteLength(out)).toBe(Buffer.byteLength(body));
      expect(counter.entries()).toEqual([{ entity: 'credential', rule: 'builtin:injected_credential', count: 2 }]);
    }
  });

  it('holds back only bytes that could begin the credential', () => {
    const counter = new MaskingCounter();
    const scanner = new CredentialScanner(injectedCredentials({ authorization: `Bearer ${TOKEN}` }), counter);
    expect(scanner.push(Buffer.from('data: {"x":1}\n\n')).toString()).toBe('data: {"x":1}\n\n');
    expect(scanner.push(Buffer.from('data: sk-li')).toString()).toBe('data: ');
  });
});
