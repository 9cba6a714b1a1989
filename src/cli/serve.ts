/**
 * `portcullis serve [--config FILE] [--echo HOST:PORT]`: runs the gateway until SIGTERM/SIGINT.
 * Reloads the config on SIGHUP and whenever the file changes.
 */
import { pino, type Logger } from 'pino';
import { createApp, listenOn, type App } from '../app.js';
import { ensureUsersFile } from '../identity/local-users.js';
import { formatIssues, loadConfigFile, watchConfigFile } from '../config/index.js';
import { createEchoServer } from '../demo/echo-server.js';
import { configPath, parseCommand, type CliIo } from './io.js';

const USAGE = `Usage: portcullis serve [--config FILE] [--echo HOST:PORT]

Runs the gateway. FILE defaults to $PORTCULLIS_CONFIG, else config/portcullis.yaml.
  --config FILE     the YAML configuration
  --echo HOST:PORT  also start the built-in echo upstream (the demo) on this address
  --log-level LVL   trace, debug, info (default), warn, error
Signals: SIGHUP reloads the config; SIGTERM/SIGINT drain in-flight requests and exit 0.
`;

/** Creates the process's one pino root logger, redacting credentials. */
export function createRootLogger(level: string): Logger {
  return pino({
    level,
    base: { service: 'portcullis' },
    redact: {
      paths: ['req.headers.authorization', 'req.headers.cookie', 'headers.authorization', 'headers.cookie', '*.password', '*.client_secret', '*.token'],
      censor: '[REDACTED]',
    },
  });
}

/** Runs the serve command; resolves with the exit code once the gateway has shut down. */
export async function runServe(args: readonly string[], io: CliIo): Promise<number> {
  const parsed = parseCommand(args, { config: { type: 'string' }, echo: { type: 'string' }, 'log-level': { type: 'string' } }, USAGE, io);
  if (typeof parsed === 'number') return parsed;
  const { values } = parsed;
  const file = configPath(values.config, io);
  const loaded = await loadConfigFile(file, io.env);
  if (!loaded.ok) {
    io.stderr(`${formatIssues(loaded.issues)}\n`);
    return 1;
  }
  const logger = createRootLogger(values['log-level'] ?? io.env.PORTCULLIS_LOG_LEVEL ?? 'info');

  const echo = values.echo === undefined ? undefined : createEchoServer();
  const closeEcho = () => new Promise<void>((resolve) => (echo?.listening === true ? echo.close(() => resolve()) : resolve()));
  let addresses;
  let app: App;
  try {
    // First start: a local provider without a users file gets one with an `admin` user, whose
    // password is shown here once.
    for (const p of loaded.config.identity.providers) {
      if (p.type !== 'local') continue;
      const made = await ensureUsersFile(p.users_file);
      if (made.created && made.adminPassword !== undefined) {
        io.stdout(`created ${p.users_file} with user "admin" (groups admin, sre); password: ${made.adminPassword}\n(shown once — add users with: portcullis users add NAME --groups a,b)\n`);
      }
    }
    app = await createApp({ config: loaded.config, configFile: file, logger, env: io.env });
  } catch (err) {
    io.stderr(`portcullis: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  try {
    if (echo !== undefined && values.echo !== undefined) {
      const addr = await listenOn(echo, values.echo).catch((err: unknown) => {
        throw new Error(`cannot listen on ${values.echo ?? ''} (--echo): ${err instanceof Error ? err.message : String(err)}`);
      });
      logger.info({ address: `${addr.address}:${addr.port}` }, 'demo echo upstream listening');
    }
    addresses = await app.start();
  } catch (err) {
    io.stderr(`portcullis: ${err instanceof Error ? err.message : String(err)}\n`);
    await closeEcho();
    return 1;
  }
  const reload = () => {
    void app.reload();
  };
  const watcher = watchConfigFile(file, reload);
  process.on('SIGHUP', reload);

  logger.info(
    { listen: `${addresses.public.address}:${addresses.public.port}`, admin: `${addresses.admin.address}:${addresses.admin.port}`, routes: loaded.config.routes.length },
    'portcullis is serving',
  );
  io.stdout(`portcullis listening on ${loaded.config.server.public_url} (bound ${addresses.public.address}:${addresses.public.port}); admin on ${addresses.admin.address}:${addresses.admin.port}\n`);

  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      logger.info({ signal }, 'shutting down: draining in-flight requests');
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  process.off('SIGHUP', reload);
  watcher.close();
  await app.stop();
  echo?.closeAllConnections();
  await closeEcho();
  logger.info('stopped');
  return 0;
}
