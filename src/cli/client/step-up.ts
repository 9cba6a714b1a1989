/**
 * The client side of the RFC 9470 step-up (SPEC §3): recognise the `insufficient_user_authentication`
 * challenge, send the user to the `step_up_url` in a browser, and wait until the gateway reports a
 * fresh enough second factor for this token on `/.portcullis/me`.
 */
import type { CliIo } from '../io.js';
import { openBrowser } from './browser.js';
import { athOf } from './dpop.js';
import { GatewayError, type Session } from './gateway-client.js';

/** What the challenge asks for. */
export interface StepUpChallenge {
  /** Seconds; the check must be at most this old. */
  readonly maxAge: number | undefined;
  /** Acceptable factors (acr_values), empty when not said. */
  readonly factors: readonly string[];
  readonly description: string | undefined;
}

/** A parameter of a WWW-Authenticate challenge (quoted-string or token), undefined when absent. */
function param(header: string, name: string): string | undefined {
  const re = new RegExp(`(?:^|[\\s,])${name}\\s*=\\s*(?:"((?:[^"\\\\]|\\\\.)*)"|([^\\s,]+))`, 'i');
  const m = re.exec(header);
  if (m === null) return undefined;
  return m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2];
}

/** The step-up challenge in a 401's WWW-Authenticate values, if there is one. */
export function readStepUpChallenge(status: number, wwwAuthenticate: readonly string[]): StepUpChallenge | undefined {
  if (status !== 401) return undefined;
  for (const h of wwwAuthenticate) {
    if (param(h, 'error') !== 'insufficient_user_authentication') continue;
    const maxAge = param(h, 'max_age');
    const acr = param(h, 'acr_values');
    return {
      maxAge: maxAge !== undefined && /^\d+$/.test(maxAge) ? Number(maxAge) : undefined,
      factors: acr === undefined ? [] : acr.split(/\s+/).filter((f) => f !== ''),
      description: param(h, 'error_description'),
    };
  }
  return undefined;
}

/** `step_up_url` from the challenge's JSON body, when it is one. */
export function stepUpUrlFromBody(body: string): string | undefined {
  try {
    const v: unknown = JSON.parse(body);
    if (typeof v === 'object' && v !== null && 'step_up_url' in v && typeof v.step_up_url === 'string') return v.step_up_url;
  } catch {
    // not JSON
  }
  return undefined;
}

/** The step-up page for this token when the body was not seen (SPEC §3: the token named by its SHA-256). */
export function stepUpUrlForToken(origin: string, accessToken: string, challenge: StepUpChallenge): string {
  const factors = challenge.factors.length > 0 ? `&factors=${challenge.factors.join(',')}` : '';
  return `${origin}/.portcullis/mfa?token=${athOf(accessToken)}${factors}`;
}

/** Whether `/.portcullis/me`'s `mfa` satisfies the challenge. */
export function mfaSatisfies(mfa: unknown, challenge: StepUpChallenge): boolean {
  if (typeof mfa !== 'object' || mfa === null) return false;
  const { factor, age_s: age } = mfa as { factor?: unknown; age_s?: unknown };
  if (typeof factor !== 'string' || typeof age !== 'number') return false;
  if (challenge.factors.length > 0 && !challenge.factors.includes(factor)) return false;
  return challenge.maxAge === undefined || age <= challenge.maxAge;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Prints and opens `url`, then polls `/.portcullis/me` with the token until the check is fresh.
 * Resolves true when it is, false after `timeoutMs`.
 */
export async function completeStepUp(session: Session, url: string, challenge: StepUpChallenge, io: CliIo, timeoutMs = 5 * 60_000): Promise<boolean> {
  const what = challenge.description ?? `a ${challenge.factors.join(' or ') || 'second-factor'} check`;
  io.stderr(`The gateway asks for a fresh second factor: ${what}.\n`);
  openBrowser(url, 'confirm it is you', io);
  io.stderr(`Waiting for the confirmation (up to ${Math.round(timeoutMs / 60_000)} min; Ctrl-C to give up)…\n`);
  const deadline = Date.now() + timeoutMs;
  let delay = 500;
  while (Date.now() < deadline) {
    await sleep(delay);
    delay = Math.min(delay * 1.5, 2000);
    try {
      const me = await session.getJson('/.portcullis/me');
      if (mfaSatisfies(me.mfa, challenge)) {
        io.stderr('Confirmed; sending the request again.\n');
        return true;
      }
    } catch (err) {
      io.stderr(`(${err instanceof Error ? err.message : String(err)})\n`);
      // The token itself is refused (revoked, expired): waiting longer cannot help.
      if (err instanceof GatewayError && err.status === 401) return false;
    }
  }
  return false;
}
