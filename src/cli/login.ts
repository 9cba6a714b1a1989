/**
 * `portcullis login [--gateway URL] [--device] [--no-bind] [--name LABEL]`: gets a short-lived,
 * gateway-issued token for the command line (docs/cli-protocol.md). By default through the browser
 * and a loopback redirect (RFC 8252, PKCE, `state`); with `--device`, or when nothing can listen on
 * loopback, through the device authorization grant (RFC 8628). Key-bound (DPoP, RFC 9449) unless
 * `--no-bind`.
 */
import { hostname } from 'node:os';
import { openBrowser } from './client/browser.js';
import { CredentialsError, gatewayOrigin, readStore, saveCredentials, type GatewayCredentials } from './client/credentials.js';
import { generateDpopKey, type DpopKey } from './client/dpop.js';
import { deviceAuthorization, GatewayError, tokenRequest, type TokenAnswer } from './client/gateway-client.js';
import { newState, pkcePair, startLoopback, type LoopbackServer } from './client/loopback.js';
import { parseCommand, type CliIo } from './io.js';

const USAGE = `Usage: portcullis login [--gateway URL] [--device] [--no-bind] [--name LABEL]

Signs the command line in to a gateway: opens the gateway's sign-in page in your browser (or prints
its URL), where you sign in (with any second factor) and approve; the browser then hands a
short-lived token back to this command on a loopback address (127.0.0.1, RFC 8252, with PKCE and
state). The token is stored per gateway in $PORTCULLIS_HOME, else $XDG_CONFIG_HOME/portcullis, else
~/.config/portcullis (credentials.json, mode 0600).

Options:
  --gateway URL   the gateway (default: $PORTCULLIS_GATEWAY, else the only gateway logged in to)
  --device        sign in on another device: prints a URL and a code to enter there (RFC 8628);
                  used automatically when nothing can listen on 127.0.0.1
  --no-bind       an unbound (bearer) token that any tool can present as is; by default the token
                  is bound to a key made for this login and kept in the credentials file (DPoP,
                  RFC 9449), so a copied token is useless without that key
  --name LABEL    the label the gateway shows for this token (default: this host's name)

Browser: $PORTCULLIS_BROWSER (a command; "none" never opens one), else $BROWSER, else xdg-open when
a display exists. The URL is always printed to stderr too.

Exit status: 0 signed in, 1 refused or failed, 2 bad command line.
`;

const WAIT_MS = 5 * 60_000;

