/**
 * The configuration's JSON Schema, generated from {@link configSchema} (what a file may say, before
 * defaults and transforms). Published by `portcullis config schema` and committed as
 * `config/portcullis.schema.json` for editors such as yaml-language-server.
 */
import { z } from 'zod';
import { configSchema } from './schema.js';

/** Matches a `${VAR}` or `${VAR:-default}` reference anywhere in a string. */
const ENV_REFERENCE_DEF = {
  type: 'string',
  pattern: '\\$\\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\\}',
  description: 'A ${VAR} or ${VAR:-default} reference, substituted from the environment when the file is loaded',
} as const;
const ENV_REFERENCE = { $ref: '#/$defs/envReference' } as const;

const ANNOTATIONS = new Set(['default', 'description', 'title', 'examples', 'deprecated']);
const NOT_SCHEMAS = new Set(['default', 'examples', 'const', 'enum', 'required', 'pattern']);

/** Returns the JSON Schema (draft 2020-12) of the configuration file. Deterministic. */
export function configJsonSchema(): Record<string, unknown> {
  const { $schema, $defs, ...rest } = z.toJSONSchema(configSchema, { io: 'input' });
  return {
    $schema,
    $id: 'urn:portcullis:config:v1',
    title: 'Portcullis configuration',
    description: 'portcullis.yaml: listeners, identity, MFA, audit and the routes and databases Portcullis guards. Strings may contain ${VAR} references.',
    ...(allowEnvReferences(rest) as Record<string, unknown>),
    $defs: { ...(allowEnvReferences($defs ?? {}) as Record<string, unknown>), envReference: ENV_REFERENCE_DEF },
  };
}

/**
 * Lets a value that the schema constrains (a number, boolean, patterned or formatted string) also be
 * written as a `${VAR}` reference, as the loader substitutes those before validating. Enums and
 * constants stay strict: they choose between union branches.
 */
function allowEnvReferences(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(allowEnvReferences);
  if (!isRecord(node)) return node;
  const anyOf: unknown = node.anyOf;
  if (Array.isArray(anyOf) && anyOf.length > 0 && anyOf.every(isConstrainedLeaf)) {
    return { ...node, anyOf: [...(anyOf as unknown[]), ENV_REFERENCE] };
  }
  if (isConstrainedLeaf(node)) {
    const annotations = Object.fromEntries(Object.entries(node).filter(([k]) => ANNOTATIONS.has(k)));
    const value = Object.fromEntries(Object.entries(node).filter(([k]) => !ANNOTATIONS.has(k)));
    return { ...annotations, anyOf: [value, ENV_REFERENCE] };
  }
  return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, NOT_SCHEMAS.has(k) ? v : allowEnvReferences(v)]));
}

function isConstrainedLeaf(node: unknown): boolean {
  if (!isRecord(node) || 'enum' in node || 'const' in node) return false;
  switch (node.type) {
    case 'integer':
    case 'number':
    case 'boolean':
      return true;
    case 'string':
      return 'pattern' in node || 'format' in node;
    default:
      return false;
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
