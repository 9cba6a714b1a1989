/**
 * Loading the configuration: YAML with positions, `${VAR}` substitution, validation against
 * {@link configSchema}, and every problem reported at once as `FILE:LINE:COL: message`.
 */
import { readFile } from 'node:fs/promises';
import { LineCounter, isMap, isScalar, parseDocument, type Document } from 'yaml';
import type { z } from 'zod';
import { maskEnvReferences, type EnvLookup } from './env-substitution.js';
import { configSchema, type Config } from './schema.js';
import { explainZodIssue, type ExplainedIssue } from './zod-issues.js';
import { findPair, nodesAlong, pathKey, startOf, yamlToData, type DataPath, type YamlData } from './yaml-to-data.js';

/** One problem in a configuration file; `line` and `col` are 1-based. */
export interface ConfigIssue {
  file: string;
  line: number;
  col: number;
  message: string;
}

/** A validated, deep-frozen configuration, or every problem found, sorted by position. */
export type LoadResult =
  | { ok: true; config: Readonly<Config>; file: string }
  | { ok: false; issues: ConfigIssue[] };

/**
 * Parses, substitutes and validates configuration text. Pure: no I/O, no side effects.
 *
 * - YAML syntax errors, warnings and duplicate keys are issues at their positions; after a syntax
 *   error nothing else is checked, since the rest of the tree cannot be trusted.
 * - `${VAR}`, `${VAR:-default}` and `$${` (a literal `${`) are substituted in string values after
 *   parsing (references are masked while parsing, so `{password: ${PW}}` is valid flow YAML); an
 *   unset variable without a default is an issue at its scalar. A substituted value is a
 *   string, or a number / boolean where the schema asks for one (`port: ${PG_PORT}`).
 * - Validation issues point at the offending value, at the unknown key itself, or at the map that
 *   lacks a required key.
 *
 * @param file shown in issues and returned on success; not read.
 * @param env where `${VAR}` is looked up.
 */
export function loadConfigText(text: string, file: string, env: EnvLookup): LoadResult {
  const lineCounter = new LineCounter();
  const { masked, unmask } = maskEnvReferences(text);
  const doc = parseDocument(masked, { lineCounter, prettyErrors: false, uniqueKeys: false });
  const issues: ConfigIssue[] = [];
  const report = (offset: number, message: string) => {
    const { line, col } = lineCounter.linePos(offset);
    issues.push({ file, line, col, message });
  };

  for (const error of doc.errors) report(error.pos[0], `invalid YAML: ${lowerFirst(unmask(error.message))}`);
  for (const warning of doc.warnings) report(warning.pos[0], `YAML: ${lowerFirst(unmask(warning.message))}`);
  if (doc.errors.length > 0) return failed(issues);

  const tree = yamlToData(doc, env, unmask);
  for (const p of tree.problems) report(p.offset, p.message);

  let result = configSchema.safeParse(tree.data, { reportInput: true });
  if (!result.success && coerceSubstituted(result.error.issues, doc, tree, unmask)) {
    result = configSchema.safeParse(tree.data, { reportInput: true });
  }
  if (result.success) {
    if (issues.length > 0) return failed(issues);
    return { ok: true, config: deepFreeze(result.data), file };
  }
  for (const issue of result.error.issues) {
    for (const explained of explainZodIssue(issue)) {
      if (explained.target.kind === 'value' && tree.failedPaths.has(pathKey(explained.path))) continue;
      report(offsetOf(doc, explained, unmask), explained.message);
    }
  }
  return failed(issues);
}

/**
 * Reads and loads a configuration file. A file that cannot be read is a single issue at 1:1.
 * @param env where `${VAR}` is looked up; defaults to `process.env`.
 */