/** Runs `login`. */
export async function runLogin(args: readonly string[], io: CliIo): Promise<number> {
  const parsed = parseCommand(args, { gateway: { type: 'string' }, device: { type: 'boolean' }, 'no-bind': { type: 'boolean' }, name: { type: 'string' } }, USAGE, io);
  if (typeof parsed === 'number') return parsed;
  const { gateway, device, name: givenName } = parsed.values;
  const bind = parsed.values['no-bind'] !== true;
  try {
    const origin = await loginGateway(gateway, io);
    // The gateway takes a label of at most 64 printable characters.
    if (givenName !== undefined && !/^[^\p{C}]{0,64}$/u.test(givenName)) {
      io.stderr('portcullis login: --name must be at most 64 printable characters\n');
      return 2;
    }
    const name = givenName ?? hostname().slice(0, 64);
    const key = bind ? await generateDpopKey() : undefined;
    let answer: TokenAnswer;
    let loopback: LoopbackServer | undefined;
    const state = newState();
    if (device !== true) {
      try {
        loopback = await startLoopback(state, WAIT_MS);
      } catch (err) {
        io.stderr(`cannot listen on 127.0.0.1 for the browser's answer (${err instanceof Error ? err.message : String(err)}); using a device code instead\n`);
      }
    }
    if (loopback !== undefined) answer = await browserLogin(origin, loopback, state, name, key, io);
    else answer = await deviceLogin(origin, name, key, device === true, io);

    if (key !== undefined && answer.token_type !== 'DPoP') io.stderr('note: the gateway issued an unbound token although a key was offered\n');
    const creds: GatewayCredentials = {
      gateway: origin,
      access_token: answer.access_token,
      refresh_token: answer.refresh_token,
      token_type: answer.token_type,
      expires_at: answer.expires_at,
      user: answer.user,
      groups: answer.groups,
      name,
      obtained_at: new Date().toISOString(),
      key: answer.token_type === 'DPoP' ? key?.jwk : undefined,
    };
    await saveCredentials(io.env, creds);
    const bound = creds.token_type === 'DPoP' ? 'bound to a key kept on this machine' : 'unbound (a bearer token)';
    io.stdout(`Logged in to ${origin} as ${answer.user} until ${answer.expires_at} (${bound}).\n`);
    return 0;
  } catch (err) {
    io.stderr(`portcullis login: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

/** `--gateway`, else $PORTCULLIS_GATEWAY, else the only stored gateway (logging in again). */
async function loginGateway(flag: string | undefined, io: CliIo): Promise<string> {
  const given = flag ?? (io.env.PORTCULLIS_GATEWAY === '' ? undefined : io.env.PORTCULLIS_GATEWAY);
  if (given !== undefined) return gatewayOrigin(given);
  const stored = Object.keys(await readStore(io.env));
  if (stored.length === 1 && stored[0] !== undefined) return stored[0];
  throw new CredentialsError('which gateway? pass --gateway URL (or set PORTCULLIS_GATEWAY)');
}

async function browserLogin(origin: string, loopback: LoopbackServer, state: string, name: string, key: DpopKey | undefined, io: CliIo): Promise<TokenAnswer> {
  try {
    const pkce = pkcePair();
    const q = new URLSearchParams({ response_type: 'code', redirect_uri: loopback.redirectUri, state, code_challenge: pkce.challenge, code_challenge_method: 'S256' });
    if (key !== undefined) q.set('jkt', key.thumbprint);
    q.set('name', name);
    openBrowser(`${origin}/.portcullis/cli/authorize?${q.toString()}`, 'sign in', io);
    io.stderr('Waiting for the browser (up to 5 minutes; Ctrl-C to give up)…\n');
    const result = await loopback.result;
    if (result.kind === 'error') {
      throw new GatewayError(result.error === 'access_denied' ? 'you declined in the browser; not logged in' : `the gateway answered ${result.error}${result.description === undefined ? '' : ` (${result.description})`}`, undefined, result.error);
    }
    return await tokenRequest(origin, { grant_type: 'authorization_code', code: result.code, code_verifier: pkce.verifier, redirect_uri: loopback.redirectUri }, key);
  } finally {
    loopback.close();
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function deviceLogin(origin: string, name: string, key: DpopKey | undefined, explicit: boolean, io: CliIo): Promise<TokenAnswer> {
  const d = await deviceAuthorization(origin, { name, ...(key === undefined ? {} : { jkt: key.thumbprint }) });
  io.stderr(`To sign in, open ${d.verification_uri} in a browser on any device and enter the code ${d.user_code}\n`);
  const url = d.verification_uri_complete ?? d.verification_uri;
  if (explicit) io.stderr(`Open this URL to sign in: ${url}\n`);
  else openBrowser(url, 'sign in', io);
  io.stderr(`Waiting for approval (the code expires in ${Math.round(d.expires_in / 60)} min; Ctrl-C to give up)…\n`);
  const deadline = Date.now() + d.expires_in * 1000;
  let interval = d.interval;
  for (;;) {
    await sleep(interval * 1000);
    try {
      return await tokenRequest(origin, { grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: d.device_code }, key);
    } catch (err) {
      if (!(err instanceof GatewayError)) throw err;
      if (err.code === 'authorization_pending') {
        // keep polling
      } else if (err.code === 'slow_down') {
        interval += 5;
      } else if (err.code === 'access_denied') {
        throw new GatewayError('the request was declined in the browser; not logged in', err.status, err.code);
      } else if (err.code === 'expired_token') {
        throw new GatewayError('the code expired before it was approved; run portcullis login again', err.status, err.code);
      } else if (err.status === undefined && Date.now() < deadline) {
        io.stderr(`(${err.message}; trying again)\n`);
      } else {
        throw err;
      }
    }
    if (Date.now() > deadline) throw new GatewayError('the code expired before it was approved; run portcullis login again', undefined, 'expired_token');
  }
}
