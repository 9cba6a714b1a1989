/**
 * The gateway's command-line endpoints (docs/cli-protocol.md) as functions: the token endpoint
 * (authorization code, device code, refresh), device authorization, revocation, and the calls a
 * signed-in command makes with its token (`/.portcullis/me`, `/cli/routes`, `/connect/<id>`), each
 * with the right `Authorization` and a fresh DPoP proof when the token is bound.
 */
import type { CliIo } from '../io.js';
import { CredentialsError, readStore, saveCredentials, type GatewayCredentials } from './credentials.js';
import { dpopProof, loadDpopKey, type DpopKey } from './dpop.js';

/** Refresh when less than this remains of a token's life. */
export const REFRESH_MARGIN_MS = 5 * 60_000;

/** The gateway said no, or could not be reached; `code` is the OAuth error code when there is one. */
export class GatewayError extends Error {
  override readonly name = 'GatewayError';
  constructor(
    message: string,
    readonly status: number | undefined,
    readonly code?: string,
  ) {
    super(message);
  }
}

/** The token endpoint's 200 answer. */
export interface TokenAnswer {
  readonly access_token: string;
  readonly token_type: 'Bearer' | 'DPoP';
  readonly expires_at: string;
  readonly refresh_token: string | undefined;
  readonly user: string;
  readonly groups: readonly string[];
}

