/**
 * `portcullis curl [--gateway URL] [--] CURL ARGS…`: runs the system `curl` with the stored token
 * (and, for a key-bound token, a DPoP proof for the exact method and URL). When the gateway answers
 * with the RFC 9470 `insufficient_user_authentication` challenge, walks the user through the
 * browser step-up and sends the request once more; only the final response reaches stdout.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadCredentials, resolveGateway } from './client/credentials.js';
import { CurlArgsError, parseCurlArgs, type CurlRequest } from './client/curl-args.js';
import { Session } from './client/gateway-client.js';
import { completeStepUp, readStepUpChallenge, stepUpUrlForToken, stepUpUrlFromBody } from './client/step-up.js';
import type { CliIo } from './io.js';

const USAGE = `Usage: portcullis curl [--gateway URL] [--] CURL ARGUMENTS…

Runs curl with your token: "Authorization: DPoP <token>" and a fresh DPoP proof for the request's
exact method and URL (key-bound token), or "Authorization: Bearer <token>" (--no-bind login). The
token is refreshed first when less than 5 minutes remain. The headers reach curl through a private
temporary file (-H @file), never its command line.

When the gateway answers that the request needs a fresh second factor (RFC 9470
insufficient_user_authentication), the step-up page is opened in your browser (and printed); once
you have confirmed, the request is sent once more, and only that final response is written to
stdout.

The method and URL are read from the curl arguments (-X/--request, -I/--head, -G/--get,
-d/--data*/-F/--form/--json → POST, -T → PUT, the one URL or --url); anything that makes them
uncertain is refused: unknown options, several URLs, URL globs without -g, -K/--config, --next,
--request-target, --location-trusted, or an Authorization header of your own. The URL must be the
gateway's or one of its routes'.

Options (before the curl arguments):
  --gateway URL   the gateway (default: $PORTCULLIS_GATEWAY, else the only gateway logged in to)

