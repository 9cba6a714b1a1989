/**
 * Step-up MFA: the rules around the factors (pure ceremonies live in webauthn.ts, totp.ts and
 * recovery-codes.ts). The web layer calls these with the session and the current settings and turns
 * the typed results into pages, audit records and metrics.
 *
 * Rules:
 * - Challenges (WebAuthn) are random, single use (taken from the store whatever the outcome), bound
 *   to the session that asked for them, and live 5 minutes.
 * - A user's first factor may be enrolled only within `enroll_within` of the session's sign-in;
 *   any further factor, a removal, or new recovery codes only within `enroll_within` of a step-up
 *   with an existing factor (a recovery code counts for this, and for nothing else).
 * - Enrolling a factor is itself a step-up with it (the user just proved possession).
 * - TOTP: ±1 step, a code (and any earlier one) is accepted once only, per authenticator, enforced
 *   inside the credential store's atomic update; wrong TOTP and recovery codes count against a
 *   per-user limit.
 * - A passkey's signature counter must grow when it counts; a regression (a cloned authenticator) is
 *   refused inside the atomic update, so two racing assertions cannot both pass.
 * - Step-up grants for bearer tokens: a signed-in user completes a step-up in the browser for one
 *   API token (named by its hash); requests with that token then carry the check, but only when the
 *   token's user is the user who stepped up.
 */
import { randomBytes } from 'node:crypto';
import type { MfaCheck } from '../identity/identity.js';
import { sessionReference, type Session, type SessionManager } from '../identity/sessions.js';
import type { Store } from '../store/store.js';
import { hasFactors, NO_FACTORS, type CredentialStore, type UserFactors, type WebAuthnCredential } from './factors.js';
import { newRecoveryCodes, useRecoveryCode } from './recovery-codes.js';
import { secretContext, type SecretBox } from './secret-box.js';
import { checkTotp, newTotpSecret, totpQrSvg, totpUri } from './totp.js';
import {
  authenticationOptions,
  registrationOptions,
  verifyAuthentication,
  verifyRegistration,
  type WebAuthnFailure,
  type WebAuthnSettings,
} from './webauthn.js';

/** The settings in force for one request (from the current config). */
export interface MfaSettings {
  readonly webauthn: WebAuthnSettings;
  readonly totpIssuer: string;
  readonly enrollWithinMs: number;
  readonly attempts: { readonly perUser: number; readonly windowMs: number };
  /** How long a bearer token's step-up grant is kept (the check's own age is judged by the route). */
  readonly grantTtlMs: number;
}

/** What the service needs. */
export interface MfaServiceDeps {
  readonly credentials: CredentialStore;
  readonly store: Store;
  readonly secrets: SecretBox;
  readonly sessions: SessionManager;
  readonly now: () => number;
}

/** Why an enrolment or a management action is not allowed now. */
export type EnrollGate = 'ok' | 'sign-in-too-old' | 'step-up-required';

/** Why a check failed. */
export type MfaFailure =
  | WebAuthnFailure
  | 'no-challenge'
  | 'no-credentials'
  | 'wrong-code'
  | 'replayed'
  | 'already-used'
  | 'rate-limited'
  | 'not-allowed'
  | 'no-pending-enrollment'
  | 'unknown-factor';

/** A failed step. */
export interface MfaFail {
  readonly ok: false;
  readonly reason: MfaFailure;
  readonly detail: string;
  /** The credential concerned, when known (for the audit record). */
  readonly credential?: string;
}

/** A successful check or enrolment: the updated session, and recovery codes when they were just made. */
export interface MfaDone {
  readonly ok: true;
  readonly session: Session;
  readonly check: MfaCheck;
  /** Shown once: the first factor's enrolment creates them. */
  readonly recoveryCodes?: readonly string[];
}

/** A TOTP enrolment in progress: what the page shows. */
export interface TotpEnrollment {
  readonly secret: string;
  readonly uri: string;
  readonly qrSvg: string;
}

const CHALLENGE_TTL_MS = 5 * 60_000;
const PENDING_TOTP_TTL_MS = 10 * 60_000;
const NAME_MAX = 64;

