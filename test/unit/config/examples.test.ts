import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatIssues, loadConfigFile } from '../../../src/config/index.js';

const ROOT = join(import.meta.dirname, '../../..');

function yamlFilesIn(dir: string): string[] {
  return readdirSync(join(ROOT, dir))
    // users.yaml is the local users file (created by the first `npm start`), not a gateway config.
    .filter((name) => /\.ya?ml$/.test(name) && name !== 'users.yaml')
    .sort()
    .map((name) => join(dir, name));
}

/** Every referenced variable is set, so examples validate without a prepared environment. */
const PLACEHOLDER_ENV: Readonly<Record<string, string>> = new Proxy({}, { get: (_target, name) => (typeof name === 'string' ? 'example' : undefined) });

const EXAMPLES = [...yamlFilesIn('config'), ...yamlFilesIn('test/fixtures/config/valid')];

describe('loadConfigFile', () => {
  it('finds example configurations to check', () => {
    expect(EXAMPLES.length).toBeGreaterThan(0);
  });

  it.each(EXAMPLES)('validates the example %s', async (file) => {
    const result = await loadConfigFile(join(ROOT, file), PLACEHOLDER_ENV);
    expect(result.ok, result.ok ? '' : formatIssues(result.issues)).toBe(true);
  });
});
