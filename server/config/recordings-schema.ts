import { z } from 'zod';

/**
 * Keys that would put a credential into the config file. Credentials for the bucket come from the AWS
 * default chain (environment, shared profile, instance or pod role) only: a key in sluice.yaml ends up in
 * backups, tickets and repositories, and would outlive its rotation.
 */
const CREDENTIAL_KEY = /^(aws_)?(access_key(_id)?|secret(_access)?_key|secret|session_token|credentials?|password|token)$/i;

/** S3's bucket naming rules (3-63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit). */
const bucketName = z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'must be an S3 bucket name: 3-63 lowercase letters, digits, "." or "-"');
/** A key prefix of plain path segments, as object names are: no `..`, no hidden or empty segments. */
const keyPrefix = z.string().regex(/^([A-Za-z0-9_-][A-Za-z0-9._-]*\/)*[A-Za-z0-9_-][A-Za-z0-9._-]*\/?$/, 'must be plain path segments (letters, digits, ".", "_", "-"), like "sluice/recordings/"');

const s3Recordings = z.strictObject({
  type: z.literal('s3'),
  bucket: bucketName,
  prefix: keyPrefix.optional(),
  region: z.string().min(1).optional(),
  /** An S3-compatible endpoint (MinIO, Ceph RGW, GCS interoperability); absent, AWS's. */
  endpoint: z.url({ protocol: /^https?$/, message: 'must be an http(s) URL' }).optional(),
  force_path_style: z.boolean().default(false),
});

const dirRecordings = z.strictObject({
  type: z.literal('dir'),
  /** A shared file system every replica mounts. */
  path: z.string().min(1),
});

/** `storage.recordings`: where sealed sessions are kept. Absent: as files under `storage.dir`. */
export const recordingsSchema = z.preprocess((value, ctx) => {
  if (typeof value === 'object' && value !== null) {
    for (const key of Object.keys(value)) {
      if (CREDENTIAL_KEY.test(key)) {
        ctx.addIssue({ code: 'custom', path: [key], message: 'credentials are never read from the config: the AWS default chain supplies them (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a shared profile, an instance or pod role)' });
      }
    }
  }
  return value;
}, z.discriminatedUnion('type', [s3Recordings, dirRecordings]));

export type RecordingsSettings = z.infer<typeof recordingsSchema>;
