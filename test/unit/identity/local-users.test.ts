import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  addUser,
  createLocalUserDirectory,
  ensureUsersFile,
  loadUsersText,
  UsersFileError,
  type LocalUserDirectory,
} from '../../../src/identity/local-users.js';
import { hashPassword } from '../../../src/identity/password-hash.js';

const CHEAP = { ln: 10, r: 8, p: 1 } as const;
let dir: string;
let aliceHash: string;
let bobHash: string;

beforeAll(async () => {
  aliceHash = await hashPassword('alice-pw', CHEAP);
  bobHash = await hashPassword('bob-pw', CHEAP);
});

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-users-'));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function usersYaml(): string {
  return `# team
users:
  - name: alice
    email: Alice@Example.com
    groups: [eng, sre]
    password_hash: ${aliceHash}
  - {name: bob, groups: [], password_hash: "${bobHash}"}
`;
}

async function writeUsers(text = usersYaml()): Promise<string> {
  const file = join(dir, 'users.yaml');
  await writeFile(file, text, { mode: 0o600 });
  return file;
}

function modeOf(s: { mode: number }): number {
  return s.mode & 0o777;
}

async function reason(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (err instanceof UsersFileError) return err.reason;
    throw err;
  }
  return 'resolved';
}

describe('loadUsersText', () => {
  it('reads names, e-mail addresses, groups and hashes', () => {
    const result = loadUsersText(usersYaml(), 'users.yaml');
    expect(result).toEqual({
      ok: true,
      users: [
        { name: 'alice', email: 'Alice@Example.com', groups: ['eng', 'sre'], passwordHash: aliceHash },
        { name: 'bob', email: undefined, groups: [], passwordHash: bobHash },
      ],
    });
  });

  it('reads an empty file as no users', () => {
    expect(loadUsersText('# nobody yet\n', 'u.yaml')).toEqual({ ok: true, users: [] });
  });

  it('reports every problem at FILE:LINE:COL', () => {
    const text = `users:
  - name: alice
    groups: [eng]
    password_hash: ${aliceHash}
  - name: alice
    password_hash: plain-text
    role: admin
  - name: "bad name"
    email: Alice@example.com
    password_hash: ${aliceHash}
`;
    const result = loadUsersText(text, 'u.yaml');
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.issues.map((i) => `${i.line}:${i.col}: ${i.message}`)).toEqual([
      '5:11: users[1].name: user name "alice" is already used by users[0]',
      expect.stringMatching(/^6:20: users\[1\]\.password_hash: expected a password hash/),
      '7:5: unknown key "role" in users[1]',
      expect.stringMatching(/^8:11: users\[2\]\.name: expected a user name/),
    ]);
    expect(result.issues.every((i) => i.file === 'u.yaml')).toBe(true);
  });

  it('refuses two users with the same e-mail address in different case', () => {
    const text = `users:
  - {name: a, email: x@example.com, password_hash: "${aliceHash}"}
  - {name: b, email: X@Example.com, password_hash: "${bobHash}"}
`;
    const result = loadUsersText(text, 'u.yaml');
    expect(result.ok ? [] : result.issues.map((i) => `${i.line}:${i.col}: ${i.message}`)).toEqual([
      '3:22: users[1].email: e-mail address "X@Example.com" is already used by users[0]',
    ]);
  });

  it('reports YAML syntax errors at their position', () => {
    const result = loadUsersText('users:\n  - {name: a\n', 'u.yaml');
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.issues[0]?.message).toMatch(/^invalid YAML/);
  });
});

describe('createLocalUserDirectory', () => {
  let users: LocalUserDirectory;
  let clock: number;
  let file: string;

  beforeEach(async () => {
    file = await writeUsers();
    clock = 1_000_000;
    users = createLocalUserDirectory(file, { now: () => clock });
    await users.reload();
  });

  it('verifies a user by exact name', async () => {
    expect(await users.verify('alice', 'alice-pw')).toEqual({ name: 'alice', email: 'Alice@Example.com', groups: ['eng', 'sre'] });
    expect(await users.verify('bob', 'bob-pw')).toEqual({ name: 'bob', email: undefined, groups: [] });
  });

  it('verifies a user by e-mail address in any case', async () => {
    expect((await users.verify('alice@example.COM', 'alice-pw'))?.name).toBe('alice');
  });

  it('compares names case-sensitively', async () => {
    expect(await users.verify('Alice', 'alice-pw')).toBeUndefined();
  });

  it('refuses a wrong password and an unknown user alike', async () => {
    expect(await users.verify('alice', 'bob-pw')).toBeUndefined();
    expect(await users.verify('mallory', 'alice-pw')).toBeUndefined();
  });

  it('looks users up by name without a password', () => {
    expect(users.get('alice')?.groups).toEqual(['eng', 'sre']);
    expect(users.get('alice@example.com')).toBeUndefined();
  });

  it('picks up a user added to the file once a second has passed', async () => {
    await addUser(file, { name: 'carol', groups: ['ops'], password: 'carol-pw' });
    clock += 999;
    expect(await users.verify('carol', 'carol-pw')).toBeUndefined();
    clock += 1;
    expect(await users.verify('carol', 'carol-pw')).toEqual({ name: 'carol', email: undefined, groups: ['ops'] });
  });

  it('keeps the previous users when the changed file is invalid, and reports it', async () => {
    const errors: UsersFileError[] = [];
    const watched = createLocalUserDirectory(file, { now: () => clock, onReloadError: (e) => errors.push(e) });
    await watched.reload();
    await writeFile(file, 'users: [oops\n');
    clock += 1000;
    expect((await watched.verify('alice', 'alice-pw'))?.name).toBe('alice');
    expect(errors.map((e) => e.reason)).toEqual(['invalid']);
    await expect(watched.reload()).rejects.toBeInstanceOf(UsersFileError);
  });

  it('rejects verify with the file error when the file never loaded', async () => {
    const missing = createLocalUserDirectory(join(dir, 'nope.yaml'));
    expect(await reason(missing.verify('alice', 'alice-pw'))).toBe('unreadable');
    expect(await reason(missing.reload())).toBe('unreadable');
  });
});

