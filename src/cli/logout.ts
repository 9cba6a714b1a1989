/**
 * `portcullis logout [--gateway URL]`: revokes the stored token on the gateway (RFC 7009; the pair
 * is refused from then on) and deletes it from the credentials file.
 */
import { loadCredentials, removeCredentials, resolveGateway } from './client/credentials.js';
import { revokeToken } from './client/gateway-client.js';
import { parseCommand, type CliIo } from './io.js';

const USAGE = `Usage: portcullis logout [--gateway URL] [--local]

Revokes the command line's token on the gateway (it is refused at once, everywhere), then deletes it
from the credentials file. When the gateway cannot be reached the token is kept, so that you can try
again; --local deletes it anyway (it stays valid on the gateway until it expires).

Options:
  --gateway URL   the gateway (default: $PORTCULLIS_GATEWAY, else the only gateway logged in to)
  --local         delete the local copy even if the gateway cannot revoke it

Exit status: 0 logged out, 1 not revoked (or not logged in), 2 bad command line.
`;

/** Runs `logout`. */
export async function runLogout(args: readonly string[], io: CliIo): Promise<number> {
  const parsed = parseCommand(args, { gateway: { type: 'string' }, local: { type: 'boolean' } }, USAGE, io);
  if (typeof parsed === 'number') return parsed;
  try {
    const origin = await resolveGateway(parsed.values.gateway, io.env);
    const creds = await loadCredentials(io.env, origin);
    try {
      // Either token of the pair revokes both (docs/cli-protocol.md).
      await revokeToken(origin, creds.refresh_token ?? creds.access_token);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      if (parsed.values.local !== true) {
        io.stderr(`portcullis logout: ${why}\nThe token was NOT revoked and is still stored; try again, or pass --local to delete it here anyway.\n`);
        return 1;
      }
      await removeCredentials(io.env, origin);
      io.stderr(`portcullis logout: ${why}\nDeleted the local credentials for ${origin}; the token stays valid on the gateway until ${creds.expires_at}.\n`);
      return 1;
    }
    await removeCredentials(io.env, origin);
    io.stdout(`Logged out of ${origin}: the token of ${creds.user} is revoked on the gateway and deleted here.\n`);
    return 0;
  } catch (err) {
    io.stderr(`portcullis logout: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}