/** A thrown value that aborts a credential-store update with a typed failure. */
class UpdateRefused extends Error {
  constructor(readonly failure: MfaFail) {
    super(failure.detail);
  }
}

function fail(reason: MfaFailure, detail: string, credential?: string): MfaFail {
  return credential === undefined ? { ok: false, reason, detail } : { ok: false, reason, detail, credential };
}

/** A user-chosen factor name: trimmed, control characters removed, capped; a default when empty. */
export function factorName(raw: string | undefined | null, fallback: string): string {
  let name = '';
  for (const ch of (raw ?? '').trim()) {
    const c = ch.codePointAt(0) ?? 0;
    if (c >= 0x20 && c !== 0x7f && !(c >= 0x80 && c < 0xa0)) name += ch;
  }
  const chars = Array.from(name.toWellFormed());
  return chars.length === 0 ? fallback : chars.slice(0, NAME_MAX).join('');
}

/** Creates the MFA service. */
export function createMfaService(deps: MfaServiceDeps) {
  const { credentials, store, secrets, sessions, now } = deps;

  function challengeKey(purpose: 'register' | 'authenticate', session: Session): string {
    return `mfa-challenge:${purpose}:${sessionReference(session.id)}`;
  }

  function failKey(user: string): string {
    return `mfa-fail:${user}`;
  }

  /** Whether this session may enrol, remove or regenerate now, given the user's factors. */
  function enrollGate(session: Session, factors: UserFactors, settings: MfaSettings): EnrollGate {
    const at = now();
    if (!hasFactors(factors)) return at - session.record.authTime <= settings.enrollWithinMs ? 'ok' : 'sign-in-too-old';
    const check = session.record.mfa;
    return check !== undefined && at - check.at <= settings.enrollWithinMs && at - check.at >= -60_000 ? 'ok' : 'step-up-required';
  }

  function gateFailure(gate: Exclude<EnrollGate, 'ok'>): MfaFail {
    return gate === 'sign-in-too-old'
      ? fail('not-allowed', 'a first factor can be added only right after signing in; sign in again')
      : fail('not-allowed', 'confirm it is you with an existing factor first');
  }

  async function markChecked(session: Session, check: MfaCheck): Promise<Session> {
    return sessions.update(session, { mfa: check });
  }

  async function rateLimited(user: string, settings: MfaSettings): Promise<boolean> {
    const n = Number((await store.get(failKey(user))) ?? 0);
    return n >= settings.attempts.perUser;
  }

  async function countFailure(user: string, settings: MfaSettings): Promise<void> {
    await store.increment(failKey(user), settings.attempts.windowMs);
  }

  /** Runs an atomic update whose `change` may refuse with a typed failure. */
  async function guardedUpdate(user: string, change: (f: UserFactors) => UserFactors): Promise<UserFactors | MfaFail> {
    try {
      return await credentials.update(user, change);
    } catch (err) {
      if (err instanceof UpdateRefused) return err.failure;
      throw err;
    }
  }

  function isFail(v: UserFactors | MfaFail): v is MfaFail {
    return 'ok' in v;
  }

  return {
    factors: (user: string): Promise<UserFactors> => credentials.get(user),
    enrollGate,

    // --- passkeys ------------------------------------------------------------------------------

    async beginPasskeyRegistration(session: Session, settings: MfaSettings) {
      const user = session.record.user;
      const factors = await credentials.get(user);
      const gate = enrollGate(session, factors, settings);
      if (gate !== 'ok') return gateFailure(gate);
      const handle = factors.userHandle ?? randomBytes(32).toString('base64url');
      const { options, challenge } = await registrationOptions(settings.webauthn, { name: user, displayName: session.record.email ?? user, handle }, factors.webauthn);
      await store.set(challengeKey('register', session), JSON.stringify({ challenge, handle }), CHALLENGE_TTL_MS);
      return { ok: true as const, options };
    },

    async finishPasskeyRegistration(session: Session, settings: MfaSettings, response: unknown, origin: string, rawName: string | undefined): Promise<MfaDone | MfaFail> {
      const user = session.record.user;
      const saved = await store.take(challengeKey('register', session));
      if (saved === undefined) return fail('no-challenge', 'the registration expired or was already used; start again');
      const { challenge, handle } = JSON.parse(saved) as { challenge: string; handle: string };
      const before = await credentials.get(user);
      const gate = enrollGate(session, before, settings);
      if (gate !== 'ok') return gateFailure(gate);
      const at = now();
      const verified = await verifyRegistration(settings.webauthn, response, { challenge, origin, existing: before.webauthn }, { name: factorName(rawName, `Passkey ${before.webauthn.length + 1}`), now: at });
      if (!verified.ok) return fail(verified.reason, verified.detail);
      const credential = verified.credential;
      let codes: string[] | undefined;
      const updated = await guardedUpdate(user, (f) => {
        if (f.webauthn.some((c) => c.id === credential.id)) throw new UpdateRefused(fail('already-registered', 'this passkey is already registered', credential.id));
        if (f.userHandle !== undefined && f.userHandle !== handle) throw new UpdateRefused(fail('challenge-mismatch', 'the registration was started for another account state; start again'));
        const first = !hasFactors(f);
        const recovery = first ? newRecoveryCodes() : undefined;
        codes = recovery?.codes;
        return { ...f, userHandle: handle, webauthn: [...f.webauthn, credential], recovery: recovery === undefined ? f.recovery : recovery.stored };
      });
      if (isFail(updated)) return updated;
      const check: MfaCheck = { factor: 'webauthn', at, credential: credential.id };
      const next = await markChecked(session, check);
      return codes === undefined ? { ok: true, session: next, check } : { ok: true, session: next, check, recoveryCodes: codes };
    },

    async beginPasskeyAuthentication(session: Session, settings: MfaSettings) {
      const factors = await credentials.get(session.record.user);
      if (factors.webauthn.length === 0) return fail('no-credentials', 'no passkey is registered for this account');
      const { options, challenge } = await authenticationOptions(settings.webauthn, factors.webauthn);
      await store.set(challengeKey('authenticate', session), challenge, CHALLENGE_TTL_MS);
      return { ok: true as const, options };
    },

    async finishPasskeyAuthentication(session: Session, settings: MfaSettings, response: unknown, origin: string): Promise<MfaDone | MfaFail> {
      const user = session.record.user;
      const challenge = await store.take(challengeKey('authenticate', session));
      if (challenge === undefined) return fail('no-challenge', 'the sign-in request expired or was already used; try again');
      const factors = await credentials.get(user);
      const at = now();
      const verified = await verifyAuthentication(settings.webauthn, response, { challenge, origin }, factors.webauthn, at);
      if (!verified.ok) return fail(verified.reason, verified.detail);
      const { credentialId, newCounter } = verified;
      const updated = await guardedUpdate(user, (f) => {
        const stored = f.webauthn.find((c) => c.id === credentialId);
        if (stored === undefined) throw new UpdateRefused(fail('unknown-credential', 'this passkey was removed', credentialId));
        if ((stored.counter !== 0 || newCounter !== 0) && newCounter <= stored.counter) {
          throw new UpdateRefused(fail('counter-regression', `signature counter went from ${stored.counter} to ${newCounter}: the authenticator may be cloned`, credentialId));
        }
        const next: WebAuthnCredential = { ...stored, counter: newCounter, lastUsedAt: at };
        return { ...f, webauthn: f.webauthn.map((c) => (c.id === credentialId ? next : c)) };
      });
      if (isFail(updated)) return updated;
      const check: MfaCheck = { factor: 'webauthn', at, credential: credentialId };
      return { ok: true, session: await markChecked(session, check), check };
    },

    // --- TOTP ----------------------------------------------------------------------------------

    async beginTotpEnrollment(session: Session, settings: MfaSettings): Promise<({ ok: true } & TotpEnrollment) | MfaFail> {
      const user = session.record.user;
      const gate = enrollGate(session, await credentials.get(user), settings);
      if (gate !== 'ok') return gateFailure(gate);
      const secret = newTotpSecret();
      const ref = sessionReference(session.id);
      await store.set(`mfa-totp-pending:${ref}`, secrets.seal(secret, secretContext('pending-totp', ref)), PENDING_TOTP_TTL_MS);
      const uri = totpUri({ issuer: settings.totpIssuer, account: user, secret });
      return { ok: true, secret, uri, qrSvg: await totpQrSvg(uri) };
    },

    /** The enrolment in progress for this session (to show the QR code again after a wrong code). */
    async pendingTotpEnrollment(session: Session, settings: MfaSettings): Promise<TotpEnrollment | undefined> {
      const ref = sessionReference(session.id);
      const sealed = await store.get(`mfa-totp-pending:${ref}`);
      if (sealed === undefined) return undefined;
      const secret = secrets.open(sealed, secretContext('pending-totp', ref));
      const uri = totpUri({ issuer: settings.totpIssuer, account: session.record.user, secret });
      return { secret, uri, qrSvg: await totpQrSvg(uri) };
    },

    async confirmTotpEnrollment(session: Session, settings: MfaSettings, code: string, rawName: string | undefined): Promise<MfaDone | MfaFail> {
      const user = session.record.user;
      const before = await credentials.get(user);
      const gate = enrollGate(session, before, settings);
      if (gate !== 'ok') return gateFailure(gate);
      if (await rateLimited(user, settings)) return fail('rate-limited', 'too many wrong codes; wait a few minutes');
      const ref = sessionReference(session.id);
      const sealed = await store.get(`mfa-totp-pending:${ref}`);
      if (sealed === undefined) return fail('no-pending-enrollment', 'the set-up expired; start again');
      const secret = secrets.open(sealed, secretContext('pending-totp', ref));
      const at = now();
      const result = checkTotp({ secret, code, now: at, lastStep: -1 });
      if (!result.ok) {
        await countFailure(user, settings);
        return fail(result.reason === 'malformed' ? 'malformed' : 'wrong-code', result.reason === 'malformed' ? 'enter the 6-digit code' : 'that code is not right; check the time on your device');
      }
      const id = randomBytes(16).toString('base64url');
      const name = factorName(rawName, `Authenticator app ${before.totp.length + 1}`);
      let codes: string[] | undefined;
      const updated = await guardedUpdate(user, (f) => {
        const first = !hasFactors(f);
        const recovery = first ? newRecoveryCodes() : undefined;
        codes = recovery?.codes;
        const credential = { id, name, secret: secrets.seal(secret, secretContext('totp', user, id)), createdAt: at, lastStep: result.step, lastUsedAt: at };
        return { ...f, totp: [...f.totp, credential], recovery: recovery === undefined ? f.recovery : recovery.stored };
      });
      if (isFail(updated)) return updated;
      await store.delete(`mfa-totp-pending:${ref}`);
      const check: MfaCheck = { factor: 'totp', at, credential: id };
      const next = await markChecked(session, check);
      return codes === undefined ? { ok: true, session: next, check } : { ok: true, session: next, check, recoveryCodes: codes };
    },

    async verifyTotp(session: Session, settings: MfaSettings, code: string): Promise<MfaDone | MfaFail> {
      const user = session.record.user;
      if (await rateLimited(user, settings)) return fail('rate-limited', 'too many wrong codes; wait a few minutes');
      const factors = await credentials.get(user);
      if (factors.totp.length === 0) return fail('no-credentials', 'no authenticator app is set up for this account');
      const at = now();
      let replayed: string | undefined;
      for (const cred of factors.totp) {
        const secret = secrets.open(cred.secret, secretContext('totp', user, cred.id));
        const r = checkTotp({ secret, code, now: at, lastStep: cred.lastStep });
        if (r.ok) {
          const updated = await guardedUpdate(user, (f) => {
            const stored = f.totp.find((c) => c.id === cred.id);
            if (stored === undefined) throw new UpdateRefused(fail('unknown-credential', 'this authenticator was removed', cred.id));
            if (r.step <= stored.lastStep) throw new UpdateRefused(fail('replayed', 'that code was already used; wait for the next one', cred.id));
            return { ...f, totp: f.totp.map((c) => (c.id === cred.id ? { ...stored, lastStep: r.step, lastUsedAt: at } : c)) };
          });
          if (isFail(updated)) {
            await countFailure(user, settings);
            return updated;
          }
          const check: MfaCheck = { factor: 'totp', at, credential: cred.id };
          return { ok: true, session: await markChecked(session, check), check };
        }
        if (r.reason === 'malformed') return fail('malformed', 'enter the 6-digit code from your authenticator app');
        if (r.reason === 'replayed') replayed = cred.id;
      }
      await countFailure(user, settings);
      return replayed === undefined ? fail('wrong-code', 'that code is not right') : fail('replayed', 'that code was already used; wait for the next one', replayed);
    },

    // --- recovery codes --------------------------------------------------------------------------

    async useRecoveryCode(session: Session, settings: MfaSettings, code: string): Promise<MfaDone | MfaFail> {
      const user = session.record.user;
      if (await rateLimited(user, settings)) return fail('rate-limited', 'too many wrong codes; wait a few minutes');
      const at = now();
      const updated = await guardedUpdate(user, (f) => {
        const r = useRecoveryCode(f.recovery, code, at);
        if (!r.ok) throw new UpdateRefused(fail(r.reason === 'malformed' ? 'malformed' : r.reason, r.reason === 'already-used' ? 'that recovery code was already used' : 'that recovery code is not right'));
        return { ...f, recovery: r.remaining };
      });
      if (isFail(updated)) {
        if (updated.reason !== 'malformed') await countFailure(user, settings);
        return updated;
      }
      const check: MfaCheck = { factor: 'recovery', at };
      return { ok: true, session: await markChecked(session, check), check };
    },

    async regenerateRecoveryCodes(session: Session, settings: MfaSettings): Promise<{ ok: true; codes: readonly string[] } | MfaFail> {
      const user = session.record.user;
      const factors = await credentials.get(user);
      if (!hasFactors(factors)) return fail('no-credentials', 'add a passkey or an authenticator app first');
      const gate = enrollGate(session, factors, settings);
      if (gate !== 'ok') return gateFailure(gate);
      const fresh = newRecoveryCodes();
      const updated = await guardedUpdate(user, (f) => ({ ...f, recovery: fresh.stored }));
      if (isFail(updated)) return updated;
      return { ok: true, codes: fresh.codes };
    },

    // --- removal ---------------------------------------------------------------------------------

    async removeFactor(session: Session, settings: MfaSettings, kind: 'webauthn' | 'totp', id: string): Promise<{ ok: true; factors: UserFactors } | MfaFail> {
      const user = session.record.user;
      const gate = enrollGate(session, await credentials.get(user), settings);
      if (gate !== 'ok') return gateFailure(gate);
      const updated = await guardedUpdate(user, (f) => {
        const list = kind === 'webauthn' ? f.webauthn : f.totp;
        if (!list.some((c) => c.id === id)) throw new UpdateRefused(fail('unknown-factor', 'no such factor', id));
        const next = kind === 'webauthn' ? { ...f, webauthn: f.webauthn.filter((c) => c.id !== id) } : { ...f, totp: f.totp.filter((c) => c.id !== id) };
        // Recovery codes stand in for lost factors; with no factor left they would be a factor of their own.
        return hasFactors(next) ? next : { ...NO_FACTORS, userHandle: f.userHandle };
      });
      if (isFail(updated)) return updated;
      return { ok: true, factors: updated };
    },

    // --- bearer-token step-up grants -------------------------------------------------------------

    /** Records that `user` stepped up for the bearer token named `tokenRef`. */
    async grantToken(tokenRef: string, user: string, check: MfaCheck, settings: MfaSettings): Promise<void> {
      await store.set(`mfa-grant:${tokenRef}`, JSON.stringify({ user, check }), settings.grantTtlMs);
    },

    /** The step-up check granted to a bearer token, when its user is the one who stepped up. */
    async tokenGrant(tokenRef: string, user: string): Promise<MfaCheck | undefined> {
      const raw = await store.get(`mfa-grant:${tokenRef}`);
      if (raw === undefined) return undefined;
      const saved = JSON.parse(raw) as { user: string; check: MfaCheck };
      return saved.user === user ? saved.check : undefined;
    },
  };
}

/** The MFA service. */
export type MfaService = ReturnType<typeof createMfaService>;
