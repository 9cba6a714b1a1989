/**
 * Turns a parsed YAML document into plain data for validation, substituting `${VAR}` in string values
 * on the way, and finds the YAML node behind a data path so that a validation error can be reported
 * at its line and column. Pure: no I/O, no process warnings (unlike yaml's own `toJS`).
 */
import { isAlias, isMap, isScalar, isSeq, type Document, type Pair, type Scalar, type YAMLMap } from 'yaml';
import { substituteEnv, type EnvLookup } from './env-substitution.js';

/** A path into the data, as zod reports it. */
export type DataPath = readonly (string | number)[];

/** Something wrong found while converting, at a source offset. */
export interface ConversionProblem {
  offset: number;
  message: string;
}

/** The converted document. */
export interface YamlData {
  /** Plain data: objects, arrays, strings, numbers, booleans and null. `{}` for an empty document. */
  data: unknown;
  problems: ConversionProblem[];
  /** Scalars whose value came (partly) from an environment variable. */
  substituted: ReadonlySet<Scalar>;
  /** Paths of values that could not be substituted; validation errors there would only repeat the problem. */
  failedPaths: ReadonlySet<string>;
}

/** Aliases could otherwise expand a small file into an enormous tree ("billion laughs"). */
const MAX_NODES = 100_000;

/** `routes[0].allow.groups`; keys that are not identifiers are quoted: `server["a.b"]`. */
export function formatPath(path: DataPath): string {
  let out = '';
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(segment)) out += out === '' ? segment : `.${segment}`;
    else out += `[${JSON.stringify(segment)}]`;
  }
  return out;
}

/** The key under which `path` is remembered in `failedPaths`. */
export function pathKey(path: DataPath): string {
  return JSON.stringify(path);
}

/** Start offset of a node in the source (0 when unknown). */
export function startOf(node: unknown): number {
  if (typeof node !== 'object' || node === null || !('range' in node)) return 0;
  const range: unknown = node.range;
  return Array.isArray(range) && typeof range[0] === 'number' ? range[0] : 0;
}

/**
 * Converts `doc.contents` into plain data. Map keys must be scalars and unique; aliases must name an
 * earlier anchor and may not contain themselves; string values go through {@link substituteEnv}.
 * @param unmask restores `${…}` references masked before parsing (see `maskEnvReferences`).
 */
export function yamlToData(doc: Document, env: EnvLookup, unmask: (text: string) => string = (t) => t): YamlData {
  const problems: ConversionProblem[] = [];
  const substituted = new Set<Scalar>();
  const failedPaths = new Set<string>();
  const scalarCache = new Map<Scalar, unknown>();
  const active = new Set<unknown>();
  let nodes = 0;

  const problem = (node: unknown, path: DataPath, message: string) => {
    const where = formatPath(path);
    problems.push({ offset: startOf(node), message: where === '' ? message : `${where}: ${message}` });
  };

  const scalarValue = (node: Scalar, path: DataPath): unknown => {
    if (scalarCache.has(node)) return scalarCache.get(node);
    let value: unknown = node.value;
    if (typeof value === 'string') {
      const result = substituteEnv(unmask(value), env);
      if (result.ok) {
        value = result.value;
        if (result.substituted) substituted.add(node);
      } else {
        for (const message of result.problems) problem(node, path, message);
        failedPaths.add(pathKey(path));
        value = '';
      }
    }
    scalarCache.set(node, value);
    return value;
  };

  const convertMap = (node: YAMLMap, path: DataPath): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    const seen = new Set<string>();
    for (const pair of node.items) {
      const keyNode = pair.key;
      if (!isScalar(keyNode)) {
        problem(keyNode ?? node, path, 'map keys must be plain strings');
        continue;
      }
      const key = unmask(String(keyNode.value));
      if (seen.has(key)) {
        const where = formatPath(path);
        problems.push({ offset: startOf(keyNode), message: `duplicate key ${JSON.stringify(key)}${where === '' ? '' : ` in ${where}`}` });
        continue;
      }
      seen.add(key);
      // defineProperty, not assignment: a "__proto__" key must stay an ordinary (and rejected) key.
      Object.defineProperty(out, key, { value: convert(pair.value, [...path, key]), enumerable: true, writable: true, configurable: true });
    }
    return out;
  };

  const convert = (node: unknown, path: DataPath): unknown => {
    nodes += 1;
    if (nodes === MAX_NODES + 1) problem(node, path, `the document expands to more than ${MAX_NODES} values (too many aliases)`);
    if (nodes > MAX_NODES) return null;
    if (isAlias(node)) {
      const target = node.resolve(doc);
      if (target === undefined) {
        problem(node, path, `unknown anchor "${node.source}" (an anchor must be defined before its alias)`);
        return null;
      }
      if (active.has(target)) {
        problem(node, path, `alias *${node.source} refers to a node that contains it`);
        return null;
      }
      return convert(target, path);
    }
    if (isScalar(node)) return scalarValue(node, path);
    if (isMap(node) || isSeq(node)) {
      active.add(node);
      try {
        return isMap(node) ? convertMap(node, path) : node.items.map((item, i) => convert(item, [...path, i]));
      } finally {
        active.delete(node);
      }
    }
    return null;
  };

  const data = doc.contents === null ? {} : convert(doc.contents, []);
  return { data, problems, substituted, failedPaths };
}

/** The key node of `key` in a map, if present (the first one, should it be repeated). */
export function findPair(map: YAMLMap, key: string, unmask: (text: string) => string = (t) => t): Pair | undefined {
  return map.items.find((p) => isScalar(p.key) && unmask(String(p.key.value)) === key);
}

/**
 * The chain of YAML nodes along `path`, starting with the document's contents; aliases are followed.
 * The chain is shorter than `path.length + 1` when the path leaves the document (e.g. a missing key).
 */
export function nodesAlong(doc: Document, path: DataPath, unmask: (text: string) => string = (t) => t): unknown[] {
  const chain: unknown[] = [];
  let node: unknown = doc.contents;
  const deref = (n: unknown): unknown => (isAlias(n) ? n.resolve(doc) : n);
  node = deref(node);
  if (node === null || node === undefined) return chain;
  chain.push(node);
  for (const segment of path) {
    let next: unknown;
    if (isMap(node) && typeof segment === 'string') {
      const pair = findPair(node, segment, unmask);
      // `key:` with nothing after it has no value, or an empty one: the key then stands for the value.
      next = pair !== undefined && isEmpty(pair.value) ? pair.key : pair?.value;
    } else if (isSeq(node) && typeof segment === 'number') next = node.items[segment];
    next = deref(next);
    if (next === null || next === undefined) break;
    chain.push(next);
    node = next;
  }
  return chain;
}

function isEmpty(node: unknown): boolean {
  if (node === null || node === undefined) return true;
  if (!isScalar(node) || node.value !== null || !Array.isArray(node.range)) return false;
  return node.range[0] === node.range[1];
}
