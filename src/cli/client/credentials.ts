/**
 * The command line's credentials store: one JSON file, `credentials.json`, keyed by gateway origin,
 * in `$PORTCULLIS_HOME`, else `$XDG_CONFIG_HOME/portcullis`, else `~/.config/portcullis`. The
 * directory is 0700, the file 0600 and replaced atomically (under a lock, so a `token` refresh and
 * a `tunnel` refresh do not lose each other's writes). A file that group or others can read is
 * refused, with the command that fixes it.
 */
import { chmod, lstat, mkdir, readFile, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { errorCode, withFileLock, writeFileAtomic } from '../../identity/atomic-file.js';
import type { CliIo } from '../io.js';

/** A private EC key as a JWK (P-256), kept for key-bound (DPoP) tokens. */
export interface PrivateJwk {
  readonly kty: 'EC';
  readonly crv: 'P-256';
  readonly x: string;
  readonly y: string;
  readonly d: string;
}

/** What the command line keeps for one gateway. */
export interface GatewayCredentials {
  readonly gateway: string;
  readonly access_token: string;
  readonly refresh_token: string | undefined;
  /** `DPoP` when the token is bound to `key`, else `Bearer`. */
  readonly token_type: 'Bearer' | 'DPoP';
  /** ISO 8601. */
  readonly expires_at: string;
  readonly user: string;
  readonly groups: readonly string[];
  /** The label the token was issued under (`--name`). */
  readonly name: string | undefined;
  /** ISO 8601: when this pair was obtained. */
  readonly obtained_at: string;
  /** The private key the token is bound to (RFC 9449), when bound. */
  readonly key: PrivateJwk | undefined;
}

/** A problem with the credentials store the user can act on. */
export class CredentialsError extends Error {
  override readonly name = 'CredentialsError';
}

const FILE = 'credentials.json';

/** The directory that holds the credentials file. */
export function credentialsDir(env: CliIo['env']): string {
  if (env.PORTCULLIS_HOME !== undefined && env.PORTCULLIS_HOME !== '') return env.PORTCULLIS_HOME;
  const xdg = env.XDG_CONFIG_HOME;
  if (xdg !== undefined && xdg !== '') return join(xdg, 'portcullis');
  return join(env.HOME !== undefined && env.HOME !== '' ? env.HOME : homedir(), '.config', 'portcullis');
}

/** The credentials file's path. */
export function credentialsFile(env: CliIo['env']): string {
  return join(credentialsDir(env), FILE);
}

/**
 * A gateway URL as the store keys it: its origin (`https://access.example.com`), lower-case, default
 * port dropped. Throws {@link CredentialsError} for anything that is not an http(s) URL.
 */
export function gatewayOrigin(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new CredentialsError(`not a URL: ${JSON.stringify(url)} (give the gateway's address, e.g. https://access.example.com)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new CredentialsError(`the gateway URL must be http:// or https://, not ${u.protocol}`);
  if (u.username !== '' || u.password !== '') throw new CredentialsError('the gateway URL must not carry a user name or password');
  return u.origin;
}

type Store = Record<string, GatewayCredentials>;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseEntry(origin: string, v: unknown): GatewayCredentials | undefined {
  if (!isRecord(v)) return undefined;
  const s = (k: string): string | undefined => (typeof v[k] === 'string' ? v[k] : undefined);
  const access = s('access_token');
  const expires = s('expires_at');
  const user = s('user');
  const type = s('token_type');
  if (access === undefined || expires === undefined || user === undefined || (type !== 'Bearer' && type !== 'DPoP')) return undefined;
  const key = v.key;
  let jwk: PrivateJwk | undefined;
  if (isRecord(key) && key.kty === 'EC' && key.crv === 'P-256' && typeof key.x === 'string' && typeof key.y === 'string' && typeof key.d === 'string') {
    jwk = { kty: 'EC', crv: 'P-256', x: key.x, y: key.y, d: key.d };
  }
  if (type === 'DPoP' && jwk === undefined) return undefined;
  const groups = Array.isArray(v.groups) ? v.groups.filter((g): g is string => typeof g === 'string') : [];
  return { gateway: origin, access_token: access, refresh_token: s('refresh_token'), token_type: type, expires_at: expires, user, groups, name: s('name'), obtained_at: s('obtained_at') ?? expires, key: jwk };
}

/**
 * Reads the whole store (empty when there is no file). Refuses a file that is not a regular file,
 * or that group or others may read.
 */
export async function readStore(env: CliIo['env']): Promise<Store> {
  const file = credentialsFile(env);
  let info;
  try {
    info = await lstat(file);
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return {};
    throw new CredentialsError(`cannot read ${file}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (!info.isFile()) throw new CredentialsError(`${file} is not a regular file; remove it and log in again`);
  if ((info.mode & 0o077) !== 0) {
    throw new CredentialsError(`${file} is readable by others (mode ${(info.mode & 0o777).toString(8).padStart(4, '0')}); its tokens may have leaked. Fix it with: chmod 600 ${file} (and consider portcullis logout, then login)`);
  }
  const uid = process.getuid?.();
  if (uid !== undefined && info.uid !== uid) throw new CredentialsError(`${file} belongs to another user (uid ${info.uid}); refusing to use it`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    throw new CredentialsError(`${file} is not valid JSON (${err instanceof Error ? err.message : String(err)}); remove it and log in again`);
  }
  const gateways = isRecord(parsed) && isRecord(parsed.gateways) ? parsed.gateways : {};
  const out: Store = {};
  for (const [origin, entry] of Object.entries(gateways)) {
    const c = parseEntry(origin, entry);
    if (c !== undefined) out[origin] = c;
  }
  return out;
}

async function ensureDir(env: CliIo['env']): Promise<string> {
  const dir = credentialsDir(env);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const info = await lstat(dir);
  if (!info.isDirectory()) throw new CredentialsError(`${dir} is not a directory`);
  if ((info.mode & 0o077) !== 0) await chmod(dir, 0o700);
  return dir;
}

/** Changes the store under its lock: `fn` gets the current entries and returns the new ones. */
export async function updateStore(env: CliIo['env'], fn: (store: Store) => Store): Promise<void> {
  await ensureDir(env);
  const file = credentialsFile(env);
  await withFileLock(file, async () => {
    const next = fn(await readStore(env));
    const gateways: Record<string, unknown> = {};
    for (const [origin, c] of Object.entries(next)) {
      const { gateway: _gateway, ...rest } = c;
      gateways[origin] = rest;
    }
    if (Object.keys(gateways).length === 0) {
      await rm(file, { force: true });
      return;
    }
    await writeFileAtomic(file, `${JSON.stringify({ version: 1, gateways }, null, 2)}\n`, { mode: 0o600 });
  });
}

/** Saves (or replaces) one gateway's credentials. */
export function saveCredentials(env: CliIo['env'], c: GatewayCredentials): Promise<void> {
  return updateStore(env, (store) => ({ ...store, [c.gateway]: c }));
}

/** Removes one gateway's credentials; resolves whether there were any. */
export async function removeCredentials(env: CliIo['env'], origin: string): Promise<boolean> {
  let had = false;
  await updateStore(env, (store) => {
    had = origin in store;
    return Object.fromEntries(Object.entries(store).filter(([o]) => o !== origin));
  });
  return had;
}

/**
 * Which gateway a command means: `--gateway`, else `$PORTCULLIS_GATEWAY`, else the only stored one.
 * Throws {@link CredentialsError} when that cannot be told.
 */
export async function resolveGateway(flag: string | undefined, env: CliIo['env']): Promise<string> {
  const given = flag ?? (env.PORTCULLIS_GATEWAY !== '' ? env.PORTCULLIS_GATEWAY : undefined);
  if (given !== undefined) return gatewayOrigin(given);
  const stored = Object.keys(await readStore(env));
  if (stored.length === 1 && stored[0] !== undefined) return stored[0];
  if (stored.length === 0) throw new CredentialsError('not logged in to any gateway: run portcullis login --gateway URL');
  throw new CredentialsError(`logged in to several gateways (${stored.join(', ')}): pass --gateway URL or set PORTCULLIS_GATEWAY`);
}

/** The stored credentials for `origin`; throws {@link CredentialsError} when there are none. */
export async function loadCredentials(env: CliIo['env'], origin: string): Promise<GatewayCredentials> {
  const c = (await readStore(env))[origin];
  if (c === undefined) throw new CredentialsError(`not logged in to ${origin}: run portcullis login --gateway ${origin}`);
  return c;
}