describe('ensureUsersFile', () => {
  it('creates the file once, mode 0600, with an admin whose password it returns', async () => {
    const file = join(dir, 'nested', 'config', 'users.yaml');
    const made = await ensureUsersFile(file);
    expect(made.created).toBe(true);
    expect(made.adminPassword).toMatch(/^\S{20,}$/);
    expect(modeOf(await stat(file))).toBe(0o600);
    const users = createLocalUserDirectory(file);
    expect(await users.verify('admin', made.adminPassword ?? '')).toEqual({ name: 'admin', email: undefined, groups: ['admin', 'sre'] });

    const before = await readFile(file, 'utf8');
    expect(await ensureUsersFile(file)).toEqual({ created: false });
    expect(await readFile(file, 'utf8')).toBe(before);
  });

  it('never overwrites an existing file, even an empty or invalid one', async () => {
    const file = await writeUsers('not: [valid\n');
    expect(await ensureUsersFile(file)).toEqual({ created: false });
    expect(await readFile(file, 'utf8')).toBe('not: [valid\n');
  });
});

describe('addUser', () => {
  it('appends a user and keeps comments and the other users', async () => {
    const file = await writeUsers();
    await addUser(file, { name: 'carol', email: 'carol@example.com', groups: ['ops', 'eng'], password: 'carol-pw' });
    const text = await readFile(file, 'utf8');
    expect(text).toMatch(/^# team\n/);
    expect(text).toContain('groups: [ ops, eng ]');
    const result = loadUsersText(text, file);
    expect(result.ok && result.users.map((u) => u.name)).toEqual(['alice', 'bob', 'carol']);
    const users = createLocalUserDirectory(file);
    expect((await users.verify('carol@example.com', 'carol-pw'))?.groups).toEqual(['ops', 'eng']);
    expect((await users.verify('alice', 'alice-pw'))?.name).toBe('alice');
  });

  it('refuses a taken name or e-mail address and leaves the file as it was', async () => {
    const file = await writeUsers();
    const err = await addUser(file, { name: 'alice', groups: [], password: 'x' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsersFileError);
    expect((err as UsersFileError).reason).toBe('duplicate');
    expect((err as UsersFileError).message).toBe(`${file}:3:11: user "alice" already exists`);
    expect(await reason(addUser(file, { name: 'alice2', email: 'ALICE@example.com', groups: [], password: 'x' }))).toBe('duplicate');
    expect(await readFile(file, 'utf8')).toBe(usersYaml());
  });

  it('keeps the file mode', async () => {
    const file = await writeUsers();
    expect(modeOf(await stat(file))).toBe(0o600);
    await addUser(file, { name: 'carol', groups: [], password: 'carol-pw' });
    expect(modeOf(await stat(file))).toBe(0o600);
    await chmod(file, 0o640);
    await addUser(file, { name: 'dave', groups: [], password: 'dave-pw' });
    expect(modeOf(await stat(file))).toBe(0o640);
  });

  it('creates an absent file with mode 0600 and a block list', async () => {
    const file = join(dir, 'sub', 'users.yaml');
    await addUser(file, { name: 'erin', groups: ['eng'], password: 'erin-pw' });
    expect(modeOf(await stat(file))).toBe(0o600);
    expect(await readFile(file, 'utf8')).toMatch(/^users:\n {2}- name: erin\n {4}groups: \[ eng \]\n {4}password_hash: \$scrypt\$/);
  });

  it('turns an empty flow list into a block list', async () => {
    const file = await writeUsers('users: []\n');
    await addUser(file, { name: 'erin', groups: [], password: 'erin-pw' });
    expect(await readFile(file, 'utf8')).toMatch(/^users:\n {2}- name: erin\n/);
  });

  it.each([
    ['an invalid name', { name: 'no spaces', groups: [], password: 'x' }],
    ['a name with @', { name: 'a@b.c', groups: [], password: 'x' }],
    ['an invalid e-mail address', { name: 'ok', email: 'nope', groups: [], password: 'x' }],
    ['a group with a comma', { name: 'ok', groups: ['a,b'], password: 'x' }],
    ['an empty password', { name: 'ok', groups: [], password: '' }],
  ])('refuses %s', async (_what, user) => {
    const file = await writeUsers();
    expect(await reason(addUser(file, user))).toBe('invalid_user');
    expect(await readFile(file, 'utf8')).toBe(usersYaml());
  });

  it('refuses to touch an invalid file', async () => {
    const file = await writeUsers('users:\n  - {name: x}\n');
    expect(await reason(addUser(file, { name: 'ok', groups: [], password: 'x' }))).toBe('invalid');
  });
});
