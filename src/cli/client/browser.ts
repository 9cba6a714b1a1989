/**
 * Sends the user to a URL: always prints it to stderr, then opens it with `$PORTCULLIS_BROWSER` (a
 * command; `none` never opens anything), else `$BROWSER`, else `xdg-open` (when a display exists)
 * or `open` (macOS). Failing to open is never an error: the printed URL is the fallback.
 */
import { spawn } from 'node:child_process';
import type { CliIo } from '../io.js';

/** The command that would open a browser here, as argv (the URL is appended), or undefined. */
export function browserCommand(env: CliIo['env'], platform: NodeJS.Platform = process.platform): string[] | undefined {
  const chosen = env.PORTCULLIS_BROWSER ?? env.BROWSER;
  if (chosen !== undefined && chosen.trim() !== '') {
    if (chosen.trim() === 'none') return undefined;
    return chosen.trim().split(/\s+/);
  }
  if (platform === 'darwin') return ['open'];
  if (platform === 'win32') return undefined;
  const display = (env.DISPLAY ?? '') !== '' || (env.WAYLAND_DISPLAY ?? '') !== '';
  return display ? ['xdg-open'] : undefined;
}

/** Prints `Open this URL to <purpose>: <url>` to stderr and tries to open it; resolves whether a browser was started. */
export function openBrowser(url: string, purpose: string, io: CliIo): boolean {
  io.stderr(`Open this URL to ${purpose}: ${url}\n`);
  const cmd = browserCommand(io.env);
  if (cmd === undefined) return false;
  const [file, ...args] = cmd;
  if (file === undefined) return false;
  try {
    const child = spawn(file, [...args, url], { stdio: 'ignore', detached: true });
    child.on('error', (err) => io.stderr(`(could not start ${file}: ${err.message}; open the URL yourself)\n`));
    child.unref();
    return true;
  } catch {
    return false;
  }
}
