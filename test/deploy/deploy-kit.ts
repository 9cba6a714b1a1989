/**
 * Shared by the deploy tests: reading the manifests in deploy/k8s, checking them strictly against the
 * Kubernetes (and Prometheus Operator) types, parsing the Dockerfile and matching .dockerignore.
 *
 * Strictness: the JSON schemas that kubernetes-models validates with (`validate()`) allow unknown
 * fields, like the API server's OpenAPI schemas do, so a typo such as `periodSecond` would pass them.
 * `kubeconform -strict` catches those; here the TypeScript checker does: every manifest becomes an
 * object literal typed with its kind's interface from the same packages, and excess-property and
 * type errors are reported with their path.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { parseAllDocuments } from 'yaml';
import { REPO_ROOT } from '../support/process.js';

export const K8S_DIR = join(REPO_ROOT, 'deploy', 'k8s');

/** A Kubernetes object read from a manifest file. */
export interface Manifest {
  readonly file: string;
  readonly index: number;
  readonly doc: KubeObject;
}

/** The parts of a Kubernetes object every test looks at; the rest is read with {@link at}. */
export interface KubeObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: { readonly name: string; readonly labels?: Record<string, string> };
  readonly [key: string]: unknown;
}

/** Parses every YAML document in `text` (YAML 1.1 like kubectl: 0440 is octal); throws on YAML errors. */
export function parseManifests(text: string, file: string): Manifest[] {
  const out: Manifest[] = [];
  parseAllDocuments(text, { version: '1.1' }).forEach((d, index) => {
    if (d.errors.length > 0) throw new Error(`${file}: ${d.errors.map((e) => e.message).join('; ')}`);
    const doc: unknown = d.toJS();
    if (doc === null || doc === undefined) return;
    if (!isKubeObject(doc)) throw new Error(`${file}#${index}: not a Kubernetes object (apiVersion, kind, metadata.name)`);
    out.push({ file, index, doc });
  });
  return out;
}

function isKubeObject(v: unknown): v is KubeObject {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  const meta = o.metadata as Record<string, unknown> | undefined;
  return typeof o.apiVersion === 'string' && typeof o.kind === 'string' && typeof meta?.name === 'string';
}

/** Reads deploy/k8s/<file>. */
export function readK8s(file: string): Manifest[] {
  return parseManifests(readFileSync(join(K8S_DIR, file), 'utf8'), file);
}

/** Follows a path of keys and indexes; undefined when any step is missing. */
export function at(value: unknown, ...path: (string | number)[]): unknown {
  let v = value;
  for (const step of path) {
    if (typeof v !== 'object' || v === null) return undefined;
    v = (v as Record<string | number, unknown>)[step];
  }
  return v;
}

/** `at()` that must give an array. */
export function list(value: unknown, ...path: (string | number)[]): unknown[] {
  const v = at(value, ...path);
  if (!Array.isArray(v)) throw new Error(`expected a list at ${path.join('.')}`);
  return v as unknown[];
}

/** `at()` that must give a string-keyed object. */
export function obj(value: unknown, ...path: (string | number)[]): Record<string, unknown> {
  const v = at(value, ...path);
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`expected an object at ${path.join('.')}`);
  return v as Record<string, unknown>;
}

