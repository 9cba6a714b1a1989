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
