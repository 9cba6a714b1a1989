/** `portcullis users add NAME --groups a,b [--email E] [--users-file F]`: adds a local user. */
import { loadConfigFile } from '../config/index.js';
import { addUser, UsersFileError } from '../identity/local-users.js';
import { generatePassword } from '../identity/password-hash.js';
import { configPath, parseCommand, type CliIo } from './io.js';

const USAGE = `Usage: portcullis users add NAME --groups a,b [--email E] [--users-file F]

Adds a local user to the users file (created, mode 0600, if absent). The gateway picks the change
up without a restart.

The password is read from standard input when it is piped (one line), e.g.
  printf '%s\\n' "$PW" | portcullis users add alice --groups eng
otherwise a random one is generated and printed once.

Options:
  --groups a,b       the user's groups, comma-separated (--groups '' for none)
  --email E          the user's e-mail address (may also be used to sign in)
  --users-file F     default: the users_file of the first local provider in $PORTCULLIS_CONFIG
                     (else config/portcullis.yaml), else config/users.yaml

Exit status: 0 added, 1 refused (name taken, invalid name, unreadable file), 2 bad command line.
`;

/** Reads a piped password: the text on stdin, or undefined when stdin is a terminal or empty. */
export type StdinReader = () => Promise<string | undefined>;

/** Options for {@link runUsersAdd}; tests replace stdin. */
export interface UsersAddOptions {
  readStdin?: StdinReader;
}

/** Piped input larger than this is not a password. */
const MAX_STDIN_BYTES = 64 * 1024;

/**
 * Runs `users add`. `args` are the words after `users add`.
 * @returns 0 when added, 1 when refused, 2 on a usage error.
 */
export async function runUsersAdd(args: readonly string[], io: CliIo, options: UsersAddOptions = {}): Promise<number> {
  const parsed = parseCommand(
    args,
    { groups: { type: 'string' }, email: { type: 'string' }, 'users-file': { type: 'string' } },
    USAGE,
    io,
    true,
  );
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  if (positionals.length !== 1 || positionals[0] === undefined) {
    io.stderr(`users add takes one NAME, got ${positionals.length}\n\n${USAGE}`);
    return 2;
  }
  const name = positionals[0];
  if (values.groups === undefined) {
    io.stderr(`users add needs --groups (--groups '' for none)\n\n${USAGE}`);
    return 2;
  }
  const groups = values.groups.split(',').map((g) => g.trim()).filter((g) => g !== '');

  let piped: string | undefined;
  try {
    piped = await (options.readStdin ?? readProcessStdin)();
  } catch (err) {
    io.stderr(`portcullis: cannot read the password from standard input: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  let password: string;
  let generated = false;
  if (piped === undefined) {
    password = generatePassword();
    generated = true;
  } else {
    const lines = piped.split(/\r?\n/);
    const first = lines[0] ?? '';
    if (lines.slice(1).some((l) => l !== '')) {
      io.stderr('portcullis: expected one line (the password) on standard input, got several\n');
      return 1;
    }
    if (first === '') {
      io.stderr('portcullis: the password read from standard input is empty\n');
      return 1;
    }
    password = first;
  }

  const file = values['users-file'] ?? (await usersFileFromConfig(io));
  try {
    await addUser(file, { name, email: values.email, groups, password });
  } catch (err) {
    if (err instanceof UsersFileError) {
      io.stderr(`${err.message}\n`);
      return 1;
    }
    io.stderr(`portcullis: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  io.stdout(generated ? `created user ${name}; password: ${password}\n` : `created user ${name}\n`);
  return 0;
}

/** The first local provider's users_file in the configuration, if it loads; else config/users.yaml. */
async function usersFileFromConfig(io: CliIo): Promise<string> {
  const configFile = configPath(undefined, io);
  const loaded = await loadConfigFile(configFile, io.env);
  if (loaded.ok) {
    const local = loaded.config.identity.providers.find((p) => p.type === 'local');
    if (local !== undefined) return local.users_file;
  } else if (io.env.PORTCULLIS_CONFIG !== undefined || loaded.issues.some((i) => !i.message.includes('does not exist'))) {
    io.stderr(`note: ${configFile} did not load, so its users_file is unknown; using config/users.yaml (pass --users-file to choose)\n`);
  }
  return 'config/users.yaml';
}

/** Standard input, when it is piped and not empty. */
async function readProcessStdin(): Promise<string | undefined> {
  const stdin = process.stdin;
  if (stdin.isTTY) return undefined;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stdin) {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
    size += buf.length;
    if (size > MAX_STDIN_BYTES) throw new Error(`more than ${MAX_STDIN_BYTES} bytes`);
    chunks.push(buf);
  }
  return size === 0 ? undefined : Buffer.concat(chunks).toString('utf8');
}
