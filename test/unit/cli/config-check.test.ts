import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runConfigCheck } from '../../../src/cli/config-check.js';
import { captureIo } from '../../support/capture-io.js';

const FIXTURES = join(import.meta.dirname, '../../../test/fixtures/config');


describe('runConfigCheck', () => {
  it('prints the route and database counts for a valid file and returns 0', async () => {
    const { io, out } = captureIo({ HOSTNAME: 'gw-0', PORTCULLIS_OIDC_SECRET: 's', PG_PASSWORD: 'p' });
    expect(await runConfigCheck([join(FIXTURES, 'valid', 'spec-example.yaml')], io)).toBe(0);
    expect(out).toEqual({ stdout: 'ok: 2 routes, 1 databases\n', stderr: '' });
  });

  it('prints every issue as FILE:LINE:COL: message and returns 1', async () => {
    const { io, out } = captureIo();
    const file = join(FIXTURES, 'invalid', 'bad-upstream.yaml');
    expect(await runConfigCheck([file], io)).toBe(1);
    expect(out.stdout).toBe('');
    expect(out.stderr).toBe(
      `${file}:4:15: routes[0].upstream: expected an http:// or https:// URL for the upstream\n` +
        `${file}:7:15: routes[1].upstream: expected an http:// or https:// URL for the upstream\n`,
    );
  });

  it('substitutes ${VAR} from its io environment', async () => {
    const { io, out } = captureIo();
    expect(await runConfigCheck([join(FIXTURES, 'invalid', 'unset-env.yaml')], io)).toBe(1);
    expect(out.stderr).toContain('environment variable OIDC_SECRET is not set');
    const ok = captureIo({ OIDC_SECRET: 'x', PG_PASSWORD: 'y' });
    expect(await runConfigCheck([join(FIXTURES, 'invalid', 'unset-env.yaml')], ok.io)).toBe(0);
  });

  it('reports a missing file at 1:1 and returns 1', async () => {
    const { io, out } = captureIo();
    expect(await runConfigCheck(['does/not/exist.yaml'], io)).toBe(1);
    expect(out.stderr).toBe('does/not/exist.yaml:1:1: cannot read the configuration file: it does not exist\n');
  });

  it('checks $PORTCULLIS_CONFIG when no FILE is given', async () => {
    const { io, out } = captureIo({ PORTCULLIS_CONFIG: join(FIXTURES, 'valid', 'minimal.yaml') });
    expect(await runConfigCheck([], io)).toBe(0);
    expect(out.stdout).toBe('ok: 1 routes, 0 databases\n');
  });

  it.each([['--help'], ['-h']])('prints usage for %s and returns 0', async (flag) => {
    const { io, out } = captureIo();
    expect(await runConfigCheck([flag], io)).toBe(0);
    expect(out.stdout).toMatch(/^Usage: portcullis config check/);
  });

  it.each([[['--bogus']], [['a.yaml', 'b.yaml']]])('rejects the command line %j with usage and returns 2', async (args) => {
    const { io, out } = captureIo();
    expect(await runConfigCheck(args, io)).toBe(2);
    expect(out.stderr).toContain('Usage: portcullis config check');
  });
});
