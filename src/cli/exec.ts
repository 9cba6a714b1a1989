/**
 * `portcullis exec [--gateway URL] -- CMD [ARGS…]`: runs a command with the stored token in its
 * environment (refreshed first when less than 5 minutes remain).
 */
import { spawn } from 'node:child_process';
import { loadCredentials, resolveGateway } from './client/credentials.js';
import { Session } from './client/gateway-client.js';
import type { CliIo } from './io.js';

const USAGE = `Usage: portcullis exec [--gateway URL] -- COMMAND [ARGS…]

Runs COMMAND with the command line's token in its environment:
  PORTCULLIS_GATEWAY        the gateway's URL
  PORTCULLIS_TOKEN          the access token
  PORTCULLIS_TOKEN_TYPE     Bearer (unbound) or DPoP (key-bound)
  PORTCULLIS_AUTHORIZATION  "Bearer <token>", for unbound tokens only (login --no-bind)
A key-bound token is refused unless each request carries a DPoP proof made with the key kept by
portcullis, so only tools that make DPoP proofs themselves can use it; use portcullis curl or
portcullis tunnel for others, or log in with --no-bind.

Options (before --):
  --gateway URL   the gateway (default: $PORTCULLIS_GATEWAY, else the only gateway logged in to)

Exit status: the command's; 1 when not logged in; 2 bad command line; 127 command not found.
`;

/** Runs `exec`. */
export async function runExec(args: readonly string[], io: CliIo): Promise<number> {
  let gateway: string | undefined;
  let i = 0;
  for (; i < args.length; i++) {
    const a = args[i] ?? '';
    if (a === '--help' || a === '-h') {
      io.stdout(USAGE);
      return 0;
    }
    if (a === '--gateway') {
      gateway = args[++i];
    } else if (a.startsWith('--gateway=')) gateway = a.slice('--gateway='.length);
    else if (a === '--') {
      i += 1;
      break;
    } else break;
  }
  const [cmd, ...cmdArgs] = args.slice(i);
  if (cmd === undefined) {
    io.stderr(`exec needs a command\n\n${USAGE}`);
    return 2;
  }
  let env: Record<string, string | undefined>;
  try {
    const origin = await resolveGateway(gateway, io.env);
    const session = await Session.open(await loadCredentials(io.env, origin));
    await session.ensureFresh(io);
    const c = session.creds;
    env = { ...io.env, PORTCULLIS_GATEWAY: origin, PORTCULLIS_TOKEN: c.access_token, PORTCULLIS_TOKEN_TYPE: c.token_type };
    if (c.token_type === 'Bearer') env.PORTCULLIS_AUTHORIZATION = `Bearer ${c.access_token}`;
    else delete env.PORTCULLIS_AUTHORIZATION;
  } catch (err) {
    io.stderr(`portcullis exec: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  const child = spawn(cmd, cmdArgs, { stdio: 'inherit', env });
  // The terminal's Ctrl-C reaches the child too (same process group); wait for it to finish.
  const ignore = () => undefined;
  const forward = () => child.kill('SIGTERM');
  process.on('SIGINT', ignore);
  process.on('SIGTERM', forward);
  try {
    return await new Promise<number>((resolve) => {
      child.once('error', (err: NodeJS.ErrnoException) => {
        io.stderr(`portcullis exec: cannot run ${cmd}: ${err.code === 'ENOENT' ? 'command not found' : err.message}\n`);
        resolve(127);
      });
      child.once('close', (code, signal) => resolve(code ?? (signal === null ? 1 : 128 + (signal === 'SIGINT' ? 2 : signal === 'SIGTERM' ? 15 : 9))));
    });
  } finally {
    process.off('SIGINT', ignore);
    process.off('SIGTERM', forward);
  }
}