Example: portcullis curl -s https://grafana.example.com/api/health
Exit status: curl's; 1 when not logged in or the step-up was not completed, 2 bad command line.
`;

/** Splits `[--gateway URL] [--help] [--] curl-args`. */
function splitArgs(args: readonly string[]): { gateway: string | undefined; help: boolean; rest: string[] } | string {
  let gateway: string | undefined;
  let i = 0;
  for (; i < args.length; i++) {
    const a = args[i] ?? '';
    if (a === '--gateway') {
      gateway = args[i + 1];
      if (gateway === undefined) return '--gateway needs a URL';
      i += 1;
    } else if (a.startsWith('--gateway=')) gateway = a.slice('--gateway='.length);
    else if (a === '--help' || a === '-h') return { gateway, help: true, rest: [] };
    else if (a === '--') {
      i += 1;
      break;
    } else break;
  }
  return { gateway, help: false, rest: args.slice(i) };
}

/** Whether the gateway serves `url`: its own origin, or the origin of a route it lists for this user. */
export async function servedByGateway(session: Session, url: URL): Promise<boolean> {
  if (url.origin === session.origin) return true;
  const listed = await session.getJson('/.portcullis/cli/routes');
  const routes = Array.isArray(listed.routes) ? listed.routes : [];
  return routes.some((r: unknown) => {
    if (typeof r !== 'object' || r === null || !('url' in r) || typeof r.url !== 'string') return false;
    try {
      return new URL(r.url).origin === url.origin;
    } catch {
      return false;
    }
  });
}

/** One header block of a `-D` file: the status and the WWW-Authenticate values. */
export function lastResponseHead(dump: string): { status: number; wwwAuthenticate: string[] } | undefined {
  const blocks = dump.split(/\r?\n\r?\n/).filter((b) => /^HTTP\/\S+ \d{3}/.test(b.trimStart()));
  const last = blocks.at(-1);
  if (last === undefined) return undefined;
  const lines = last.trimStart().split(/\r?\n/);
  const status = Number(/^HTTP\/\S+ (\d{3})/.exec(lines[0] ?? '')?.[1] ?? 0);
  const wwwAuthenticate = lines
    .slice(1)
    .filter((l) => /^www-authenticate\s*:/i.test(l))
    .map((l) => l.slice(l.indexOf(':') + 1).trim());
  return { status, wwwAuthenticate };
}

/** Holding back at most this much of curl's stdout while the response might still be a challenge. */
const HOLD_LIMIT = 1024 * 1024;

/** The curl child running now, if any (stopped with us on a signal). */
let running: ChildProcess | undefined;

interface Attempt {
  readonly code: number;
  /** What curl wrote to stdout, when it was held back (undefined once it was streamed through). */
  readonly held: Buffer | undefined;
  readonly dump: string;
}

async function runCurl(session: Session, req: CurlRequest, curlArgs: readonly string[], dir: string, canHold: boolean): Promise<Attempt> {
  const headerFile = join(dir, 'request-headers');
  const dumpFile = join(dir, 'response-headers');
  const auth = await session.authHeaders(req.method, req.url);
  await writeFile(headerFile, Object.entries(auth).map(([k, v]) => `${k === 'dpop' ? 'DPoP' : 'Authorization'}: ${v}\n`).join(''), { mode: 0o600 });
  await rm(dumpFile, { force: true });
  // Our -D comes last: with several, curl uses the last one.
  const child = spawn('curl', ['-H', `@${headerFile}`, ...curlArgs, '-D', dumpFile], { stdio: ['inherit', 'pipe', 'inherit'] });
  const chunks: Buffer[] = [];
  let size = 0;
  let streaming = !canHold;
  child.stdout.on('data', (c: Buffer) => {
    if (streaming) {
      process.stdout.write(c);
      return;
    }
    chunks.push(c);
    size += c.length;
    if (size > HOLD_LIMIT) {
      // Too large to be the gateway's challenge: stream from here on.
      streaming = true;
      process.stdout.write(Buffer.concat(chunks));
      chunks.length = 0;
    }
  });
  running = child;
  let code: number;
  try {
    code = await new Promise<number>((resolve, reject) => {
      child.once('error', (err: NodeJS.ErrnoException) => reject(new Error(err.code === 'ENOENT' ? 'curl is not installed (apt-get install curl)' : err.message)));
      child.once('close', (c, signal) => resolve(c ?? (signal === 'SIGINT' ? 130 : signal === 'SIGTERM' ? 143 : 1)));
    });
  } finally {
    running = undefined;
    // The token (and proof) never outlive the run on disk.
    await rm(headerFile, { force: true });
  }
  const dump = await readFile(dumpFile, 'utf8').catch(() => '');
  return { code, held: streaming ? undefined : Buffer.concat(chunks), dump };
}

/** Writes an attempt's outcome where curl would have: held stdout, and the header dump the user asked for. */
async function deliver(attempt: Attempt, req: CurlRequest): Promise<void> {
  if (req.dumpHeader !== undefined && req.dumpHeader !== '-') await writeFile(req.dumpHeader, attempt.dump);
  if (req.dumpHeader === '-') process.stdout.write(attempt.dump);
  if (attempt.held !== undefined && attempt.held.length > 0) {
    await new Promise<void>((resolve) => process.stdout.write(attempt.held ?? Buffer.alloc(0), () => resolve()));
  }
}

/** Runs `curl`. */
export async function runCurlCommand(args: readonly string[], io: CliIo): Promise<number> {
  const split = splitArgs(args);
  if (typeof split === 'string') {
    io.stderr(`${split}\n\n${USAGE}`);
    return 2;
  }
  if (split.help) {
    io.stdout(USAGE);
    return 0;
  }
  let req: CurlRequest;
  try {
    req = parseCurlArgs(split.rest);
  } catch (err) {
    if (!(err instanceof CurlArgsError)) throw err;
    io.stderr(`portcullis curl: ${err.message}\n`);
    return 2;
  }
  let dir: string | undefined;
  let onSignal: ((sig: NodeJS.Signals) => void) | undefined;
  try {
    const origin = await resolveGateway(split.gateway, io.env);
    const session = await Session.open(await loadCredentials(io.env, origin));
    await session.ensureFresh(io);
    if (!(await servedByGateway(session, req.url))) {
      io.stderr(`portcullis curl: ${req.url.origin} is neither ${origin} nor one of its routes; refusing to send your token there\n`);
      return 2;
    }
    dir = await mkdtemp(join(tmpdir(), 'portcullis-curl-'));
    const made = dir;
    // Interrupted (Ctrl-C, SIGTERM): stop curl, remove the temporary files, go.
    onSignal = (sig: NodeJS.Signals) => {
      running?.kill(sig);
      rmSync(made, { recursive: true, force: true });
      process.exit(sig === 'SIGINT' ? 130 : 143);
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    // Hold stdout back (to keep a challenge's body off it) unless the body goes to a file anyway.
    const first = await runCurl(session, req, split.rest, dir, true);
    const head = lastResponseHead(first.dump);
    const challenge = head === undefined ? undefined : readStepUpChallenge(head.status, head.wwwAuthenticate);
    if (challenge === undefined) {
      await deliver(first, req);
      return first.code;
    }
    let body = first.held?.toString('utf8') ?? '';
    if (stepUpUrlFromBody(body) === undefined && req.output !== undefined && req.output !== '-') body = await readFile(req.output, 'utf8').catch(() => '');
    const url = stepUpUrlFromBody(body) ?? stepUpUrlForToken(origin, session.creds.access_token, challenge);
    if (!(await completeStepUp(session, url, challenge, io))) {
      await deliver(first, req);
      io.stderr('portcullis curl: the step-up was not completed in time; the response above is the gateway\'s challenge\n');
      return first.code === 0 ? 1 : first.code;
    }
    const second = await runCurl(session, req, split.rest, dir, true);
    await deliver(second, req);
    return second.code;
  } catch (err) {
    io.stderr(`portcullis curl: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  } finally {
    if (onSignal !== undefined) {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  }
}
