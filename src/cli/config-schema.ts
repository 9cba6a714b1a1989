/** `portcullis config schema`: prints the configuration's JSON Schema for editors. */
import { configJsonSchema } from '../config/index.js';
import type { CliIo } from './io.js';

const USAGE = `Usage: portcullis config schema

Prints the configuration's JSON Schema (draft 2020-12), e.g. for yaml-language-server:
  # yaml-language-server: $schema=./portcullis.schema.json
The repository keeps a copy in config/portcullis.schema.json.
`;

/**
 * Runs `config schema`. `args` are the words after `config schema`.
 * @returns 0, or 2 on a usage error.
 */
export function runConfigSchema(args: readonly string[], io: CliIo): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    io.stdout(USAGE);
    return Promise.resolve(0);
  }
  if (args.length > 0) {
    io.stderr(`config schema takes no arguments, got: ${args.join(' ')}\n\n${USAGE}`);
    return Promise.resolve(2);
  }
  io.stdout(`${JSON.stringify(configJsonSchema(), null, 2)}\n`);
  return Promise.resolve(0);
}
