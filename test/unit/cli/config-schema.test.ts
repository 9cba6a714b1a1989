import { describe, expect, it } from 'vitest';
import { runConfigSchema } from '../../../src/cli/config-schema.js';
import { captureIo } from '../../support/capture-io.js';
import { configJsonSchema } from '../../../src/config/index.js';


describe('runConfigSchema', () => {
  it('prints the JSON Schema as pretty JSON and returns 0', async () => {
    const { io, out } = captureIo();
    expect(await runConfigSchema([], io)).toBe(0);
    expect(out.stdout).toBe(`${JSON.stringify(configJsonSchema(), null, 2)}\n`);
    expect(JSON.parse(out.stdout)).toMatchObject({ title: 'Portcullis configuration' });
  });

  it('prints usage for --help and returns 0', async () => {
    const { io, out } = captureIo();
    expect(await runConfigSchema(['--help'], io)).toBe(0);
    expect(out.stdout).toMatch(/^Usage: portcullis config schema/);
  });

  it('rejects arguments and returns 2', async () => {
    const { io, out } = captureIo();
    expect(await runConfigSchema(['extra'], io)).toBe(2);
    expect(out.stderr).toContain('Usage: portcullis config schema');
  });
});
