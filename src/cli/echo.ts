/** `portcullis echo [--listen HOST:PORT]`: runs only the demo echo upstream. */
import { parseArgs } from 'node:util';
import { parseListen } from '../app.js';
import { createEchoServer } from '../demo/echo-server.js';
import type { CliIo } from './io.js';

const USAGE = `Usage: portcullis echo [--listen HOST:PORT]

Runs the demo upstream (default 127.0.0.1:8081): it answers every request with the method, target,
headers and body size it received, and echoes WebSocket messages.
`;

/** Runs the echo command until SIGTERM/SIGINT. */
export async function runEcho(args: readonly string[], io: CliIo): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args: [...args], options: { listen: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, strict: true }));
  } catch (err) {
    io.stderr(`${err instanceof Error ? err.message : String(err)}\n${USAGE}`);
    return 2;
  }
  if (values.help === true) {
    io.stdout(USAGE);
    return 0;
  }
  const { host, port } = parseListen(values.listen ?? '127.0.0.1:8081');
  const server = createEchoServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, resolve);
  });
  io.stdout(`echo upstream listening on ${values.listen ?? '127.0.0.1:8081'}\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return 0;
}
