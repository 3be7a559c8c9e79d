import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, YAMLParseError, type Document, type Node } from 'yaml';
import { SluiceError } from '../../shared/errors.js';

/** A place in the file, counted from 1 as editors count. */
export interface YamlPosition {
  line: number;
  col: number;
}

/** Finds where a config path was written: the key of a mapping entry, or the item of a list. */
export type LocatePath = (path: readonly PropertyKey[]) => YamlPosition | undefined;

/** A parsed YAML file: its value, and where each path of it was written. */
export interface YamlText {
  value: unknown;
  locate: LocatePath;
}

/**
 * Parses YAML, keeping positions. A syntax error is ERR_CONFIG_INVALID whose message gives the line,
 * the column, the reason and the lines around it.
 */
export function parseYamlText(text: string, source: string): YamlText {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: true });
  const error = doc.errors[0];
  if (error !== undefined) throw syntaxError(error, source);
  let value: unknown;
  try {
    value = doc.toJS();
  } catch (cause) {
    // toJS refuses what parsing allows: too many alias expansions, an alias to nothing.
    throw new SluiceError('ERR_CONFIG_INVALID', {
      message: `${source}: not valid YAML: ${(cause as Error).message}`,
      details: { problems: [`YAML: ${(cause as Error).message}`] },
      cause,
    });
  }
  return { value, locate: (path) => locate(doc, lines, path) };
}

function syntaxError(error: YAMLParseError, source: string): SluiceError {
  const [first = '', ...frame] = error.message.split('\n');
  const reason = first.replace(/ at line \d+, column \d+:?$/, '');
  const at = error.linePos ? ` at line ${error.linePos[0].line}, column ${error.linePos[0].col}` : '';
  const context = frame.filter((l) => l.trim() !== '').map((l) => `  ${l}`);
  return new SluiceError('ERR_CONFIG_INVALID', {
    message: [`${source}: not valid YAML${at}: ${reason}`, ...context].join('\n'),
    details: { problems: [`YAML${at}: ${reason}`] },
    cause: error,
  });
}

/** The deepest node of `path` that the file has; undefined when not even its first step is written. */
function locate(doc: Document, lines: LineCounter, path: readonly PropertyKey[]): YamlPosition | undefined {
  let node: unknown = doc.contents;
  let found: YamlPosition | undefined;
  for (const part of path) {
    if (isAlias(node)) node = node.resolve(doc);
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(part));
      if (pair === undefined) return found;
      found = positionOf(pair.key as Node, lines) ?? found;
      node = pair.value;
    } else if (isSeq(node) && typeof part === 'number') {
      const item = node.items[part];
      if (item === undefined) return found;
      found = positionOf(item as Node, lines) ?? found;
      node = item;
    } else return found;
  }
  return found;
}

function positionOf(node: Node | null | undefined, lines: LineCounter): YamlPosition | undefined {
  const offset = node?.range?.[0];
  return offset === undefined ? undefined : lines.linePos(offset);
}
