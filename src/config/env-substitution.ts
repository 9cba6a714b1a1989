/**
 * `${VAR}` substitution in configuration strings. It runs on parsed YAML scalar values, never on the
 * raw text, so a variable's value cannot change the document's structure and error positions stay
 * right.
 */

/** Where variables are looked up: usually `process.env`. */
export type EnvLookup = Readonly<Record<string, string | undefined>>;

/** The outcome of substituting one string. */
export type SubstitutionResult =
  | { ok: true; value: string; /** true when at least one `${…}` reference was replaced */ substituted: boolean }
  | { ok: false; problems: string[] };

const REFERENCE = /^([A-Za-z_][A-Za-z0-9_]*)(?::-([\s\S]*))?$/;

/**
 * Replaces `${NAME}` with the variable's value and `${NAME:-default}` with the value, or `default`
 * when the variable is unset or empty; `$${` stands for a literal `${`. A `$` anywhere else is kept.
 * An unset variable without a default, a malformed reference or an unterminated `${` is a problem;
 * all problems in the string are returned together.
 */
export function substituteEnv(text: string, env: EnvLookup): SubstitutionResult {
  if (!text.includes('${')) return { ok: true, value: text, substituted: false };
  const problems: string[] = [];
  let out = '';
  let substituted = false;
  let i = 0;
  while (i < text.length) {
    if (text.startsWith('$${', i)) {
      out += '${';
      i += 3;
      continue;
    }
    if (!text.startsWith('${', i)) {
      out += text.charAt(i);
      i += 1;
      continue;
    }
    const end = text.indexOf('}', i + 2);
    if (end < 0) {
      problems.push('unterminated "${" (write "$${" for a literal "${")');
      break;
    }
    const inner = text.slice(i + 2, end);
    i = end + 1;
    const m = REFERENCE.exec(inner);
    const name = m?.[1];
    if (m === null || name === undefined) {
      problems.push(`"\${${inner}}" is not a valid reference; expected \${NAME} or \${NAME:-default}`);
      continue;
    }
    const fallback = m[2];
    const raw: unknown = env[name];
    const value = typeof raw === 'string' ? raw : undefined;
    substituted = true;
    if (fallback !== undefined) {
      out += value === undefined || value === '' ? fallback : value;
    } else if (value === undefined) {
      problems.push(`environment variable ${name} is not set (write \${${name}:-default} to give a default)`);
    } else {
      out += value;
    }
  }
  return problems.length > 0 ? { ok: false, problems } : { ok: true, value: out, substituted };
}

/** Text with its `${…}` references masked, and how to put them back. */
export interface MaskedText {
  masked: string;
  /** Restores the original `${…}` text in a string taken from the masked text (a scalar, a key, a message). */
  unmask: (text: string) => string;
}

// Private-use code points: printable, so valid anywhere in a YAML plain scalar, and never flow indicators.
const MASK_START = '\uE000';
const MASK_PAD = '\uE001';
const MASK_DIGIT = 0xe100;
const MASK_RESERVED = /[\uE000-\uE1FF]/;
const MASK = /\uE000([\uE100-\uE1FF])([\uE100-\uE1FF])\uE001*/g;
const MAX_MASKED = 256 * 256;
/**
 * A well-formed reference, or its `$${…}` escape, on one line. The default may not contain quotes, so
 * a malformed `"${X"` never swallows the closing quote; malformed references stay unmasked and are
 * reported by {@link substituteEnv}.
 */
const MASKABLE = /\$?\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}\n"']*)?\}/g;

/**
 * Replaces each `${…}` reference in raw YAML by a placeholder of the same length, so that the YAML
 * parser sees a plain word: `{password: ${PG_PASSWORD}}` is then valid flow YAML, while positions are
 * unchanged. Substitution itself still happens on parsed values (see {@link substituteEnv}) after
 * {@link MaskedText.unmask}, so a variable's value can never change the document's structure.
 * Text that already holds the placeholder characters is not masked.
 */
export function maskEnvReferences(text: string): MaskedText {
  if (!text.includes('${') || MASK_RESERVED.test(text)) return { masked: text, unmask: (s) => s };
  const references: string[] = [];
  const masked = text.replace(MASKABLE, (ref) => {
    if (references.length >= MAX_MASKED) return ref;
    const index = references.length;
    references.push(ref);
    const digits = String.fromCharCode(MASK_DIGIT + (index >> 8), MASK_DIGIT + (index & 0xff));
    return MASK_START + digits + MASK_PAD.repeat(ref.length - 3);
  });
  const unmask = (s: string) =>
    s.replace(MASK, (placeholder, hi: string, lo: string) => {
      const index = (hi.charCodeAt(0) - MASK_DIGIT) * 256 + (lo.charCodeAt(0) - MASK_DIGIT);
      return references[index] ?? placeholder;
    });
  return { masked, unmask };
}
