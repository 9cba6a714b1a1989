/**
 * `portcullis tunnel (--route ID | --database ID) --listen HOST:PORT`: a local listener for tools
 * that cannot present the token themselves. `--route`: an HTTP server forwarding to the route with
 * the token attached. `--database`: a PostgreSQL listener that signs connections in with passwords
 * from `/.portcullis/connect/<id>`, so `psql -h 127.0.0.1 -p PORT` needs no password.
 */
import { readFile } from 'node:fs/promises';
import { loadCredentials, resolveGateway } from './client/credentials.js';
import { GatewayError, Session } from './client/gateway-client.js';
import { startHttpTunnel } from './client/http-tunnel.js';
import { readDatabaseLogin, startPgTunnel, type DatabaseLogin } from './client/pg-tunnel.js';
import { completeStepUp, readStepUpChallenge, stepUpUrlForToken, stepUpUrlFromBody } from './client/step-up.js';
import { parseCommand, type CliIo } from './io.js';

const USAGE = `Usage: portcullis tunnel (--route ID | --database ID) --listen HOST:PORT [--gateway URL] [--allow-remote]

Opens a local listener for tools that cannot present the token themselves; Ctrl-C closes it.

  --route ID      an HTTP listener: each request is forwarded to the gateway's route ID (its URL
                  is looked up with GET /.portcullis/cli/routes) with your token and a fresh DPoP
                  proof attached; bodies stream both ways; WebSocket upgrades are passed on.
                  http://HOST:PORT/x reaches <route URL>/x (paths already under the route's prefix
                  are kept as they are).
  --database ID   a PostgreSQL listener: each connection is signed in to the gateway's database ID
                  with a short-lived password from /.portcullis/connect/ID (fetched with your
                  token, cached until shortly before it expires), as your user. So:
                    psql -h 127.0.0.1 -p PORT -d ID
                  works with no password (user and, when not given, the database name are filled
                  in; the database may also be the upstream's name).

Options:
  --listen HOST:PORT  where to listen (port 0: any free port; it is printed)
  --gateway URL       the gateway (default: $PORTCULLIS_GATEWAY, else the only gateway logged in to)
  --allow-remote      allow a non-loopback listen address (anyone who can reach it acts as you)
  --ca FILE           CA certificate (PEM) for a database listener whose sslmode is verify-ca/verify-full

When a second factor is needed, the step-up URL is printed (and, for databases, opened and
waited for).
Exit status: 0 after Ctrl-C, 1 when the tunnel could not start, 2 bad command line.
`;

/** Splits HOST:PORT (`[v6]:port` too). */
export function parseListen(value: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value);
  if (m === null) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  return { host: m[1] ?? m[2] ?? '', port };
}

