/**
 * Turns zod issues into messages an operator can act on, each with where in the YAML it belongs:
 * the value itself, the map that lacks a key, or an unknown key.
 */
import type { z } from 'zod';
import { formatPath, type DataPath } from './yaml-to-data.js';

/** Where an explained issue points. */
export type IssueTarget =
  | { kind: 'value' }
  | { kind: 'parent' }
  | { kind: 'key'; key: string };

/** One operator-facing problem derived from a zod issue. */
export interface ExplainedIssue {
  path: DataPath;
  target: IssueTarget;
  message: string;
}

type ZodIssue = z.core.$ZodIssue;

/** zod's built-in messages; messages written in the schema are kept as they are. */
const ZOD_DEFAULT_MESSAGE = /^(Invalid|Too (small|big)|Unrecognized)\b/;

/**
 * Explains one issue from `safeParse(data, { reportInput: true })`. An `unrecognized_keys` issue
 * becomes one entry per key; a union failure is explained by its most relevant branch.
 */
export function explainZodIssue(issue: ZodIssue, base: DataPath = []): ExplainedIssue[] {
  const path: DataPath = [...base, ...issue.path.map((p) => (typeof p === 'number' ? p : String(p)))];
  const custom = !ZOD_DEFAULT_MESSAGE.test(issue.message);
  const at = (message: string): ExplainedIssue[] => [{ path, target: { kind: 'value' }, message: prefixed(path, message) }];
  const missing = (extra = ''): ExplainedIssue[] => {
    const parent = path.slice(0, -1);
    const key = String(path[path.length - 1]);
    return [{ path, target: { kind: 'parent' }, message: prefixed(parent, `missing required key ${JSON.stringify(key)}${extra}`) }];
  };

  switch (issue.code) {
    case 'unrecognized_keys': {
      const where = path.length === 0 ? '' : ` in ${formatPath(path)}`;
      return issue.keys.map((key) => ({ path, target: { kind: 'key', key }, message: `unknown key ${JSON.stringify(key)}${where}` }));
    }
    case 'invalid_type':
      if (issue.input === undefined && path.length > 0) return missing();
      if (custom) return at(issue.message);
      return at(`expected ${typeName(issue.expected)}, got ${describe(issue.input)}${quoteHint(issue.expected, issue.input)}`);
    case 'invalid_value':
      if (custom) return at(issue.message);
      return at(issue.values.length === 1 ? `expected ${literal(issue.values[0])}` : `expected one of ${issue.values.map(literal).join(', ')}`);
    case 'too_small':
      return at(custom ? issue.message : bound(issue.origin, issue.minimum, issue.inclusive ?? true, 'least'));
    case 'too_big':
      return at(custom ? issue.message : bound(issue.origin, issue.maximum, issue.inclusive ?? true, 'most'));
    case 'invalid_union':
      return explainUnion(issue, path, base, at, missing);
    case 'invalid_format':
      return at(custom ? issue.message : `expected ${issue.format === 'regex' ? 'a value in the documented format' : `a valid ${issue.format}`}`);
    default:
      return at(issue.message);
  }
}

function explainUnion(
  issue: z.core.$ZodIssueInvalidUnion,
  path: DataPath,
  base: DataPath,
  at: (message: string) => ExplainedIssue[],
  missing: (extra?: string) => ExplainedIssue[],
): ExplainedIssue[] {
  const discriminator = issue.discriminator;
  const options = 'options' in issue ? issue.options : undefined;
  if (discriminator !== undefined && options !== undefined) {
    const choices = options.map(literal).join(', ');
    const input: unknown = issue.input;
    const present = typeof input === 'object' && input !== null && discriminator in input;
    return present ? at(`expected one of ${choices}`) : missing(` (one of ${choices})`);
  }
  const unionPath = path.slice(base.length);
  const isRootTypeError = (i: ZodIssue) => i.code === 'invalid_type' && i.path.length === 0;
  const relevant = issue.errors.find((branch) => branch.length > 0 && !branch.some(isRootTypeError));
  if (relevant !== undefined) return relevant.flatMap((i) => explainZodIssue(i, [...base, ...unionPath]));
  const expected = [
    ...new Set(issue.errors.flat().flatMap((i) => (i.code === 'invalid_type' ? [typeName(i.expected)] : []))),
  ];
  if (expected.length === 0) return at(issue.message);
  return at(`expected ${expected.join(' or ')}, got ${describe(issue.input)}`);
}

/** YAML reads `version: 1.10` or `id: 123` as numbers; quoting keeps them strings. */
function quoteHint(expected: string, input: unknown): string {
  return expected === 'string' && (typeof input === 'number' || typeof input === 'boolean') ? ' (quote it to make it a string)' : '';
}

function prefixed(path: DataPath, message: string): string {
  return path.length === 0 ? message : `${formatPath(path)}: ${message}`;
}

function literal(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}

function typeName(expected: string): string {
  switch (expected) {
    case 'object':
      return 'a map';
    case 'array':
      return 'a list';
    case 'int':
      return 'an integer';
    case 'boolean':
      return 'true or false';
    case 'string':
    case 'number':
      return `a ${expected}`;
    default:
      return expected;
  }
}

/** What the file said, without echoing the value (it may be a secret from the environment). */
function describe(input: unknown): string {
  if (input === null || input === undefined) return 'an empty value';
  if (Array.isArray(input)) return 'a list';
  switch (typeof input) {
    case 'string':
      return 'a string';
    case 'number':
      return Number.isInteger(input) ? 'an integer' : 'a fractional number';
    case 'boolean':
      return input ? 'true' : 'false';
    case 'object':
      return 'a map';
    default:
      return typeof input;
  }
}

function bound(origin: string, limit: number | bigint, inclusive: boolean, side: 'least' | 'most'): string {
  const n = Number(limit);
  switch (origin) {
    case 'array':
    case 'set':
      return `expected at ${side} ${n} item${n === 1 ? '' : 's'}`;
    case 'string':
      if (side === 'least' && n === 1 && inclusive) return 'must not be empty';
      return `expected at ${side} ${n} character${n === 1 ? '' : 's'}`;
    default: {
      const op = side === 'least' ? (inclusive ? 'at least' : 'greater than') : inclusive ? 'at most' : 'less than';
      return `must be ${op} ${n}`;
    }
  }
}
