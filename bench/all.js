// `npm run bench`: every benchmark in one run, one JSON object on stdout ({data_path, recording, masking,
// policy, replicas, grpc, observability, capacity}); each part's progress goes to stderr. Parts run one after another so they do not share the
// two cores. BENCH_PARTS=data_path,masking picks some.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const PARTS = {
  data_path: 'run.js',
  recording: 'recording.js',
  masking: 'masking.js',
  policy: 'policy-eval.js',
  replicas: 'replicas.js',
  grpc: 'grpc.js',
  observability: 'observability.js',
  capacity: 'capacity.js',
};

const wanted = (process.env.BENCH_PARTS ?? Object.keys(PARTS).join(',')).split(',').map((p) => p.trim()).filter(Boolean);

function runPart(file) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [fileURLToPath(new URL(file, import.meta.url))], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('exit', (code) => {
      try {
        resolve(JSON.parse(out));
      } catch {
        resolve({ error: `${file} exited ${code} without JSON`, output: out.slice(0, 2000) });
      }
    });
  });
}

const result = {};
for (const part of wanted) {
  if (!(part in PARTS)) {
    result[part] = { error: `unknown part; known: ${Object.keys(PARTS).join(', ')}` };
    continue;
  }
  process.stderr.write(`[bench] ${part}\n`);
  result[part] = await runPart(PARTS[part]);
}
process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
