// Child process (forked by bench/grpc.js): a KServe v2 model on grpc-js, h2c on 127.0.0.1:0. ModelInfer
// answers a fixed small response at once; ModelStreamInfer answers BENCH_GRPC_TOKENS token messages.
// Reports `{type: 'ready', address}` over IPC and exits on "shutdown" or a lost parent.
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const PROTO = fileURLToPath(new URL('../server/protocols/grpc/kserve-v2.proto', import.meta.url));
const tokens = Number(process.env.BENCH_GRPC_TOKENS ?? 20);
const definition = protoLoader.loadSync(PROTO, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
const { inference } = grpc.loadPackageDefinition(definition);

const output = (text) => ({ name: 'text_output', datatype: 'BYTES', shape: [1], contents: { bytes_contents: [Buffer.from(text)] } });
const server = new grpc.Server();
server.addService(inference.GRPCInferenceService.service, {
  ModelInfer: (call, done) => done(null, { model_name: call.request.model_name, model_version: '1', id: call.request.id, outputs: [output('HELLO')] }),
  ModelStreamInfer: (call) => {
    call.on('data', (request) => {
      for (let i = 0; i < tokens; i++) call.write({ error_message: '', infer_response: { model_name: request.model_name, id: request.id, outputs: [output(`t${i} `)] } });
    });
    call.on('end', () => call.end());
  },
});
server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) {
    process.send?.({ type: 'error', message: String(err) });
    process.exit(1);
  }
  process.send?.({ type: 'ready', address: `127.0.0.1:${port}` });
});
const stop = () => {
  server.forceShutdown();
  process.exit(0);
};
process.on('message', (msg) => msg?.type === 'shutdown' && stop());
process.on('disconnect', stop);
process.on('SIGTERM', stop);