export async function loadConfigFile(file: string, env: EnvLookup = process.env): Promise<LoadResult> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    return { ok: false, issues: [{ file, line: 1, col: 1, message: describeReadError(err) }] };
  }
  // An empty file is never a configuration anybody meant: it is a truncated or half-written file
  // (an editor or a deploy tool mid-write), and applying it on reload would drop every route.
  if (!/^\s*[^\s#]/m.test(text)) {
    return { ok: false, issues: [{ file, line: 1, col: 1, message: 'the configuration file is empty (only whitespace and comments); refusing it' }] };
  }
  return loadConfigText(text, file, env);
}

/** One issue a line, `FILE:LINE:COL: message`, like a compiler; no trailing newline. */
export function formatIssues(issues: readonly ConfigIssue[]): string {
  return issues.map((i) => `${i.file}:${i.line}:${i.col}: ${i.message}`).join('\n');
}

function failed(issues: ConfigIssue[]): LoadResult {
  const seen = new Set<string>();
  const unique = issues.filter((i) => {
    const key = `${i.line}:${i.col}:${i.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  unique.sort((a, b) => a.line - b.line || a.col - b.col);
  return { ok: false, issues: unique };
}

type Unmask = (text: string) => string;

function offsetOf(doc: Document, explained: ExplainedIssue, unmask: Unmask): number {
  const { path, target } = explained;
  const chain = nodesAlong(doc, path, unmask);
  if (target.kind === 'key') {
    const map = chain[path.length];
    const pair = isMap(map) ? findPair(map, target.key, unmask) : undefined;
    return startOf(pair?.key ?? chain.at(-1));
  }
  if (target.kind === 'parent') return startOf(chain[Math.min(chain.length, path.length) - 1]);
  return startOf(chain.at(-1));
}

/**
 * Where validation wanted a number or boolean and found a string that came from `${VAR}`, converts
 * it (in `tree.data`) if it reads as one. Returns true when anything changed.
 */
function coerceSubstituted(issues: readonly z.core.$ZodIssue[], doc: Document, tree: YamlData, unmask: Unmask): boolean {
  let changed = false;
  for (const issue of issues) {
    if (issue.code !== 'invalid_type' || typeof issue.input !== 'string') continue;
    const path: DataPath = issue.path.map((p) => (typeof p === 'number' ? p : String(p)));
    const node = nodesAlong(doc, path, unmask)[path.length];
    if (!isScalar(node) || !tree.substituted.has(node)) continue;
    const value = coerce(issue.input, issue.expected);
    if (value !== undefined && setAt(tree.data, path, value)) changed = true;
  }
  return changed;
}

function coerce(text: string, expected: string): number | boolean | undefined {
  const trimmed = text.trim();
  if ((expected === 'number' || expected === 'int') && /^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$/.test(trimmed)) {
    return Number(trimmed);
  }
  if (expected === 'boolean' && (trimmed === 'true' || trimmed === 'false')) return trimmed === 'true';
  return undefined;
}

function setAt(data: unknown, path: DataPath, value: unknown): boolean {
  let target: unknown = data;
  for (const segment of path.slice(0, -1)) {
    if (typeof target !== 'object' || target === null) return false;
    target = (target as Record<string | number, unknown>)[segment];
  }
  const last = path[path.length - 1];
  if (typeof target !== 'object' || target === null || last === undefined) return false;
  Object.defineProperty(target, last, { value, enumerable: true, writable: true, configurable: true });
  return true;
}

function deepFreeze<T>(value: T): Readonly<T> {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const key of Reflect.ownKeys(value)) deepFreeze((value as Record<PropertyKey, unknown>)[key]);
  }
  return value;
}

function lowerFirst(text: string): string {
  return text.charAt(0).toLowerCase() + text.slice(1);
}

function describeReadError(err: unknown): string {
  const code = typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : '';
  switch (code) {
    case 'ENOENT':
      return 'cannot read the configuration file: it does not exist';
    case 'EACCES':
    case 'EPERM':
      return 'cannot read the configuration file: permission denied';
    case 'EISDIR':
      return 'cannot read the configuration file: it is a directory';
    default:
      return `cannot read the configuration file: ${err instanceof Error ? err.message : String(err)}`;
  }
}
