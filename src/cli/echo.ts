/** `portcullis echo [--listen HOST:PORT]`: runs only the demo echo upstream. */
import { listenOn } from '../app.js';
import { createEchoServer } from '../demo/echo-server.js';
import { parseCommand, type CliIo } from './io.js';

const USAGE = `Usage: portcullis echo [--listen HOST:PORT]

Runs the demo upstream (default 127.0.0.1:8081): it answers every request with the method, target,
headers and body size it received, and echoes WebSocket messages.
`;

/** Runs the echo command until SIGTERM/SIGINT. */
export async function runEcho(args: readonly string[], io: CliIo): Promise<number> {
  const parsed = parseCommand(args, { listen: { type: 'string' } }, USAGE, io);
  if (typeof parsed === 'number') return parsed;
  const { values } = parsed;
  const server = createEchoServer();
  await listenOn(server, values.listen ?? '127.0.0.1:8081');
  io.stdout(`echo upstream listening on ${values.listen ?? '127.0.0.1:8081'}\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return 0;
}