/** Where each kind's model (for `validate()`) and TypeScript interface live. */
export const KINDS: Readonly<Record<string, { module: string; type: string }>> = {
  'v1/Namespace': { module: 'kubernetes-models/v1/Namespace', type: 'INamespace' },
  'v1/ServiceAccount': { module: 'kubernetes-models/v1/ServiceAccount', type: 'IServiceAccount' },
  'v1/ConfigMap': { module: 'kubernetes-models/v1/ConfigMap', type: 'IConfigMap' },
  'v1/Service': { module: 'kubernetes-models/v1/Service', type: 'IService' },
  'apps/v1/StatefulSet': { module: 'kubernetes-models/apps/v1/StatefulSet', type: 'IStatefulSet' },
  'apps/v1/Deployment': { module: 'kubernetes-models/apps/v1/Deployment', type: 'IDeployment' },
  'policy/v1/PodDisruptionBudget': { module: 'kubernetes-models/policy/v1/PodDisruptionBudget', type: 'IPodDisruptionBudget' },
  'networking.k8s.io/v1/NetworkPolicy': { module: 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy', type: 'INetworkPolicy' },
  'networking.k8s.io/v1/Ingress': { module: 'kubernetes-models/networking.k8s.io/v1/Ingress', type: 'IIngress' },
  'monitoring.coreos.com/v1/ServiceMonitor': { module: '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor', type: 'IServiceMonitor' },
  'monitoring.coreos.com/v1/PrometheusRule': { module: '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule', type: 'IPrometheusRule' },
};

/** The kind key of a manifest: `<apiVersion>/<kind>`. */
export const kindOf = (m: Manifest): string => `${m.doc.apiVersion}/${m.doc.kind}`;

interface ValidatableModel {
  validate(): void;
}
type ModelClass = new (data: unknown) => ValidatableModel;

/**
 * The kubernetes-models schema check (`new Model(doc).validate()`): types, formats, required fields,
 * enums. Returns the error message, or undefined when valid.
 */
export async function schemaErrors(m: Manifest): Promise<string | undefined> {
  const kind = KINDS[kindOf(m)];
  if (kind === undefined) return `unknown kind ${kindOf(m)}`;
  const mod = (await import(kind.module)) as Record<string, unknown>;
  const Model = mod[m.doc.kind] as ModelClass | undefined;
  if (Model === undefined) return `${kind.module} has no ${m.doc.kind}`;
  try {
    new Model(m.doc).validate();
    return undefined;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

/**
 * The strict check: one TypeScript program in which manifest i is `export const m<i>: I<Kind> = <its
 * JSON>;`. Returns, per manifest, the checker's messages (unknown fields, wrong types, missing
 * required fields); empty lists when all is well.
 */
export function strictTypeErrors(manifests: readonly Manifest[]): string[][] {
  const virtual = join(REPO_ROOT, 'test', 'deploy', '__manifests__.ts');
  const lines: string[] = [];
  const starts: number[] = [];
  manifests.forEach((m, i) => {
    const kind = KINDS[kindOf(m)];
    if (kind === undefined) throw new Error(`unknown kind ${kindOf(m)} in ${m.file}`);
    lines.push(`import type { ${kind.type} as T${i} } from '${kind.module}';`);
  });
  manifests.forEach((m, i) => {
    starts.push(lines.length);
    lines.push(...`export const m${i}: T${i} = ${JSON.stringify(m.doc, null, 1)};`.split('\n'));
  });
  const source = lines.join('\n');
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    types: [],
    lib: ['lib.es2022.d.ts'],
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  const fileExists = host.fileExists.bind(host);
  host.getSourceFile = (f, lang, onError, create) => (f === virtual ? ts.createSourceFile(f, source, lang) : getSourceFile(f, lang, onError, create));
  host.fileExists = (f) => f === virtual || fileExists(f);
  const program = ts.createProgram([virtual], options, host);
  const sf = program.getSourceFile(virtual);
  const out: string[][] = manifests.map(() => []);
  for (const d of ts.getPreEmitDiagnostics(program, sf)) {
    const line = d.file !== undefined && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line : -1;
    let owner = -1;
    for (let i = 0; i < starts.length; i++) if (line >= (starts[i] ?? Infinity)) owner = i;
    const message = ts.flattenDiagnosticMessageText(d.messageText, ' ');
    if (owner < 0) throw new Error(`type check of the manifests failed outside any manifest: ${message}`);
    out[owner]?.push(message);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Dockerfile
// ---------------------------------------------------------------------------------------------

/** One Dockerfile instruction: upper-case keyword, its arguments (continuations joined). */
export interface Instruction {
  readonly keyword: string;
  readonly args: string;
  readonly line: number;
}

/** A build stage: its FROM and the instructions after it. */
export interface Stage {
  readonly from: string;
  readonly name: string | undefined;
  readonly instructions: Instruction[];
}

/** Parses a Dockerfile into global ARGs and stages (comments, blank lines and `\` continuations handled). */
export function parseDockerfile(text: string): { globalArgs: Instruction[]; stages: Stage[] } {
  const instructions: Instruction[] = [];
  let buffer = '';
  let startLine = 0;
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    if (buffer === '' && /^\s*#/.test(line)) return; // comments and parser directives
    if (buffer !== '' && /^\s*#/.test(line)) return; // comment lines inside a continuation
    if (buffer === '' && line.trim() === '') return;
    if (buffer === '') startLine = i + 1;
    if (/\\\s*$/.test(line)) {
      buffer += `${line.replace(/\\\s*$/, '')} `;
      return;
    }
    buffer += line;
    const m = /^\s*([A-Za-z]+)\s*(.*)$/s.exec(buffer);
    if (m === null) throw new Error(`Dockerfile line ${startLine}: cannot parse ${buffer}`);
    instructions.push({ keyword: (m[1] ?? '').toUpperCase(), args: (m[2] ?? '').replace(/\s+/g, ' ').trim(), line: startLine });
    buffer = '';
  });
  const globalArgs: Instruction[] = [];
  const stages: Stage[] = [];
  for (const ins of instructions) {
    if (ins.keyword === 'FROM') {
      const m = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      if (m === null) throw new Error(`Dockerfile line ${ins.line}: cannot parse FROM ${ins.args}`);
      stages.push({ from: m[1] ?? '', name: m[2], instructions: [] });
    } else if (stages.length === 0) {
      if (ins.keyword !== 'ARG') throw new Error(`Dockerfile line ${ins.line}: ${ins.keyword} before the first FROM`);
      globalArgs.push(ins);
    } else {
      stages.at(-1)?.instructions.push(ins);
    }
  }
  return { globalArgs, stages };
}

/** The JSON (exec) form of CMD / ENTRYPOINT / HEALTHCHECK CMD, or undefined for the shell form. */
export function execForm(args: string): string[] | undefined {
  if (!args.startsWith('[')) return undefined;
  const parsed: unknown = JSON.parse(args);
  return Array.isArray(parsed) && parsed.every((a) => typeof a === 'string') ? parsed : undefined;
}

/** `ENV a=b c="d e"` (and the old `ENV a b` form) as pairs. */
export function envPairs(args: string): [string, string][] {
  if (!args.includes('=')) {
    const [k = '', ...rest] = args.split(' ');
    return [[k, rest.join(' ')]];
  }
  const out: [string, string][] = [];
  const re = /([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)/g;
  for (const m of args.matchAll(re)) {
    const raw = m[2] ?? '';
    out.push([m[1] ?? '', raw.startsWith('"') ? (JSON.parse(raw) as string) : raw]);
  }
  return out;
}

/** `COPY [--from=x] [--chown=…] src… dest` split into its parts. */
export function copyParts(args: string): { from: string | undefined; sources: string[]; dest: string } {
  const words = args.startsWith('[') ? (JSON.parse(args) as string[]) : args.split(' ');
  let from: string | undefined;
  const rest: string[] = [];
  for (const w of words) {
    const flag = /^--([a-z-]+)=(.*)$/.exec(w);
    if (flag !== null) {
      if (flag[1] === 'from') from = flag[2];
      continue;
    }
    rest.push(w);
  }
  const dest = rest.pop();
  if (dest === undefined || rest.length === 0) throw new Error(`COPY needs a source and a destination: ${args}`);
  return { from, sources: rest, dest };
}

/**
 * Docker's .dockerignore matching: patterns are relative to the context root (leading / dropped),
 * `*` and `?` stay within one path segment, `**` spans any number of segments, `!` re-includes, the
 * last matching pattern wins, and a pattern that matches a directory excludes everything in it.
 */
export function dockerignoreExcludes(patternsText: string): (path: string) => boolean {
  const rules = patternsText
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!');
      const pattern = (negate ? l.slice(1) : l).replace(/^\/+/, '').replace(/\/+$/, '');
      let re = '';
      for (let i = 0; i < pattern.length; i++) {
        const c = pattern.charAt(i);
        if (c === '*' && pattern.charAt(i + 1) === '*') {
          // `**/` matches zero or more directories; a trailing `**` anything.
          if (pattern.charAt(i + 2) === '/') {
            re += '(?:.*/)?';
            i += 2;
          } else {
            re += '.*';
            i += 1;
          }
        } else if (c === '*') re += '[^/]*';
        else if (c === '?') re += '[^/]';
        else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
      }
      return { negate, re: new RegExp(`^${re}$`) };
    });
  return (path: string) => {
    const parts = path.split('/');
    let excluded = false;
    for (const rule of rules) {
      // The path itself or any directory above it.
      for (let n = parts.length; n >= 1; n--) {
        if (rule.re.test(parts.slice(0, n).join('/'))) {
          excluded = !rule.negate;
          break;
        }
      }
    }
    return excluded;
  };
}
