/**
 * What loads what: the CLI must not load SQLite (a native addon) to start, or to verify a directory that
 * has no index, and the recording's modules must not import each other in a circle (type imports
 * included: a circle of types is a circle of concepts).
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';
import { describe, expect, it, onTestFinished } from 'vitest';
import { packageModulesLoadedAfter, PROJECT_ROOT, runTsxScript } from '../helpers/tsx-script.js';

const root = PROJECT_ROOT;

describe('the CLI and SQLite', () => {
  it('loads the CLI, and verifies a directory without an index, with no SQLite module loaded; an index loads it on demand', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sluice-graph-'));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const cli = `await import(${JSON.stringify(join(root, 'cli/main.ts'))});`;
    expect(await packageModulesLoadedAfter(cli, 'better-sqlite3')).toBe(0);

    const openIndex = (d: string): string => `
${cli}
const { openDirectoryIndex } = await import(${JSON.stringify(join(root, 'server/recording/audit-index.ts'))});
const index = await openDirectoryIndex(${JSON.stringify(d)});
await index?.close();`;
    expect(await packageModulesLoadedAfter(openIndex(dir), 'better-sqlite3')).toBe(0);

    // The check itself sees SQLite once something loads it: a directory with an index.
    await runTsxScript(`
const { SqliteStore } = await import(${JSON.stringify(join(root, 'server/store/sqlite-store.ts'))});
await new SqliteStore({ file: ${JSON.stringify(join(dir, 'index.sqlite'))} }).close();`);
    expect(await packageModulesLoadedAfter(openIndex(dir), 'better-sqlite3')).toBeGreaterThan(0);
  });
});

/** The modules under `dir`, each with the modules of `dir` it imports (statically; type imports too). */
async function importGraph(dir: string): Promise<Map<string, string[]>> {
  const files: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const path = join(d, e.name);
      if (e.isDirectory()) await walk(path);
      else if (e.name.endsWith('.ts')) files.push(path);
    }
  };
  await walk(dir);
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const source = ts.createSourceFile(file, await readFile(file, 'utf8'), ts.ScriptTarget.Latest);
    const edges: string[] = [];
    for (const statement of source.statements) {
      const specifier = (ts.isImportDeclaration(statement) || ts.isExportDeclaration(statement)) && statement.moduleSpecifier && ts.isStringLiteral(statement.moduleSpecifier) ? statement.moduleSpecifier.text : undefined;
      if (specifier === undefined || !specifier.startsWith('.')) continue;
      const target = resolve(dirname(file), specifier.replace(/\.js$/, '.ts'));
      if (target.startsWith(`${dir}/`)) edges.push(target);
    }
    graph.set(file, edges);
  }
  return graph;
}

/** Every import circle of the graph, each as the files on it. */
function circles(graph: Map<string, string[]>): string[][] {
  const found: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (file: string): void => {
    state.set(file, 'open');
    stack.push(file);
    for (const next of graph.get(file) ?? []) {
      if (state.get(next) === 'open') found.push(stack.slice(stack.indexOf(next)));
      else if (state.get(next) === undefined) visit(next);
    }
    stack.pop();
    state.set(file, 'done');
  };
  for (const file of graph.keys()) if (state.get(file) === undefined) visit(file);
  return found;
}

describe('the recording modules', () => {
  it('import each other in no circle', async () => {
    const dir = join(root, 'server/recording');
    const graph = await importGraph(dir);
    expect(graph.get(join(dir, 'recording.ts'))).toContain(join(dir, 'durable-recorder.ts'));
    expect(circles(graph).map((c) => c.map((f) => relative(dir, f)).join(' -> '))).toEqual([]);
  });

  it('the circle check finds a circle when there is one', () => {
    const graph = new Map([
      ['a', ['b']],
      ['b', ['c']],
      ['c', ['a']],
      ['d', ['a']],
    ]);
    expect(circles(graph)).toEqual([['a', 'b', 'c']]);
  });
});
