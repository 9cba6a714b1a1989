/**
 * Process entry: dispatches the command line. The only module with process-wide side effects
 * (signals are installed by the serve command it calls).
 */
import { hostname } from 'node:os';
import type { CliIo } from './cli/io.js';
import { runAuditExport } from './cli/audit-export.js';
import { runAuditProve } from './cli/audit-prove.js';
import { runAuditQuery } from './cli/audit-query.js';
import { runAuditTail } from './cli/audit-tail.js';
import { runAuditVerify } from './cli/audit-verify.js';
import { runConfigCheck } from './cli/config-check.js';
import { runConfigSchema } from './cli/config-schema.js';
import { runEcho } from './cli/echo.js';
import { runKeysGenerate } from './cli/keys.js';
import { runServe } from './cli/serve.js';
import { runUsersAdd } from './cli/users.js';

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

Every command accepts --help.
`;

type Command = (args: readonly string[], io: CliIo) => Promise<number>;

const COMMANDS: Readonly<Record<string, Command>> = {
  serve: runServe,
  'config check': runConfigCheck,
  'config schema': runConfigSchema,
  'users add': runUsersAdd,
  'keys generate': runKeysGenerate,
  'audit query': runAuditQuery,
  'audit tail': runAuditTail,
  'audit verify': runAuditVerify,
  'audit export': runAuditExport,
  'audit prove': runAuditProve,
  echo: runEcho,
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
  if (two !== undefined) return two(rest, cliIo);
  const one = COMMANDS[first];
  if (one !== undefined) return one(argv.slice(1), cliIo);
  cliIo.stderr(`unknown command: ${argv.join(' ')}\n\n${USAGE}`);
  return 2;
}
