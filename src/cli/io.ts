import { parseArgs, type ParseArgsConfig } from 'node:util';
/**
 * What a command may touch of the process: its output streams and environment. Passed in, so tests
 * run commands in-process and capture everything.
 */
export interface CliIo {
  /** Writes `text` as is to standard output (include the newline). */
  stdout(text: string): void;
  /** Writes `text` as is to standard error (include the newline). */
  stderr(text: string): void;
  /** The environment: default paths and `${VAR}` substitution in the config. */
  env: Readonly<Record<string, string | undefined>>;
}

/** Option definitions for {@link parseCommand} (node:util parseArgs options). */
export type CommandOptions = NonNullable<ParseArgsConfig['options']>;

/**
 * Parses a command's arguments strictly, with `--help`/`-h` added. Returns the parsed values, or an
 * exit code when the command is already answered: 0 after printing `usage` for `--help`, 2 after
 * printing the parse error and `usage` to stderr.
 */
export function parseCommand<const O extends CommandOptions>(
  args: readonly string[],
  options: O,
  usage: string,
  io: CliIo,
  allowPositionals = false,
): { values: ParsedValues<O>; positionals: string[] } | number {
  let parsed: { values: Record<string, string | boolean | (string | boolean)[] | undefined>; positionals: string[] };
  try {
    const withHelp: CommandOptions = { ...options, help: { type: 'boolean', short: 'h' } };
    parsed = parseArgs({ args: [...args], options: withHelp, allowPositionals, strict: true });
  } catch (err) {
    io.stderr(`${err instanceof Error ? err.message : String(err)}\n\n${usage}`);
    return 2;
  }
  if (parsed.values.help === true) {
    io.stdout(usage);
    return 0;
  }
  return { values: parsed.values as ParsedValues<O>, positionals: parsed.positionals };
}

/** The values parseArgs yields for `O`: strings for string options, booleans for boolean ones. */
export type ParsedValues<O extends CommandOptions> = {
  [K in keyof O]?: O[K] extends { type: 'boolean' } ? boolean : O[K] extends { multiple: true } ? string[] : string;
};

/** The config file a command uses: its flag, else `$PORTCULLIS_CONFIG`, else `config/portcullis.yaml`. */
export function configPath(flag: string | undefined, io: CliIo): string {
  return flag ?? io.env.PORTCULLIS_CONFIG ?? 'config/portcullis.yaml';
}
