import { isUtf8 } from 'node:buffer';
import { JSONPath } from 'jsonpath-plus';
import protobuf from 'protobufjs';
import { SluiceError } from '../../shared/errors.js';
import { decodedMessageJson } from '../protocols/grpc/grpc-message-json.js';
import { labelOf, type CompiledProfile, type JsonRuleEntry } from './compiled-profile.js';
import { joinBytesTensor, splitBytesTensor } from './grpc-bytes-tensor.js';
import { maskString } from './json-masker.js';
import type { MaskingCounter } from './masking-summary.js';
import { replacementFor } from './replacement.js';
import { TextChannel } from './text-masker.js';

/** Bound on the token channels of one streamed response (outputs × elements). */
const MAX_CHANNELS = 1024;

/** Fields of a KServe-shaped message whose entries are the raw form of the tensors listed beside them. */
const RAW_TENSORS: Readonly<Record<string, string>> = { raw_output_contents: 'outputs', raw_input_contents: 'inputs' };

type Decoded = Record<string, unknown>;

/** Where a value sits in the message: its JSON pointer (json_paths), its JSONPath (selectors), its channel key. */
interface Place {
  readonly pointer: string;
  readonly path: string;
  /** Its stream channel: the path with tensors named by their `name`, so a token keeps its channel across messages. */
  readonly channel: string;
}

/** A rule that replaces a value whole: a `json_paths` match, or a `json_keys` field name. */
interface WholeRule {
  readonly entity: string;
  readonly rule: string;
  readonly label: string;
  readonly entry: JsonRuleEntry;
}

/** Options of a `GrpcMessageMasker`. */
export interface GrpcMessageMaskerOptions {
  /** The message type of the direction masked (the method's response type). */
  readonly type: protobuf.Type;
  readonly profile: CompiledProfile;
  readonly counter: MaskingCounter;
  /**
   * A server-streamed response: its BYTES tensor elements (the tokens) are one text per tensor element
   * across messages, masked with a stream's hold-back, so a value split over two messages never leaves in part.
   */
  readonly streamed: boolean;
}

/**
 * Masks decoded gRPC messages of one call: every string field and every BYTES element (`bytes` fields,
 * and the elements of raw BYTES tensors) that is valid UTF-8 through the profile's text rules and
 * selectors; `json_keys` replace the values of fields of that name, `json_paths` the values they match in
 * the message's JSON form (as policy and the recording show it). Masked messages are encoded again, so
 * lengths (tensor elements, nested messages) are rewritten; fields the descriptors do not define are
 * dropped, since they could not be masked. Numbers, booleans and bytes that are not text pass unchanged.
 */
export class GrpcMessageMasker {
  readonly #o: GrpcMessageMaskerOptions;
  readonly #channels = new Map<string, TextChannel>();
  /** Per channel, the last masked message it appeared in: where its held-back tail is sent at the end. */
  readonly #lastOf = new Map<string, Buffer>();
  readonly #pathHits = new Map<string, WholeRule>();

  constructor(options: GrpcMessageMaskerOptions) {
    this.#o = options;
  }

  /** The masked message (uncompressed bytes) of `payload`; throws ERR_MASKING_BLOCKED when it is not a message of the type. */
  mask(payload: Uint8Array): Buffer {
    const { type, profile } = this.#o;
    let message: Decoded;
    try {
      message = type.decode(payload) as unknown as Decoded;
    } catch (err) {
      throw undecodable(type, (err as Error).message);
    }
    this.#pathHits.clear();
    if (profile.jsonPaths.length > 0) this.#findPaths(decodedMessageJson(type, message as unknown as protobuf.Message));
    const seen = new Set<string>();
    this.#message(type, message, { pointer: '', path: '$', channel: '' }, undefined, seen);
    const out = Buffer.from(type.encode(message as unknown as protobuf.Message).finish());
    for (const key of seen) this.#lastOf.set(key, out);
    return out;
  }

  /**
   * The messages that carry what the stream channels still hold back, once the response has ended: each a
   * copy of the last message its channels appeared in, every token slot emptied but theirs (its other fields
   * repeat, already masked). Empty when nothing is held.
   */
  end(): Buffer[] {
    const tails = new Map<string, string>();
    for (const [key, channel] of this.#channels) {
      const tail = channel.end();
      if (tail !== '') tails.set(key, tail);
    }
    const out: Buffer[] = [];
    const byMessage = new Map<Buffer, Map<string, string>>();
    for (const [key, tail] of tails) {
      const last = this.#lastOf.get(key)!;
      let group = byMessage.get(last);
      if (group === undefined) byMessage.set(last, (group = new Map()));
      group.set(key, tail);
    }
    const { type } = this.#o;
    for (const [last, group] of byMessage) {
      const message = type.decode(last) as unknown as Decoded;
      this.#fill(type, message, '', group);
      out.push(Buffer.from(type.encode(message as unknown as protobuf.Message).finish()));
    }
    return out;
  }

