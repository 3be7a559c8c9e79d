import { describe, expect, it } from 'vitest';
import { normaliseRequestTarget, type PathRule } from '../../server/pipeline/normalise-path.js';
import { checkRequestPath, requestPathFor } from '../../server/pipeline/request-path.js';
import { forwardedPath, upstreamTargetOf } from '../../server/pipeline/upstream-target.js';
import type { HttpConnectionConfig } from '../../server/config/schema.js';

function refusal(fn: () => unknown): { code: string; rule: string; message: string } {
  try {
    fn();
  } catch (err) {
    const e = err as { code: string; details?: { rule?: string }; message: string };
    return { code: e.code, rule: e.details?.rule ?? '', message: e.message };
  }
  throw new Error('expected a refusal');
}

describe('normaliseRequestTarget', () => {
  it.each([
    ['/', '/'],
    ['/v1/chat/completions', '/v1/chat/completions'],
    ['/%61dmin/users', '/admin/users'],
    ['//admin/users', '/admin/users'],
    ['/v1///models', '/v1/models'],
    ['/v1/models/', '/v1/models/'],
    ['/a/%2e%2e/b', '/b'],
    ['/a/.%2e/b', '/b'],
    ['/a/%2e./b', '/b'],
    ['/a/%2E%2E/b', '/b'],
    ['/a/../b', '/b'],
    ['/./secret.txt', '/secret.txt'],
    ['/a/.', '/a/'],
    ['/a/..', '/'],
    ['/a/%252e%252e/b', '/a/%252e%252e/b'],
    ['/a%7e%7E%41%2D%5f', '/a~~A-_'],
    ['/a%3fb%23c', '/a%3Fb%23c'],
    ['/name%20with%20spaces', '/name%20with%20spaces'],
    ['/caf%c3%a9', '/caf%C3%A9'],
    ['/a"{|}', '/a%22%7B%7C%7D'],
    ['/v1/a..b/c...', '/v1/a..b/c...'],
    ['/v1/.well-known', '/v1/.well-known'],
  ])('%s becomes %s', (target, normal) => {
    expect(normaliseRequestTarget(target)).toBe(normal);
    // Normal form is a fixed point: normalising again changes nothing.
    expect(normaliseRequestTarget(normal)).toBe(normal);
  });

  it('leaves the query exactly as sent', () => {
    expect(normaliseRequestTarget('/%61/../v1/files?path=../%2fetc%2Fpasswd&x=%61')).toBe('/v1/files?path=../%2fetc%2Fpasswd&x=%61');
    expect(normaliseRequestTarget('/?q=1')).toBe('/?q=1');
  });

  it.each<[string, PathRule]>([
    ['/files/..%2fsecret.txt', 'encoded-slash'],
    ['/files/%2e%2e%2fsecret.txt', 'encoded-slash'],
    ['/files/a/..%2f..%2fsecret.txt', 'encoded-slash'],
    ['/files/a%2Fb', 'encoded-slash'],
    ['/files/%5c..%5csecret.txt', 'backslash'],
    ['/files/\\..\\secret.txt', 'backslash'],
    ['/files/%00', 'control-character'],
    ['/files/a%0d%0aX-Injected:%20yes', 'control-character'],
    ['/files/a\tb', 'control-character'],
    ['/files/%7f', 'control-character'],
    ['/files/%c0%ae%c0%ae/secret.txt', 'invalid-utf8'],
    ['/files/%ff', 'invalid-utf8'],
    ['/files/\u00e9', 'invalid-utf8'],
    ['/files/%zz', 'malformed-escape'],
    ['/files/%4', 'malformed-escape'],
    ['/files/..;/secret.txt', 'dot-segment-parameters'],
    ['/files/.;x/secret.txt', 'dot-segment-parameters'],
    ['/..', 'above-root'],
    ['/../secret.txt', 'above-root'],
    ['/%2e%2e/secret.txt', 'above-root'],
    ['/a/../../secret.txt', 'above-root'],
    ['/a/%2e%2e/%2e%2e/secret.txt', 'above-root'],
    ['*', 'origin-form'],
    ['http://evil.example/v1/models', 'origin-form'],
    ['evil.example:443', 'origin-form'],
    ['', 'origin-form'],
  ])('refuses %j (%s)', (target, rule) => {
    const r = refusal(() => normaliseRequestTarget(target));
    expect(r.code).toBe('ERR_PATH_REFUSED');
    expect(r.rule).toBe(rule);
  });

  it('names the broken rule in its message', () => {
    expect(refusal(() => normaliseRequestTarget('/a%2Fb')).message).toMatch(/encoded slash.*allow_encoded_slashes/);
    expect(refusal(() => normaliseRequestTarget('/../x')).message).toMatch(/climbs above its root/);
    expect(refusal(() => normaliseRequestTarget('http://evil/')).message).toMatch(/absolute-form/);
  });

  describe('with encoded slashes allowed', () => {
    const allow = { allowEncodedSlashes: true };

    it('keeps %2F encoded, in upper case, and still normalises the rest', () => {
      expect(normaliseRequestTarget('/models/org%2fname/%2e/x', allow)).toBe('/models/org%2Fname/x');
      expect(normaliseRequestTarget('//models/org%2Fname', allow)).toBe('/models/org%2Fname');
    });

    it.each<[string, PathRule]>([
      ['/files/..%2fsecret.txt', 'dot-segment-encoded-slash'],
      ['/files/%2e%2e%2fsecret.txt', 'dot-segment-encoded-slash'],
      ['/files/a/..%2f..%2fsecret.txt', 'dot-segment-encoded-slash'],
      ['/files/a%2f.%2fb', 'dot-segment-encoded-slash'],
      ['/files/a%2F..', 'dot-segment-encoded-slash'],
      ['/files/%5c..%5c', 'backslash'],
      ['/../x', 'above-root'],
    ])('never lets a segment climb: refuses %j (%s)', (target, rule) => {
      expect(refusal(() => normaliseRequestTarget(target, allow)).rule).toBe(rule);
    });
  });
});

