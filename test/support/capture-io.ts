/** A CliIo that records what a command prints, for running commands in-process. */
import type { CliIo } from '../../src/cli/io.js';

export function captureIo(env: CliIo['env'] = {}): { io: CliIo; out: { stdout: string; stderr: string } } {
  const out = { stdout: '', stderr: '' };
  const io: CliIo = {
    stdout: (t) => {
      out.stdout += t;
    },
    stderr: (t) => {
      out.stderr += t;
    },
    env,
  };
  return { io, out };
}