  #findPaths(json: Record<string, unknown>): void {
    for (const entry of this.#o.profile.jsonPaths) {
      // Script filters are refused at config load; eval off keeps it that way whatever the library's default.
      const pointers = JSONPath({ path: entry.name, json, resultType: 'pointer', eval: false, wrap: true }) as string[];
      for (const p of pointers) {
        if (!this.#pathHits.has(p)) this.#pathHits.set(p, { entity: 'json_path', rule: `json_path:${entry.name}`, label: 'JSON_PATH', entry });
      }
    }
  }

  #keyRule(name: string): WholeRule | undefined {
    const entry = this.#o.profile.jsonKeys.get(name.toLowerCase());
    return entry === undefined ? undefined : { entity: entry.name, rule: `json_key:${entry.name}`, label: labelOf(entry.name), entry };
  }

  #message(type: protobuf.Type, message: Decoded, at: Place, whole: WholeRule | undefined, seen: Set<string>): void {
    for (const field of type.fieldsArray) {
      if (!Object.prototype.hasOwnProperty.call(message, field.name)) continue;
      const value = message[field.name];
      if (value === null || value === undefined) continue;
      const place = child(at, field.name, field.name);
      const rule = whole ?? this.#pathHits.get(place.pointer) ?? this.#keyRule(field.name);
      const tensors = RAW_TENSORS[field.name];
      if (tensors !== undefined && field.repeated && field.type === 'bytes') {
        message[field.name] = this.#rawTensors(value as Uint8Array[], message[tensors], place, rule, seen);
        continue;
      }
      if (field.map) {
        const entries = value as Record<string, unknown>;
        for (const key of Object.keys(entries)) {
          const inner = child(place, key, key);
          entries[key] = this.#value(field, entries[key], inner, rule ?? this.#pathHits.get(inner.pointer) ?? this.#keyRule(key), seen);
        }
      } else if (field.repeated) {
        const items = value as unknown[];
        for (let i = 0; i < items.length; i++) {
          const item = items[i];
          const name = isDecoded(item) && typeof item.name === 'string' && item.name !== '' ? item.name : String(i);
          const inner: Place = { pointer: `${place.pointer}/${i}`, path: `${place.path}[${i}]`, channel: `${place.channel}[${name}]` };
          items[i] = this.#value(field, item, inner, rule ?? this.#pathHits.get(inner.pointer), seen);
        }
      } else {
        message[field.name] = this.#value(field, value, place, rule, seen);
      }
    }
  }

  #value(field: protobuf.Field, value: unknown, at: Place, rule: WholeRule | undefined, seen: Set<string>): unknown {
    if (field.resolvedType instanceof protobuf.Type) {
      if (isDecoded(value)) this.#message(field.resolvedType, value, at, rule, seen);
      return value;
    }
    if (field.type === 'string') {
      if (typeof value !== 'string' || value === '') return value;
      if (rule !== undefined) return this.#replace(rule, value);
      return maskString(value, at.path, this.#o.profile, this.#o.counter);
    }
    if (field.type === 'bytes' && value instanceof Uint8Array) return this.#bytes(value, at, rule, seen);
    return value;
  }

  /** A bytes value: masked as text when it is UTF-8, as a token of its channel when the response streams. */
  #bytes(value: Uint8Array, at: Place, rule: WholeRule | undefined, seen: Set<string>): Uint8Array {
    const streamed = this.#o.streamed;
    if (!isUtf8(value)) {
      if (!streamed) return value;
      // Not text: what the channel held goes out before it, and the channel starts again after it.
      const channel = this.#channels.get(at.channel);
      const held = channel === undefined ? '' : channel.end();
      if (channel !== undefined) seen.add(at.channel);
      return held === '' ? value : Buffer.concat([Buffer.from(held, 'utf8'), value]);
    }
    if (value.length === 0 && !streamed) return value;
    const text = Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('utf8');
    if (rule !== undefined) return Buffer.from(this.#replace(rule, text), 'utf8');
    if (!streamed) return Buffer.from(maskString(text, at.path, this.#o.profile, this.#o.counter), 'utf8');
    seen.add(at.channel);
    return Buffer.from(this.#channel(at.channel).push(text), 'utf8');
  }

  /** The raw tensors of a message, each a BYTES tensor's elements masked one by one; tensors of other types unchanged. */
  #rawTensors(raws: Uint8Array[], tensors: unknown, at: Place, rule: WholeRule | undefined, seen: Set<string>): Uint8Array[] {
    const listed = Array.isArray(tensors) ? tensors : [];
    return raws.map((raw, i) => {
      const tensor: unknown = listed[i];
      if (!isDecoded(tensor) || tensor.datatype !== 'BYTES') return raw;
      const elements = splitBytesTensor(raw);
      if (elements === null) throw undecodable(this.#o.type, `raw tensor ${i} is not a list of length-prefixed BYTES elements`);
      const name = typeof tensor.name === 'string' && tensor.name !== '' ? tensor.name : String(i);
      const inner: Place = { pointer: `${at.pointer}/${i}`, path: `${at.path}[${i}]`, channel: `${at.channel}[${name}]` };
      const tensorRule = rule ?? this.#pathHits.get(inner.pointer);
      return joinBytesTensor(elements.map((e, j) => this.#bytes(e, { pointer: inner.pointer, path: `${inner.path}[${j}]`, channel: `${inner.channel}[${j}]` }, tensorRule, seen)));
    });
  }

  #channel(key: string): TextChannel {
    let channel = this.#channels.get(key);
    if (channel === undefined) {
      if (this.#channels.size >= MAX_CHANNELS) {
        throw new SluiceError('ERR_MASKING_BLOCKED', { message: `The streamed gRPC response has more than ${MAX_CHANNELS} token channels to mask` });
      }
      channel = new TextChannel(this.#o.profile.text, this.#o.counter);
      this.#channels.set(key, channel);
    }
    return channel;
  }

  #replace(rule: WholeRule, value: string): string {
    this.#o.counter.add(rule.entity, rule.rule);
    return replacementFor(value, rule.label, rule.entry.replacement);
  }

  /** Writes each channel's tail into its slot of a copy of a message, and empties every other token slot. */
  #fill(type: protobuf.Type, message: Decoded, channelAt: string, tails: Map<string, string>): void {
    for (const field of type.fieldsArray) {
      if (!Object.prototype.hasOwnProperty.call(message, field.name)) continue;
      const value = message[field.name];
      const channel = `${channelAt}.${field.name}`;
      const slot = (key: string): Buffer => {
        const tail = tails.get(key);
        tails.delete(key);
        return Buffer.from(tail ?? '', 'utf8');
      };
      const tensors = RAW_TENSORS[field.name];
      if (tensors !== undefined && field.repeated && field.type === 'bytes') {
        const listed = (message[tensors] ?? []) as unknown[];
        message[field.name] = (value as Uint8Array[]).map((raw, i) => {
          const tensor = listed[i];
          if (!isDecoded(tensor) || tensor.datatype !== 'BYTES') return raw;
          const name = typeof tensor.name === 'string' && tensor.name !== '' ? tensor.name : String(i);
          const elements = splitBytesTensor(raw) ?? [];
          return joinBytesTensor(elements.map((_e, j) => slot(`${channel}[${name}][${j}]`)));
        });
        continue;
      }
      if (field.map) continue;
      const items = field.repeated ? (value as unknown[]) : [value];
      items.forEach((item, i) => {
        const name = isDecoded(item) && typeof item.name === 'string' && item.name !== '' ? item.name : String(i);
        const key = field.repeated ? `${channel}[${name}]` : channel;
        if (field.resolvedType instanceof protobuf.Type && isDecoded(item)) this.#fill(field.resolvedType, item, key, tails);
        else if (field.type === 'bytes' && item instanceof Uint8Array) {
          if (field.repeated) items[i] = slot(key);
          else message[field.name] = slot(key);
        }
      });
    }
  }
}

function child(at: Place, name: string, pointerName: string): Place {
  return {
    pointer: `${at.pointer}/${pointerName.replace(/~/g, '~0').replace(/\//g, '~1')}`,
    path: /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(name) ? `${at.path}.${name}` : `${at.path}[${JSON.stringify(name)}]`,
    channel: `${at.channel}.${name}`,
  };
}

function isDecoded(value: unknown): value is Decoded {
  return value !== null && typeof value === 'object' && !(value instanceof Uint8Array) && !Array.isArray(value);
}

/** A message masking cannot read is never sent: it could carry anything. */
function undecodable(type: protobuf.Type, reason: string): SluiceError {
  return new SluiceError('ERR_MASKING_BLOCKED', { message: `A gRPC message cannot be masked: it is not a ${type.fullName.slice(1)} message (${reason})` });
}