describe('requestPathFor and checkRequestPath', () => {
  it('apply the connection’s allow_encoded_slashes', () => {
    expect(refusal(() => requestPathFor('/a%2Fb', { allow_encoded_slashes: false })).rule).toBe('encoded-slash');
    expect(requestPathFor('/a%2fb', { allow_encoded_slashes: true })).toBe('/a%2Fb');
  });

  it('the pipeline refuses a path that did not go through normalisation', () => {
    for (const path of ['/v1/%2e%2e/admin', '//admin', '/%61dmin', '/a/./b', 'http://evil/v1/models', '*', '/a%2fb']) {
      expect(refusal(() => checkRequestPath(path)).code).toBe('ERR_PATH_REFUSED');
    }
    for (const path of ['/v1/models', '/v1/chat/completions?x=../y', '/', '/a%2Fb']) expect(() => checkRequestPath(path)).not.toThrow();
  });
});

describe('forwardedPath', () => {
  const connection = (upstream: string) =>
    ({ name: 'files', type: 'http', upstream, headers: {}, connect_timeout: '1s', response_timeout: '1s' }) as unknown as HttpConnectionConfig;

  it('prefixes the base path', () => {
    const target = upstreamTargetOf(connection('http://127.0.0.1:9/base/'));
    expect(forwardedPath(target, '/a/b?x=1')).toBe('/base/a/b?x=1');
    expect(forwardedPath(target, '/')).toBe('/base/');
    expect(forwardedPath(target, '/org%2Fmodel')).toBe('/base/org%2Fmodel');
  });

  it.each(['/../secret.txt', '/..%2Fsecret.txt', '/%2e%2e/secret.txt', '/a/%2e%2e%5c..%5csecret.txt', '/..;/secret.txt', '/a\\..\\..\\x', 'x', '?x'])(
    'refuses %j, which would leave the base path',
    (path) => {
      const target = upstreamTargetOf(connection('http://127.0.0.1:9/base'));
      const r = refusal(() => forwardedPath(target, path));
      expect(r).toMatchObject({ code: 'ERR_PATH_REFUSED', rule: 'outside-base' });
      expect(r.message).toContain('"/base"');
    },
  );

  it('holds with no base path too', () => {
    const target = upstreamTargetOf(connection('http://127.0.0.1:9'));
    expect(forwardedPath(target, '/v1/models')).toBe('/v1/models');
    expect(refusal(() => forwardedPath(target, '/..%2f..%2fetc')).rule).toBe('outside-base');
  });
});
