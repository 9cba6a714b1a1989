import { describe, expect, it } from 'vitest';
import { substituteEnv } from '../../../src/config/index.js';
import { maskEnvReferences } from '../../../src/config/env-substitution.js';

describe('substituteEnv', () => {
  const env = { HOST: 'db.internal', EMPTY: '', PORT: '5432' };

  it.each([
    { text: 'plain', value: 'plain', substituted: false },
    { text: '${HOST}', value: 'db.internal', substituted: true },
    { text: 'http://${HOST}:${PORT}/x', value: 'http://db.internal:5432/x', substituted: true },
    { text: '${EMPTY}', value: '', substituted: true },
    { text: '${UNSET:-fallback}', value: 'fallback', substituted: true },
    { text: '${EMPTY:-fallback}', value: 'fallback', substituted: true },
    { text: '${HOST:-fallback}', value: 'db.internal', substituted: true },
    { text: '${UNSET:-}', value: '', substituted: true },
    { text: '${UNSET:-a b: c}', value: 'a b: c', substituted: true },
    { text: '$${HOST}', value: '${HOST}', substituted: false },
    { text: '$$${HOST}', value: '$${HOST}', substituted: false },
    { text: 'cost: $5, $HOST, $', value: 'cost: $5, $HOST, $', substituted: false },
    { text: '${toString}', value: '', substituted: true, env: { toString: '' } },
  ])('turns $text into $value', ({ text, value, substituted, env: own }) => {
    expect(substituteEnv(text, own ?? env)).toEqual({ ok: true, value, substituted });
  });

  it.each([
    { text: '${NOPE}', problems: ['environment variable NOPE is not set (write ${NOPE:-default} to give a default)'] },
    { text: '${constructor}', problems: ['environment variable constructor is not set (write ${constructor:-default} to give a default)'] },
    { text: '${A}${B}', problems: ['environment variable A is not set (write ${A:-default} to give a default)', 'environment variable B is not set (write ${B:-default} to give a default)'] },
    { text: '${}', problems: ['"${}" is not a valid reference; expected ${NAME} or ${NAME:-default}'] },
    { text: '${9LIVES}', problems: ['"${9LIVES}" is not a valid reference; expected ${NAME} or ${NAME:-default}'] },
    { text: '${A-b}', problems: ['"${A-b}" is not a valid reference; expected ${NAME} or ${NAME:-default}'] },
    { text: 'x${HOST', problems: ['unterminated "${" (write "$${" for a literal "${")'] },
  ])('reports $text', ({ text, problems }) => {
    expect(substituteEnv(text, env)).toEqual({ ok: false, problems });
  });
});

describe('maskEnvReferences', () => {
  it.each([
    '{password: ${PG_PASSWORD}}',
    '[${A}, ${B:-x, y}]',
    'a: $${ESCAPED} and ${X}',
    'k: "${X" # unterminated stays as it is',
  ])('keeps length and positions and restores %s', (text) => {
    const { masked, unmask } = maskEnvReferences(text);
    expect(masked).toHaveLength(text.length);
    expect(unmask(masked)).toBe(text);
  });

  it('hides references from the YAML parser as plain words', () => {
    const { masked } = maskEnvReferences('{a: ${A}, b: ${B:-1}}');
    expect(masked.slice(1, -1)).not.toMatch(/[${}]/);
    expect(masked.slice(0, 4)).toBe('{a: ');
    expect(masked.at(-1)).toBe('}');
  });

  it('leaves malformed references unmasked', () => {
    expect(maskEnvReferences('"${X", ${1A}').masked).toBe('"${X", ${1A}');
  });
});