/** Whether `host` is a loopback address (or localhost). */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** Runs `tunnel`. */
export async function runTunnel(args: readonly string[], io: CliIo): Promise<number> {
  const parsed = parseCommand(
    args,
    { route: { type: 'string' }, database: { type: 'string' }, listen: { type: 'string' }, gateway: { type: 'string' }, 'allow-remote': { type: 'boolean' }, ca: { type: 'string' } },
    USAGE,
    io,
  );
  if (typeof parsed === 'number') return parsed;
  const { route, database, listen, gateway, ca } = parsed.values;
  if ((route === undefined) === (database === undefined)) {
    io.stderr(`tunnel needs exactly one of --route ID and --database ID\n\n${USAGE}`);
    return 2;
  }
  const addr = listen === undefined ? undefined : parseListen(listen);
  if (addr === undefined) {
    io.stderr(`tunnel needs --listen HOST:PORT (e.g. 127.0.0.1:5433)\n\n${USAGE}`);
    return 2;
  }
  if (!isLoopback(addr.host) && parsed.values['allow-remote'] !== true) {
    io.stderr(`refusing to listen on ${addr.host}: anyone who can connect there would act as you. Use a loopback address (127.0.0.1), or pass --allow-remote if you mean it.\n`);
    return 2;
  }

  let close: () => Promise<void>;
  try {
    const origin = await resolveGateway(gateway, io.env);
    const session = await Session.open(await loadCredentials(io.env, origin));
    let refreshing: Promise<void> | undefined;
    const fresh = (): Promise<void> => {
      refreshing ??= session.ensureFresh(io).finally(() => (refreshing = undefined));
      return refreshing;
    };
    await fresh();

    if (route !== undefined) {
      const listed = await session.getJson('/.portcullis/cli/routes');
      const routes = Array.isArray(listed.routes) ? (listed.routes as unknown[]) : [];
      const found = routes.find((r): r is { id: string; url: string } => typeof r === 'object' && r !== null && (r as { id?: unknown }).id === route && typeof (r as { url?: unknown }).url === 'string');
      if (found === undefined) {
        const ids = routes.map((r) => (typeof r === 'object' && r !== null ? String((r as { id?: unknown }).id) : '?'));
        throw new GatewayError(`no route ${JSON.stringify(route)} that you may use on ${origin}${ids.length > 0 ? ` (yours: ${ids.join(', ')})` : ''}`, 404);
      }
      const routeUrl = new URL(found.url);
      const t = await startHttpTunnel(session, routeUrl, addr.host, addr.port, io, fresh);
      close = () => t.close();
      const shown = addr.host.includes(':') ? `[${addr.host}]` : addr.host;
      io.stdout(`Tunnel ready: http://${shown}:${t.port}/ → ${routeUrl.href} (as ${session.creds.user}; Ctrl-C to stop)\n`);
    } else {
      const id = database ?? '';
      const caPem = ca === undefined ? undefined : await readFile(ca, 'utf8');
      const login = databaseLogins(session, id, io, fresh);
      const first = await login();
      const t = await startPgTunnel({ host: addr.host, port: addr.port, login, log: (line) => io.stderr(`portcullis tunnel: ${line}\n`), ...(caPem === undefined ? {} : { ca: caPem }) });
      close = () => t.close();
      io.stdout(`Tunnel ready: psql -h ${addr.host} -p ${t.port} -d ${first.database}  (signs in to ${first.host}:${first.port} as ${first.user}; Ctrl-C to stop)\n`);
    }
  } catch (err) {
    io.stderr(`portcullis tunnel: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await close();
  io.stderr('tunnel closed\n');
  return 0;
}

/** Passwords for database `id`: cached until a minute before they expire; a step-up when asked. */
function databaseLogins(session: Session, id: string, io: CliIo, fresh: () => Promise<void>): (stale?: DatabaseLogin) => Promise<DatabaseLogin> {
  let cached: DatabaseLogin | undefined;
  let inflight: Promise<DatabaseLogin> | undefined;

  async function fetchLogin(): Promise<DatabaseLogin> {
    const path = `/.portcullis/connect/${encodeURIComponent(id)}`;
    for (let attempt = 0; ; attempt++) {
      await fresh();
      const res = await session.fetch(path);
      const text = await res.text();
      if (res.status === 200) {
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          body = undefined;
        }
        const login = typeof body === 'object' && body !== null ? readDatabaseLogin(body as Record<string, unknown>) : undefined;
        if (login === undefined) throw new GatewayError(`GET ${path}: the answer lacks host, port, user, password or expires_at`, 200);
        return login;
      }
      const www = res.headers.get('www-authenticate');
      const challenge = readStepUpChallenge(res.status, www === null ? [] : [www]);
      if (challenge !== undefined && attempt === 0) {
        const url = stepUpUrlFromBody(text) ?? stepUpUrlForToken(session.origin, session.creds.access_token, challenge);
        if (await completeStepUp(session, url, challenge, io)) continue;
        throw new GatewayError(`database ${id} needs a fresh second factor, and it was not confirmed in time`, 401);
      }
      let detail = '';
      try {
        const b = JSON.parse(text) as { error?: unknown; message?: unknown };
        detail = `${typeof b.error === 'string' ? b.error : ''}${typeof b.message === 'string' ? `: ${b.message}` : ''}`;
      } catch {
        detail = text.slice(0, 200);
      }
      throw new GatewayError(`GET ${path}: HTTP ${res.status}${detail === '' ? '' : ` ${detail}`}`, res.status);
    }
  }

  return (stale) => {
    if (stale !== undefined && cached === stale) cached = undefined;
    if (cached !== undefined && cached.expiresAt - Date.now() > 60_000) return Promise.resolve(cached);
    inflight ??= fetchLogin()
      .then((l) => (cached = l))
      .finally(() => (inflight = undefined));
    return inflight;
  };
}
