// Summarises a V8 .cpuprofile (from node --cpu-prof): top functions by self time, self time per
// package / file group, and native functions by the JS caller that reached them. Used by run.js when BENCH_PROFILE=1; also runnable on its own:
//   node bench/profile-top.js path/to/file.cpuprofile [topN]
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

function groupOf(url) {
  if (!url) return '(native/vm)';
  if (url.startsWith('node:')) return url.split('/')[0];
  const nm = url.lastIndexOf('/node_modules/');
  if (nm !== -1) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/');
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  const dist = url.indexOf('/dist/');
  if (dist !== -1) return `sluice:${url.slice(dist + 6).split('/').slice(0, 2).join('/')}`;
  return url.replace(/^file:\/\//, '');
}

export function summarizeProfile(file, topN = 15) {
  const profile = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i += 1) {
    const dt = deltas[i + 1] ?? 0; // a sample's time is the delta to the next one
    selfUs.set(samples[i], (selfUs.get(samples[i]) ?? 0) + Math.max(0, dt));
  }
  let totalUs = 0;
  let idleUs = 0;
  const fns = new Map();
  const groups = new Map();
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    totalUs += us;
    const { functionName, url, lineNumber } = node.callFrame;
    const name = functionName || '(anonymous)';
    if (name === '(idle)' || name === '(program)') {
      if (name === '(idle)') idleUs += us;
    }
    const short = url ? `${url.replace(/^.*\/(node_modules|dist)\//, '$1/').replace(/^file:\/\//, '')}:${lineNumber + 1}` : '';
    const key = `${name} ${short}`.trim();
    fns.set(key, (fns.get(key) ?? 0) + us);
    const group = url ? groupOf(url) : name;
    groups.set(group, (groups.get(group) ?? 0) + us);
  }
  const busyUs = totalUs - idleUs;
  // Native frames (writev, indexOfBuffer, …) have no file: charge each to the nearest caller outside Node's
  // own modules (sluice or a package), so a profile dominated by a syscall still says which code made it.
  const parentOf = new Map();
  for (const n of profile.nodes) for (const child of n.children ?? []) parentOf.set(child, n.id);
  const isOurs = (frame) => frame.url !== '' && !frame.url.startsWith('node:');
  const nativeCallers = new Map();
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    const name = node?.callFrame.functionName;
    if (!node || node.callFrame.url || !name || name.startsWith('(')) continue;
    let caller = byId.get(parentOf.get(id));
    for (let depth = 0; caller && !isOurs(caller.callFrame) && depth < 1000; depth += 1) caller = byId.get(parentOf.get(caller.id));
    const where = caller?.callFrame.url ? `${caller.callFrame.functionName || '(anonymous)'} ${caller.callFrame.url.replace(/^.*\/(node_modules|dist)\//, '$1/').replace(/^file:\/\//, '')}:${caller.callFrame.lineNumber + 1}` : '(only node: frames above it)';
    const key = `${name} <- ${where}`;
    nativeCallers.set(key, (nativeCallers.get(key) ?? 0) + us);
  }
  const pct = (us) => Math.round((1000 * us) / Math.max(1, busyUs)) / 10;
  const top = (map) =>
    [...map]
      .filter(([key]) => key !== '(idle)' && !key.startsWith('(idle) '))
      .sort((a, b) => b[1] - a[1])
      .slice(0, topN)
      .map(([key, us]) => ({ self_ms: Math.round(us / 100) / 10, pct_of_busy: pct(us), fn: key }));
  return {
    file,
    wall_ms: Math.round(totalUs / 1000),
    busy_ms: Math.round(busyUs / 1000),
    top_functions: top(fns),
    by_group: top(groups),
    native_callers: top(nativeCallers),
  };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write('usage: node bench/profile-top.js file.cpuprofile [topN]\n');
    process.exit(2);
  }
  process.stdout.write(`${JSON.stringify(summarizeProfile(file, Number(process.argv[3] ?? 25)), null, 2)}\n`);
}