/** The device authorization answer (RFC 8628 §3.2). */
export interface DeviceAnswer {
  readonly device_code: string;
  readonly user_code: string;
  readonly verification_uri: string;
  readonly verification_uri_complete: string | undefined;
  readonly expires_in: number;
  readonly interval: number;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

async function readJson(res: Response): Promise<unknown> {
  const text = await res.text();
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function oauthError(status: number, body: unknown, what: string): GatewayError {
  if (isRecord(body) && typeof body.error === 'string') {
    const desc = typeof body.error_description === 'string' ? body.error_description : typeof body.message === 'string' ? body.message : '';
    return new GatewayError(`${what}: ${body.error}${desc === '' ? '' : ` (${desc})`}`, status, body.error);
  }
  return new GatewayError(`${what}: HTTP ${status}`, status);
}

async function call(url: string, init: RequestInit, what: string): Promise<Response> {
  try {
    return await fetch(url, { ...init, redirect: 'manual', signal: AbortSignal.timeout(30_000) });
  } catch (err) {
    const cause = err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : '';
    throw new GatewayError(`${what}: cannot reach ${new URL(url).origin} (${err instanceof Error ? err.message : String(err)}${cause})`, undefined);
  }
}

/** Posts a form to `/.portcullis/cli/<path>` (with a DPoP proof when `key` is given). */
async function postForm(origin: string, path: string, fields: Record<string, string>, key: DpopKey | undefined, what: string): Promise<{ status: number; body: unknown }> {
  const url = `${origin}/.portcullis/cli/${path}`;
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
  if (key !== undefined) headers.dpop = await dpopProof(key, 'POST', url);
  const res = await call(url, { method: 'POST', headers, body: new URLSearchParams(fields).toString() }, what);
  return { status: res.status, body: await readJson(res) };
}

function tokenAnswer(body: unknown, now: number): TokenAnswer | undefined {
  if (!isRecord(body) || typeof body.access_token !== 'string' || typeof body.user !== 'string') return undefined;
  const type = typeof body.token_type === 'string' && body.token_type.toLowerCase() === 'dpop' ? 'DPoP' : 'Bearer';
  const expiresAt =
    typeof body.expires_at === 'string' && !Number.isNaN(Date.parse(body.expires_at))
      ? new Date(Date.parse(body.expires_at)).toISOString()
      : new Date(now + (typeof body.expires_in === 'number' ? body.expires_in : 0) * 1000).toISOString();
  return {
    access_token: body.access_token,
    token_type: type,
    expires_at: expiresAt,
    refresh_token: typeof body.refresh_token === 'string' ? body.refresh_token : undefined,
    user: body.user,
    groups: Array.isArray(body.groups) ? body.groups.filter((g): g is string => typeof g === 'string') : [],
  };
}

/**
 * `POST /.portcullis/cli/token`. Resolves the new pair; rejects with {@link GatewayError} carrying
 * the OAuth error code (`authorization_pending`, `slow_down`, `invalid_grant`, …).
 */
export async function tokenRequest(origin: string, fields: Record<string, string>, key: DpopKey | undefined): Promise<TokenAnswer> {
  const { status, body } = await postForm(origin, 'token', fields, key, 'the token endpoint refused');
  if (status === 200) {
    const t = tokenAnswer(body, Date.now());
    if (t !== undefined) return t;
    throw new GatewayError('the token endpoint answered 200 without a usable token', status);
  }
  throw oauthError(status, body, 'the gateway refused');
}

/** `POST /.portcullis/cli/device` (RFC 8628 §3.1). */
export async function deviceAuthorization(origin: string, fields: Record<string, string>): Promise<DeviceAnswer> {
  const { status, body } = await postForm(origin, 'device', fields, undefined, 'device authorization');
  if (status !== 200 || !isRecord(body)) throw oauthError(status, body, 'device authorization refused');
  const { device_code, user_code, verification_uri, verification_uri_complete, expires_in, interval } = body;
  if (typeof device_code !== 'string' || typeof user_code !== 'string' || typeof verification_uri !== 'string') throw new GatewayError('device authorization: incomplete answer', status);
  return {
    device_code,
    user_code,
    verification_uri,
    verification_uri_complete: typeof verification_uri_complete === 'string' ? verification_uri_complete : undefined,
    expires_in: typeof expires_in === 'number' && expires_in > 0 ? expires_in : 600,
    interval: typeof interval === 'number' && interval > 0 ? interval : 5,
  };
}

/** `POST /.portcullis/cli/revoke` (RFC 7009): resolves once the gateway answered 200. */
export async function revokeToken(origin: string, token: string): Promise<void> {
  const { status, body } = await postForm(origin, 'revoke', { token }, undefined, 'revocation');
  if (status !== 200) throw oauthError(status, body, 'revocation refused');
}

/** Credentials in use: the stored entry and its key, able to authorize requests. */
export class Session {
  private constructor(
    public creds: GatewayCredentials,
    private key: DpopKey | undefined,
  ) {}

  static async open(creds: GatewayCredentials): Promise<Session> {
    return new Session(creds, creds.key === undefined ? undefined : await loadDpopKey(creds.key));
  }

  get origin(): string {
    return this.creds.gateway;
  }

  get bound(): boolean {
    return this.creds.token_type === 'DPoP';
  }

  /** The headers that present the token on `method url` (a fresh proof each call when bound). */
  async authHeaders(method: string, url: string | URL): Promise<Record<string, string>> {
    if (this.creds.token_type === 'DPoP') {
      if (this.key === undefined) throw new CredentialsError('the stored token is key-bound but its key is missing; log in again');
      return { authorization: `DPoP ${this.creds.access_token}`, dpop: await dpopProof(this.key, method, url, this.creds.access_token) };
    }
    return { authorization: `Bearer ${this.creds.access_token}` };
  }

  /** Milliseconds of life left. */
  remainingMs(now = Date.now()): number {
    return Date.parse(this.creds.expires_at) - now;
  }

  /**
   * Refreshes the pair (and saves it) when less than {@link REFRESH_MARGIN_MS} remains. Rejects with
   * a {@link CredentialsError} telling the user to log in again when that is the only way.
   */
  async ensureFresh(io: CliIo, force = false): Promise<void> {
    if (!force && this.remainingMs() > REFRESH_MARGIN_MS) return;
    const again = `run portcullis login --gateway ${this.origin}`;
    if (this.creds.refresh_token === undefined) {
      if (this.remainingMs() > 0) return;
      throw new CredentialsError(`your token for ${this.origin} has expired and cannot be refreshed: ${again}`);
    }
    let t: TokenAnswer;
    try {
      t = await tokenRequest(this.origin, { grant_type: 'refresh_token', refresh_token: this.creds.refresh_token }, this.key);
    } catch (err) {
      // Another portcullis process (a tunnel, a second terminal) may have refreshed first: its pair
      // is in the store, and ours was spent.
      const stored = (await readStore(io.env).catch(() => ({})) as Record<string, GatewayCredentials | undefined>)[this.origin];
      if (stored !== undefined && stored.access_token !== this.creds.access_token && Date.parse(stored.expires_at) - Date.now() > 0) {
        this.creds = stored;
        return;
      }
      if (err instanceof GatewayError && err.status !== undefined && err.status < 500) {
        throw new CredentialsError(`the gateway refused to refresh your token (${err.code ?? `HTTP ${err.status}`}; the browser session that approved it may have ended): ${again}`);
      }
      if (this.remainingMs() > 0) {
        io.stderr(`portcullis: could not refresh the token (${err instanceof Error ? err.message : String(err)}); using it for its remaining ${Math.round(this.remainingMs() / 1000)} s\n`);
        return;
      }
      throw err;
    }
    this.creds = { ...this.creds, access_token: t.access_token, refresh_token: t.refresh_token ?? this.creds.refresh_token, token_type: t.token_type, expires_at: t.expires_at, user: t.user, groups: t.groups, obtained_at: new Date().toISOString() };
    await saveCredentials(io.env, this.creds);
  }

  /** A GET (or other request) to the gateway with the token; the raw response. */
  async fetch(path: string, init: { method?: string; accept?: string } = {}): Promise<Response> {
    const url = new URL(path, this.origin);
    const method = init.method ?? 'GET';
    const headers = { accept: init.accept ?? 'application/json', ...(await this.authHeaders(method, url)) };
    return call(url.href, { method, headers }, `${method} ${url.pathname}`);
  }

  /** A JSON GET; rejects with {@link GatewayError} unless 200. */
  async getJson(path: string): Promise<Record<string, unknown>> {
    const res = await this.fetch(path);
    const body = await readJson(res);
    if (res.status === 200 && isRecord(body)) return body;
    if (res.status === 401) {
      const www = res.headers.get('www-authenticate') ?? '';
      throw new GatewayError(`GET ${path}: the gateway does not accept your token (401${www === '' ? '' : `; ${www}`}); run portcullis login --gateway ${this.origin}`, 401, isRecord(body) && typeof body.error === 'string' ? body.error : undefined);
    }
    throw oauthError(res.status, body, `GET ${path}`);
  }
}
