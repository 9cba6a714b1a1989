/**
 * Process entry: dispatches the command line. The only module with process-wide side effects
 * (signals are installed by the serve command it calls).
 */
import { hostname } from 'node:os';
import type { CliIo } from './cli/io.js';

const USAGE = `Usage: portcullis <command> [options]

Commands:
  serve [--config FILE]        run the gateway (default FILE: $PORTCULLIS_CONFIG, else config/portcullis.yaml)
  config check FILE            validate a configuration file; prints "ok: N routes, M databases"
  config schema                print the configuration's JSON Schema
  users add NAME --groups a,b  add a local user (password from stdin, else generated and printed)
  keys generate --out FILE     write a new Ed25519 signing key (mode 0600) and print its public key
  audit query [filters]        print matching audit records as JSON lines (--user, --route, --since, …)
  audit tail [filters]         print the last matching audit records, then follow new ones
  audit verify                 check the audit logs against their signed checkpoints (exit 3: tampered)
  audit export --out FILE      write records and checkpoints to one file; verify --from-export checks it
  audit prove --index N        print an RFC 9162 inclusion proof for record N (C2SP tlog-proof)
  echo [--listen HOST:PORT]    run the demo echo upstream

From the terminal (an engineer's machine):
  login --gateway URL          sign in through the browser (--device: with a code on another device)
  logout                       revoke the command line's token on the gateway and forget it
  token [--raw]                show who you are signed in as, until when; --raw: only the token
  curl [--] CURL ARGS…         run curl with your token; walks you through a step-up when asked
  exec -- CMD…                 run CMD with PORTCULLIS_TOKEN (and PORTCULLIS_AUTHORIZATION) set
  tunnel --route ID --listen 127.0.0.1:PORT     local HTTP listener that adds your token
  tunnel --database ID --listen 127.0.0.1:PORT  local PostgreSQL listener: psql needs no password

Every command accepts --help.
`;

type Command = (args: readonly string[], io: CliIo) => Promise<number>;

/**
 * Each command's module is loaded when it runs, not at start: `portcullis token` or `audit verify`
 * should not pay for loading the whole gateway (about 1 s of CPU on a small VM).
 */
const COMMANDS: Readonly<Record<string, () => Promise<Command>>> = {
  serve: async () => (await import('./cli/serve.js')).runServe,
  'config check': async () => (await import('./cli/config-check.js')).runConfigCheck,
  'config schema': async () => (await import('./cli/config-schema.js')).runConfigSchema,
  'users add': async () => (await import('./cli/users.js')).runUsersAdd,
  'keys generate': async () => (await import('./cli/keys.js')).runKeysGenerate,
  'audit query': async () => (await import('./cli/audit-query.js')).runAuditQuery,
  'audit tail': async () => (await import('./cli/audit-tail.js')).runAuditTail,
  'audit verify': async () => (await import('./cli/audit-verify.js')).runAuditVerify,
  'audit export': async () => (await import('./cli/audit-export.js')).runAuditExport,
  'audit prove': async () => (await import('./cli/audit-prove.js')).runAuditProve,
  echo: async () => (await import('./cli/echo.js')).runEcho,
  login: async () => (await import('./cli/login.js')).runLogin,
  logout: async () => (await import('./cli/logout.js')).runLogout,
  token: async () => (await import('./cli/token.js')).runToken,
  curl: async () => (await import('./cli/curl.js')).runCurlCommand,
  exec: async () => (await import('./cli/exec.js')).runExec,
  tunnel: async () => (await import('./cli/tunnel.js')).runTunnel,
};

/** Runs the command line `argv` (without node and script); resolves with the exit code. */
export async function main(argv: readonly string[], io?: CliIo): Promise<number> {
  if (io === undefined) {
    // `portcullis audit query | head -1`: the reader went away; stop quietly, as Unix tools do.
    process.stdout.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') process.exit(0);
      throw err;
    });
  }
  const cliIo: CliIo = io ?? {
    stdout: (t) => process.stdout.write(t),
    stderr: (t) => process.stderr.write(t),
    // HOSTNAME is exported by Docker and Kubernetes but not by every shell; `${HOSTNAME}` is the
    // documented default for server.instance_id, so it is always defined.
    env: { HOSTNAME: hostname(), ...process.env },
  };
  const [first, second, ...rest] = argv;
  if (first === undefined || first === '--help' || first === '-h' || first === 'help') {
    cliIo.stdout(USAGE);
    return first === undefined ? 2 : 0;
  }
  const two = second === undefined ? undefined : COMMANDS[`${first} ${second}`];
  if (two !== undefined) return (await two())(rest, cliIo);
  const one = COMMANDS[first];
  if (one !== undefined) return (await one())(argv.slice(1), cliIo);
  cliIo.stderr(`unknown command: ${argv.join(' ')}\n\n${USAGE}`);
  return 2;
}
