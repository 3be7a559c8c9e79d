import type protobuf from 'protobufjs';

/**
 * How a decoded message becomes JSON for policy and the recording: the .proto's field names (the root was
 * loaded with `keepCase`), 64-bit integers and enums as strings (no precision lost), bytes as base64, and
 * proto3 defaults present, so `request.json.model_name` is "" rather than missing when the caller left it empty.
 */
const JSON_FORM: protobuf.IConversionOptions = { longs: String, enums: String, bytes: String, defaults: true, oneofs: true };

/** The message `payload` (uncompressed) of `type` as JSON; throws when the bytes are not a message of that type. */
export function messageJson(type: protobuf.Type, payload: Uint8Array): Record<string, unknown> {
  return type.toObject(type.decode(payload), JSON_FORM);
}

/** A message already decoded (`type.decode`) as the same JSON. */
export function decodedMessageJson(type: protobuf.Type, message: protobuf.Message): Record<string, unknown> {
  return type.toObject(message, JSON_FORM);
}
