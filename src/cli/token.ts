/**
 * `portcullis token [--gateway URL] [--raw]`: prints the stored token (refreshing it first when less
 * than 5 minutes remain), with a summary, or only the token for scripts.
 */
import { CredentialsError, loadCredentials, resolveGateway } from './client/credentials.js';
import { loadDpopKey } from './client/dpop.js';
import { Session } from './client/gateway-client.js';
import { parseCommand, type CliIo } from './io.js';

const USAGE = `Usage: portcullis token [--gateway URL] [--raw]

Prints who the command line is signed in as on a gateway, until when, and whether its token is
bound to a key; refreshes the token first when less than 5 minutes remain (if the gateway refuses,
log in again). With --raw, prints only the token (for scripts).

A key-bound token (the default of portcullis login) is useless on its own: the gateway also wants a
DPoP proof signed with the key kept here, so plain curl cannot use it. Use portcullis curl,
portcullis exec or portcullis tunnel, or log in with --no-bind for a token that tools can present
as "Authorization: Bearer <token>".

Options:
  --gateway URL   the gateway (default: $PORTCULLIS_GATEWAY, else the only gateway logged in to)
  --raw           print only the token

Exit status: 0 printed, 1 not logged in or the token cannot be refreshed, 2 bad command line.
`;

function duration(ms: number): string {
  if (ms <= 0) return 'expired';
  const m = Math.floor(ms / 60_000);
  return m >= 60 ? `in ${Math.floor(m / 60)} h ${m % 60} min` : `in ${m} min`;
}

/** Runs `token`. */
export async function runToken(args: readonly string[], io: CliIo): Promise<number> {
  const parsed = parseCommand(args, { gateway: { type: 'string' }, raw: { type: 'boolean' } }, USAGE, io);
  if (typeof parsed === 'number') return parsed;
  try {
    const origin = await resolveGateway(parsed.values.gateway, io.env);
    const session = await Session.open(await loadCredentials(io.env, origin));
    await session.ensureFresh(io);
    const c = session.creds;
    if (session.remainingMs() <= 0) throw new CredentialsError(`your token for ${origin} has expired: run portcullis login --gateway ${origin}`);
    if (parsed.values.raw === true) {
      io.stdout(`${c.access_token}\n`);
      return 0;
    }
    const lines = [
      `gateway:  ${origin}`,
      `user:     ${c.user}${c.groups.length > 0 ? ` (groups: ${c.groups.join(', ')})` : ''}`,
      `expires:  ${c.expires_at} (${duration(session.remainingMs())}; refreshed automatically while the browser session that approved it lives)`,
    ];
    if (c.key !== undefined && c.token_type === 'DPoP') {
      const key = await loadDpopKey(c.key);
      lines.push(`bound:    yes — DPoP key ES256, thumbprint ${key.thumbprint}; the token alone is refused, use portcullis curl/exec/tunnel`);
    } else {
      lines.push('bound:    no — a bearer token: anyone holding it can use it; send it as "Authorization: Bearer <token>"');
    }
    if (c.name !== undefined) lines.push(`label:    ${c.name}`);
    lines.push(`token:    ${c.access_token}`);
    io.stdout(`${lines.join('\n')}\n`);
    return 0;
  } catch (err) {
    io.stderr(`portcullis token: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}
