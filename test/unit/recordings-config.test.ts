import { describe, expect, it } from 'vitest';
import { recordingsSchema } from '../../server/config/recordings-schema.js';

describe('storage.recordings', () => {
  it('takes a bucket or a shared directory', () => {
    expect(recordingsSchema.parse({ type: 's3', bucket: 'sluice-recordings', prefix: 'eu/', endpoint: 'http://127.0.0.1:9000' })).toEqual({ type: 's3', bucket: 'sluice-recordings', prefix: 'eu/', endpoint: 'http://127.0.0.1:9000', force_path_style: false });
    expect(recordingsSchema.parse({ type: 'dir', path: '/mnt/recordings' })).toEqual({ type: 'dir', path: '/mnt/recordings' });
  });

  it('refuses credentials in the config, naming the default chain', () => {
    for (const key of ['access_key_id', 'secret_access_key', 'aws_session_token', 'credentials']) {
      const result = recordingsSchema.safeParse({ type: 's3', bucket: 'sluice-recordings', [key]: 'AKIA...' });
      expect(result.success, key).toBe(false);
      expect(result.error?.issues.some((i) => i.path[0] === key && /AWS default chain/.test(i.message)), key).toBe(true);
    }
  });

  it('refuses a prefix that leaves the key space or a bucket name S3 would refuse', () => {
    for (const prefix of ['../x', '/abs', 'a//b', '.hidden/']) expect(recordingsSchema.safeParse({ type: 's3', bucket: 'sluice-recordings', prefix }).success, prefix).toBe(false);
    expect(recordingsSchema.safeParse({ type: 's3', bucket: 'Upper_Case' }).success).toBe(false);
    expect(recordingsSchema.safeParse({ type: 'ftp', path: 'x' }).success).toBe(false);
  });
});
