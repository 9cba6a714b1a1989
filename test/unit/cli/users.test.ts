import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { captureIo } from '../../support/capture-io.js';
import { runUsersAdd } from '../../../src/cli/users.js';
import { createLocalUserDirectory } from '../../../src/identity/local-users.js';

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-cli-users-'));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});


const stdin = (text: string | undefined) => ({ readStdin: () => Promise.resolve(text) });

describe('runUsersAdd', () => {
  it('adds a user with the password piped on stdin and returns 0', async () => {
    const file = join(dir, 'users.yaml');
    const { io, out } = captureIo();
    const code = await runUsersAdd(['alice', '--groups', 'eng, sre', '--email', 'alice@example.com', '--users-file', file], io, stdin('s3cret pass\n'));
    expect(code).toBe(0);
    expect(out).toEqual({ stdout: 'created user alice\n', stderr: '' });
    const users = createLocalUserDirectory(file);
    expect(await users.verify('alice@example.com', 's3cret pass')).toEqual({ name: 'alice', email: 'alice@example.com', groups: ['eng', 'sre'] });
  });

  it('strips a CRLF line ending from the piped password', async () => {
    const file = join(dir, 'users.yaml');
    expect(await runUsersAdd(['bob', '--groups', '', '--users-file', file], captureIo().io, stdin('pw\r\n'))).toBe(0);
    expect(await createLocalUserDirectory(file).verify('bob', 'pw')).toEqual({ name: 'bob', email: undefined, groups: [] });
  });

  it('generates and prints a password when nothing is piped', async () => {
    const file = join(dir, 'users.yaml');
    const { io, out } = captureIo();
    expect(await runUsersAdd(['carol', '--groups', 'ops', '--users-file', file], io, stdin(undefined))).toBe(0);
    const m = /^created user carol; password: (\S{20,})\n$/.exec(out.stdout);
    expect(m).not.toBeNull();
    expect((await createLocalUserDirectory(file).verify('carol', m?.[1] ?? ''))?.groups).toEqual(['ops']);
    expect(await readFile(file, 'utf8')).not.toContain(m?.[1]);
  });

  it('refuses a name that is taken and returns 1', async () => {
    const file = join(dir, 'users.yaml');
    expect(await runUsersAdd(['dave', '--groups', 'a', '--users-file', file], captureIo().io, stdin('one\n'))).toBe(0);
    const { io, out } = captureIo();
    expect(await runUsersAdd(['dave', '--groups', 'b', '--users-file', file], io, stdin('two\n'))).toBe(1);
    expect(out.stdout).toBe('');
    expect(out.stderr).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:2:11: user "dave" already exists\n$`));
  });

  it.each([
    ['an invalid name', ['bad name', '--groups', 'a'], 'ok\n'],
    ['an empty piped password', ['erin', '--groups', 'a'], '\n'],
    ['several piped lines', ['erin', '--groups', 'a'], 'one\ntwo\n'],
  ])('refuses %s and returns 1', async (_what, args, piped) => {
    const file = join(dir, 'users.yaml');
    const { io, out } = captureIo();
    expect(await runUsersAdd([...args, '--users-file', file], io, stdin(piped))).toBe(1);
    expect(out.stdout).toBe('');
    expect(out.stderr).not.toBe('');
  });

  it('returns 1 when the users file is invalid', async () => {
    const file = join(dir, 'users.yaml');
    await writeFile(file, 'users: {}\n');
    const { io, out } = captureIo();
    expect(await runUsersAdd(['frank', '--groups', 'a', '--users-file', file], io, stdin('pw\n'))).toBe(1);
    expect(out.stderr).toBe(`${file}:1:8: users: expected a list, got a map\n`);
  });

  it.each([
    ['no NAME', ['--groups', 'a']],
    ['two names', ['a', 'b', '--groups', 'a']],
    ['no --groups', ['a']],
    ['an unknown option', ['a', '--groups', 'a', '--admin']],
  ])('returns 2 for %s', async (_what, args) => {
    const { io, out } = captureIo();
    expect(await runUsersAdd(args, io, stdin('pw\n'))).toBe(2);
    expect(out.stderr).toContain('Usage: portcullis users add NAME');
  });

  it('prints usage for --help and returns 0', async () => {
    const { io, out } = captureIo();
    expect(await runUsersAdd(['--help'], io, stdin(undefined))).toBe(0);
    expect(out.stdout).toMatch(/^Usage: portcullis users add NAME --groups a,b/);
  });

  it('uses the users_file of the first local provider in $PORTCULLIS_CONFIG', async () => {
    const usersFile = join(dir, 'from-config.yaml');
    const config = join(dir, 'portcullis.yaml');
    await writeFile(
      config,
      `identity:\n  providers:\n    - {id: corp-users, type: local, users_file: ${JSON.stringify(usersFile)}}\n    - {id: other, type: local, users_file: elsewhere.yaml}\n`,
    );
    const { io, out } = captureIo({ PORTCULLIS_CONFIG: config });
    expect(await runUsersAdd(['gina', '--groups', 'a'], io, stdin('pw\n'))).toBe(0);
    expect(out.stderr).toBe('');
    expect(await createLocalUserDirectory(usersFile).verify('gina', 'pw')).toEqual({ name: 'gina', email: undefined, groups: ['a'] });
  });
});
