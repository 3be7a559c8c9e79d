/**
 * A KServe v2 (Open Inference Protocol) model server written with @grpc/grpc-js, and a grpc-js client of
 * it, both built from the gateway's own kserve-v2.proto. The model answers ModelInfer with a BYTES output
 * (the prompt, upper-cased) and an FP32 output, and ModelStreamInfer with one token message per word of
 * `tokens` (50 by default).
 */
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/** The gateway's own descriptors of the protocol. */
export const KSERVE_V2_PROTO_FILE = fileURLToPath(new URL('../../server/protocols/grpc/kserve-v2.proto', import.meta.url));

const definition = protoLoader.loadSync(KSERVE_V2_PROTO_FILE, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
const inference = (grpc.loadPackageDefinition(definition) as unknown as { inference: { GRPCInferenceService: grpc.ServiceClientConstructor } }).inference;

/** The KServe v2 service's client constructor. */
export const InferenceClient = inference.GRPCInferenceService;

/** A tensor as the protocol carries it (the fields the tests use). */
export interface InferTensor {
  name: string;
  datatype: string;
  shape: string[] | number[];
  contents?: { bytes_contents?: Buffer[]; fp32_contents?: number[] };
}

/** A ModelInferRequest as the tests send it. */
export interface InferRequest {
  model_name: string;
  id?: string;
  inputs: InferTensor[];
}

/** A request asking `model` about `text` (one BYTES input). */
export function inferRequest(model: string, text: string): InferRequest {
  return { model_name: model, id: 'req-1', inputs: [{ name: 'text_input', datatype: 'BYTES', shape: [1], contents: { bytes_contents: [Buffer.from(text)] } }] };
}

/** The tokens ModelStreamInfer answers with by default: 50 words. */
export const STREAM_TOKENS = Array.from({ length: 50 }, (_, i) => `token${i} `);

/** One call as the model server saw it. */
export interface ModelCall {
  readonly method: string;
  readonly metadata: Record<string, unknown>;
  readonly requests: unknown[];
  /** The call's deadline as the server knows it (milliseconds since the epoch; Infinity for none). */
  readonly deadline: number;
  /** Set when the client cancelled the call (or its deadline passed). */
  cancelled: boolean;
}

/** A running model server. */
export interface KserveModel {
  /** `127.0.0.1:PORT`. */
  readonly address: string;
  readonly calls: ModelCall[];
  close(): Promise<void>;
}

function text(request: InferRequest): string {
  return request.inputs[0]?.contents?.bytes_contents?.[0]?.toString('utf8') ?? '';
}

/** Options of the model server. */
export interface KserveModelOptions {
  /** Milliseconds between streamed tokens; default 0. */
  readonly tokenDelayMs?: number;
  /** Tokens of each streamed answer; default `STREAM_TOKENS`. */
  readonly tokens?: readonly string[];
  /** Metadata the model puts in its head and its trailers with every ModelInfer answer; default none. */
  readonly answerMetadata?: Readonly<Record<string, string>>;
}

/** Starts the model server on 127.0.0.1:0 (h2c). */
export async function startKserveModel(options: KserveModelOptions = {}): Promise<KserveModel> {
  const calls: ModelCall[] = [];
  const tokens = options.tokens ?? STREAM_TOKENS;
  const delay = options.tokenDelayMs ?? 0;
  const track = (method: string, call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>): ModelCall => {
    const deadline = call.getDeadline();
    const seen: ModelCall = { method, metadata: call.metadata.getMap(), deadline: deadline instanceof Date ? deadline.getTime() : deadline, requests: [], cancelled: false };
    calls.push(seen);
    call.on('cancelled', () => (seen.cancelled = true));
    return seen;
  };
  const server = new grpc.Server();
  server.addService(InferenceClient.service, {
    ServerLive: (_call: grpc.ServerUnaryCall<unknown, unknown>, done: grpc.sendUnaryData<unknown>) => done(null, { live: true }),
    ServerReady: (_call: grpc.ServerUnaryCall<unknown, unknown>, done: grpc.sendUnaryData<unknown>) => done(null, { ready: true }),
    ModelReady: (_call: grpc.ServerUnaryCall<unknown, unknown>, done: grpc.sendUnaryData<unknown>) => done(null, { ready: true }),
    ServerMetadata: (_call: grpc.ServerUnaryCall<unknown, unknown>, done: grpc.sendUnaryData<unknown>) => done(null, { name: 'test-kserve', version: '2', extensions: [] }),
    ModelMetadata: (call: grpc.ServerUnaryCall<{ name: string }, unknown>, done: grpc.sendUnaryData<unknown>) =>
      done(null, { name: call.request.name, versions: ['1'], platform: 'test', inputs: [], outputs: [] }),
    ModelInfer: (call: grpc.ServerUnaryCall<InferRequest, unknown>, done: grpc.sendUnaryData<unknown>) => {
      const seen = track('ModelInfer', call);
      seen.requests.push(call.request);
      if (call.request.model_name === 'broken') {
        done({ code: grpc.status.FAILED_PRECONDITION, details: 'model "broken" is not loaded' });
        return;
      }
      if (options.answerMetadata !== undefined) {
        const head = new grpc.Metadata();
        for (const [k, v] of Object.entries(options.answerMetadata)) head.set(k, v);
        call.sendMetadata(head);
      }
      const trailer = new grpc.Metadata();
      for (const [k, v] of Object.entries(options.answerMetadata ?? {})) trailer.set(k, v);
      done(null, {
        model_name: call.request.model_name,
        model_version: '1',
        id: call.request.id ?? '',
        outputs: [
          { name: 'text_output', datatype: 'BYTES', shape: [1], contents: { bytes_contents: [Buffer.from(text(call.request).toUpperCase())] } },
          { name: 'scores', datatype: 'FP32', shape: [3], contents: { fp32_contents: [0.5, 0.25, 0.125] } },
        ],
      }, trailer);
    },
    ModelStreamInfer: (call: grpc.ServerDuplexStream<InferRequest, unknown>) => {
      const seen = track('ModelStreamInfer', call);
      let running = Promise.resolve();
      call.on('data', (request: InferRequest) => {
        seen.requests.push(request);
        running = running.then(async () => {
          for (const token of tokens) {
            if (seen.cancelled) return;
            if (delay > 0) await new Promise((r) => setTimeout(r, delay));
            if (seen.cancelled) return;
            call.write({
              error_message: '',
              infer_response: { model_name: request.model_name, id: request.id ?? '', outputs: [{ name: 'text_output', datatype: 'BYTES', shape: [1], contents: { bytes_contents: [Buffer.from(token)] } }] },
            });
          }
        });
      });
      call.on('end', () => void running.then(() => call.end()));
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
  );
  return {
    address: `127.0.0.1:${port}`,
    calls,
    close: () =>
      new Promise<void>((resolve) => {
        server.tryShutdown(() => resolve());
        // Calls still open (a stream a test left) would hold a graceful shutdown forever.
        setTimeout(() => server.forceShutdown(), 1000).unref();
      }),
  };
}

/** A grpc-js client of `address` with insecure local credentials, as a user's code makes one; closed by `close`. */
export function kserveClient(address: string): grpc.Client & Record<string, (...args: unknown[]) => unknown> {
  return new InferenceClient(address, grpc.credentials.createInsecure()) as unknown as grpc.Client & Record<string, (...args: unknown[]) => unknown>;
}

/** What a unary call answered: the response, or the status it failed with. */
export type UnaryAnswer = { readonly ok: true; readonly response: Record<string, unknown> } | { readonly ok: false; readonly code: number; readonly details: string };

/** Makes a unary call and waits for its answer, whichever it is. */
export function unary(client: grpc.Client, method: string, request: unknown, options: grpc.CallOptions = {}): Promise<UnaryAnswer> {
  return new Promise((resolve) => {
    const fn = (client as unknown as Record<string, Function>)[method]!.bind(client);
    fn(request, new grpc.Metadata(), options, (err: grpc.ServiceError | null, response: Record<string, unknown>) => {
      resolve(err === null ? { ok: true, response } : { ok: false, code: err.code, details: err.details });
    });
  });
}

/** ModelStreamInfer with one request: the messages it answered and how it ended. */
export function streamInfer(client: grpc.Client, request: InferRequest): Promise<{ messages: Record<string, unknown>[]; code: number; details: string }> {
  return new Promise((resolve) => {
    const call = (client as unknown as { ModelStreamInfer(): grpc.ClientDuplexStream<unknown, Record<string, unknown>> }).ModelStreamInfer();
    const messages: Record<string, unknown>[] = [];
    call.on('data', (m: Record<string, unknown>) => messages.push(m));
    call.on('error', () => undefined);
    call.on('status', (s: grpc.StatusObject) => resolve({ messages, code: s.code, details: s.details }));
    call.write(request);
    call.end();
  });
}
