import { describe, expect, it } from 'vitest';
import { compileProfile } from '../../server/masking/compiled-profile.js';
import { GrpcMessageMasker } from '../../server/masking/grpc-message-masker.js';
import { MaskingCounter } from '../../server/masking/masking-summary.js';
import { maskingProfileSchema } from '../../server/masking/profile-schema.js';
import { loadGrpcDescriptors } from '../../server/protocols/grpc/grpc-descriptors.js';
import { messageJson } from '../../server/protocols/grpc/grpc-message-json.js';

const kserve = loadGrpcDescriptors(['kserve-v2'], process.cwd());
const infer = kserve.method('/inference.GRPCInferenceService/ModelInfer')!;
const stream = kserve.method('/inference.GRPCInferenceService/ModelStreamInfer')!;

function masker(o: { streamed: boolean; profile?: Record<string, unknown> }): { masker: GrpcMessageMasker; counter: MaskingCounter } {
  const counter = new MaskingCounter();
  const profile = compileProfile('pii', maskingProfileSchema.parse({ detectors: ['email'], ...o.profile }), {});
  const type = o.streamed ? stream.responseType : infer.responseType;
  return { masker: new GrpcMessageMasker({ type, profile, counter, streamed: o.streamed }), counter };
}

function inferResponse(fields: Record<string, unknown>): Uint8Array {
  return infer.responseType.encode(infer.responseType.fromObject(fields)).finish();
}

function tokenMessage(token: string): Uint8Array {
  const t = stream.responseType;
  return t.encode(t.fromObject({ infer_response: { model_name: 'm', outputs: [{ name: 'text_output', datatype: 'BYTES', contents: { bytes_contents: [Buffer.from(token)] } }] } })).finish();
}

function tokenOf(payload: Uint8Array): string {
  const json = messageJson(stream.responseType, payload) as { infer_response: { outputs: { contents: { bytes_contents: string[] } }[] } };
  return Buffer.from(json.infer_response.outputs[0]!.contents.bytes_contents[0]!, 'base64').toString();
}

describe('GrpcMessageMasker', () => {
  it('replaces json_keys fields by name and json_paths matches whole, and masks other strings with the text rules', () => {
    const { masker: m, counter } = masker({ streamed: false, profile: { json_keys: ['model_version'], json_paths: ['$.id'] } });
    const out = messageJson(infer.responseType, m.mask(inferResponse({ model_name: 'a@b.example', model_version: '7', id: 'x-1' })));
    expect(out).toMatchObject({ model_name: '[EMAIL]', model_version: '[MODEL_VERSION]', id: '[JSON_PATH]' });
    expect(counter.entries().map((e) => e.rule).sort()).toEqual(['detector:email', 'json_key:model_version', 'json_path:$.id']);
  });

  it('holds the tail of a streamed token channel and sends it at the end as a copy of the last message', () => {
    const { masker: m } = masker({ streamed: true });
    const sent = ['hi ', 'jane.doe@exam', 'ple.com'].map((t) => tokenOf(m.mask(tokenMessage(t))));
    expect(sent.join('')).toBe('hi ');
    const tail = m.end();
    expect(tail).toHaveLength(1);
    expect(tokenOf(tail[0]!)).toBe('[EMAIL]');
    expect(m.end()).toEqual([]);
  });

  it('refuses bytes that are not a message of the type (ERR_MASKING_BLOCKED)', () => {
    const { masker: m } = masker({ streamed: false });
    expect(() => m.mask(Buffer.from([0x0a, 0xff, 0xff, 0xff]))).toThrow(expect.objectContaining({ code: 'ERR_MASKING_BLOCKED' }));
  });
});
