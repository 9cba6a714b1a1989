/** `portcullis config check [FILE]`: validates a configuration without starting anything. */
import { formatIssues, loadConfigFile } from '../config/index.js';
import { configPath, parseCommand, type CliIo } from './io.js';

const USAGE = `Usage: portcullis config check [FILE]

Validates the configuration without starting the gateway. FILE defaults to $PORTCULLIS_CONFIG,
else config/portcullis.yaml; \${VAR} references are substituted from the environment.
Prints "ok: N routes, M databases", or every problem as FILE:LINE:COL: message.
Exit status: 0 valid, 1 invalid or unreadable, 2 bad command line.
`;

/**
 * Runs `config check`. `args` are the words after `config check`.
 * @returns 0 when valid, 1 when invalid or unreadable, 2 on a usage error.
 */
export async function runConfigCheck(args: readonly string[], io: CliIo): Promise<number> {
  const parsed = parseCommand(args, {}, USAGE, io, true);
  if (typeof parsed === 'number') return parsed;
  if (parsed.positionals.length > 1) {
    io.stderr(`config check takes one FILE, got ${parsed.positionals.length}\n\n${USAGE}`);
    return 2;
  }
  const file = configPath(parsed.positionals[0], io);
  const result = await loadConfigFile(file, io.env);
  if (!result.ok) {
    io.stderr(`${formatIssues(result.issues)}\n`);
    return 1;
  }
  io.stdout(`ok: ${result.config.routes.length} routes, ${result.config.databases.length} databases\n`);
  return 0;
}
