import { randomBytes } from 'node:crypto';
import type {
  PublicKeyCredentialCreationOptionsJSON as BrowserCreationOptions,
  PublicKeyCredentialRequestOptionsJSON as BrowserRequestOptions,
} from '@simplewebauthn/browser';
import { isoCBOR } from '@simplewebauthn/server/helpers';
import { describe, expect, it } from 'vitest';
import type { WebAuthnCredential } from '../../src/mfa/factors.js';
import {
  authenticationOptions,
  registrationOptions,
  SUPPORTED_ALGORITHMS,
  verifyAuthentication,
  verifyRegistration,
  type AuthenticationResponseJSON,
  type RegistrationResponseJSON,
  type WebAuthnFailure,
  type WebAuthnSettings,
} from '../../src/mfa/webauthn.js';
import { SoftAuthenticator, SoftAuthenticatorError, type CeremonyOverrides, type SoftAlgorithm } from '../support/soft-authenticator.js';

const ORIGIN = 'https://gate.example.test';
const RP_ID = 'gate.example.test';
const NOW = 1_700_000_000_000;
const USER = { name: 'alice', displayName: 'Alice Liddell', handle: randomBytes(32).toString('base64url') };

type Json = Record<string, unknown>;
type Cbor = Parameters<typeof isoCBOR.encode>[0];

function settings(userVerification: WebAuthnSettings['userVerification'] = 'preferred'): WebAuthnSettings {
  return { rpId: RP_ID, rpName: 'Portcullis', userVerification };
}

function authenticator(algorithm: SoftAlgorithm = 'ES256', extra: Partial<Parameters<typeof SoftAuthenticator.create>[0]> = {}): SoftAuthenticator {
  return SoftAuthenticator.create({ origin: ORIGIN, algorithm, ...extra });
}

function b64u(bytes: Uint8Array | string): string {
  return Buffer.from(bytes).toString('base64url');
}

/** A deep, mutable JSON copy of a response (what a request body parser would hand over). */
function copy(value: RegistrationResponseJSON | AuthenticationResponseJSON): Json {
  return JSON.parse(JSON.stringify(value)) as Json;
}

function inner(value: Json): Json {
  return value.response as Json;
}

function refusal(reason: WebAuthnFailure): unknown {
  return { ok: false, reason, detail: expect.any(String) as unknown };
}

async function runRegistration(
  s: WebAuthnSettings,
  auth: SoftAuthenticator,
  o: CeremonyOverrides = {},
  existing: readonly WebAuthnCredential[] = [],
  mutate?: (r: Json) => unknown,
) {
  const { options, challenge } = await registrationOptions(s, USER, existing);
  const response = auth.register(options, o);
  const body = mutate ? mutate(copy(response)) : response;
  return verifyRegistration(s, body, { challenge, origin: ORIGIN, existing }, { name: 'laptop', now: NOW });
}

async function enrol(s: WebAuthnSettings, auth: SoftAuthenticator): Promise<WebAuthnCredential> {
  const result = await runRegistration(s, auth);
  if (!result.ok) throw new Error(`registration failed: ${result.reason} ${result.detail}`);
  return result.credential;
}

async function runAuthentication(
  s: WebAuthnSettings,
  auth: SoftAuthenticator,
  credentials: readonly WebAuthnCredential[],
  o: CeremonyOverrides = {},
  mutate?: (r: Json) => unknown,
) {
  const { options, challenge } = await authenticationOptions(s, credentials);
  const response = auth.authenticate(options, o);
  const body = mutate ? mutate(copy(response)) : response;
  return verifyAuthentication(s, body, { challenge, origin: ORIGIN }, credentials, NOW + 1000);
}

/** Re-encodes a base64url clientDataJSON after changing its members. */
function editClientData(encoded: unknown, change: (data: Json) => void): string {
  const data = JSON.parse(Buffer.from(encoded as string, 'base64url').toString('utf8')) as Json;
  change(data);
  return b64u(JSON.stringify(data));
}

/** A mutation replacing members of `response`. */
function patch(members: Json): (r: Json) => Json {
  return (r) => ({ ...r, response: { ...inner(r), ...members } });
}

/** A mutation editing the (then unsigned) client data. */
function clientData(change: (data: Json) => void): (r: Json) => Json {
  return (r) => ({ ...r, response: { ...inner(r), clientDataJSON: editClientData(inner(r).clientDataJSON, change) } });
}

describe('registrationOptions', () => {
  it('offers Ed25519, ES256 and RS256, attestation none, preferred resident key and the configured user verification', async () => {
    const { options, challenge } = await registrationOptions(settings('required'), USER, []);
    expect(options.pubKeyCredParams).toEqual([
      { alg: -8, type: 'public-key' },
      { alg: -7, type: 'public-key' },
      { alg: -257, type: 'public-key' },
    ]);
    expect(SUPPORTED_ALGORITHMS).toEqual([-8, -7, -257]);
    expect(options.attestation).toBe('none');
    expect(options.authenticatorSelection).toMatchObject({ residentKey: 'preferred', requireResidentKey: false, userVerification: 'required' });
    expect(options.rp).toEqual({ id: RP_ID, name: 'Portcullis' });
    expect(options.user).toEqual({ id: USER.handle, name: 'alice', displayName: 'Alice Liddell' });
    expect(options.challenge).toBe(challenge);
    expect(challenge).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(challenge, 'base64url')).toHaveLength(32);
    expect(options.excludeCredentials).toEqual([]);
    // What @simplewebauthn/browser's startRegistration({ optionsJSON }) takes.
    const browser: BrowserCreationOptions = options;
    expect(browser.challenge).toBe(challenge);
  });

  it('issues a fresh challenge each time', async () => {
    const a = await registrationOptions(settings(), USER, []);
    const b = await registrationOptions(settings(), USER, []);
    expect(a.challenge).not.toBe(b.challenge);
  });

  it('excludes the existing credentials, with their transports', async () => {
    const s = settings();
    const credential = await enrol(s, authenticator('ES256', { transports: ['usb', 'nfc'] }));
    const { options } = await registrationOptions(s, USER, [credential]);
    expect(options.excludeCredentials).toEqual([{ id: credential.id, type: 'public-key', transports: ['usb', 'nfc'] }]);
  });

  it('refuses a user handle that is not base64url of 1 to 64 bytes', async () => {
    await expect(registrationOptions(settings(), { ...USER, handle: '' }, [])).rejects.toThrow(TypeError);
    await expect(registrationOptions(settings(), { ...USER, handle: 'not base64!' }, [])).rejects.toThrow(TypeError);
    await expect(registrationOptions(settings(), { ...USER, handle: b64u(randomBytes(65)) }, [])).rejects.toThrow(TypeError);
  });
});

describe('authenticationOptions', () => {
  it('allows exactly the user credentials and asks for the configured user verification', async () => {
    const s = settings('discouraged');
    const one = await enrol(s, authenticator('ES256', { transports: ['internal', 'hybrid'] }));
    const two = await enrol(s, authenticator('Ed25519', { transports: ['usb'] }));
    const { options, challenge } = await authenticationOptions(s, [one, two]);
    expect(options.rpId).toBe(RP_ID);
    expect(options.userVerification).toBe('discouraged');
    expect(options.allowCredentials).toEqual([
      { id: one.id, type: 'public-key', transports: ['internal', 'hybrid'] },
      { id: two.id, type: 'public-key', transports: ['usb'] },
    ]);
    expect(options.challenge).toBe(challenge);
    expect(Buffer.from(challenge, 'base64url')).toHaveLength(32);
    const browser: BrowserRequestOptions = options;
    expect(browser.challenge).toBe(challenge);
  });
});

describe.each(['ES256', 'Ed25519', 'RS256'] as const)('%s: register, then authenticate', (algorithm) => {
  it('accepts both ceremonies and tracks the counter', async () => {
    const s = settings();
    const auth = authenticator(algorithm, { transports: ['usb', 'nfc', 'usb'] });
    const registered = await runRegistration(s, auth);
    expect(registered).toEqual({
      ok: true,
      userVerified: true,
      credential: {
        id: auth.credentialId,
        name: 'laptop',
        publicKey: auth.publicKey,
        counter: 1,
        transports: ['usb', 'nfc'],
        backedUp: false,
        createdAt: NOW,
        lastUsedAt: undefined,
      },
    });
    if (!registered.ok) return;
    const first = await runAuthentication(s, auth, [registered.credential]);
    expect(first).toEqual({
      ok: true,
      credentialId: auth.credentialId,
      newCounter: 2,
      userVerified: true,
      credential: { ...registered.credential, counter: 2, lastUsedAt: NOW + 1000 },
    });
    if (!first.ok) return;
    const second = await runAuthentication(s, auth, [first.credential]);
    expect(second).toMatchObject({ ok: true, newCounter: 3 });
  });
});

describe('verifyRegistration', () => {
  it('reports a backup-eligible credential as backed up (syncable)', async () => {
    const result = await runRegistration(settings(), authenticator('ES256', { be: true, bs: true }));
    expect(result).toMatchObject({ ok: true, credential: { backedUp: true } });
  });

  it('cleans the credential name: control and bidi characters removed, trimmed, 64 code points at most', async () => {
    const s = settings();
    const named = async (name: string) => {
      const { options, challenge } = await registrationOptions(s, USER, []);
      const result = await verifyRegistration(s, authenticator().register(options), { challenge, origin: ORIGIN, existing: [] }, { name, now: NOW });
      return result.ok ? result.credential.name : result.reason;
    };
    expect(await named('  my\u0000 key\u202e \n')).toBe('my key');
    expect(await named('🔑'.repeat(70))).toBe('🔑'.repeat(64));
    expect(await named(' \t ')).toBe('Passkey');
  });

  it('refuses another origin (scheme, host, port) and cross-origin frames', async () => {
    const s = settings();
    for (const origin of ['https://evil.example', 'http://gate.example.test', 'https://gate.example.test:8443', 'https://sub.gate.example.test']) {
      expect(await runRegistration(s, authenticator(), { origin })).toEqual(refusal('wrong-origin'));
    }
    expect(await runRegistration(s, authenticator(), { crossOrigin: true })).toEqual(refusal('wrong-origin'));
    expect(await runRegistration(s, authenticator(), { topOrigin: 'https://evil.example' })).toEqual(refusal('wrong-origin'));
  });

  it('refuses a credential scoped to another RP ID', async () => {
    expect(await runRegistration(settings(), authenticator(), { rpId: 'example.test' })).toEqual(refusal('wrong-rp'));
    expect(await runRegistration(settings(), authenticator(), { rpId: 'evil.example' })).toEqual(refusal('wrong-rp'));
  });

  it('refuses a response to another challenge', async () => {
    const other = b64u(randomBytes(32));
    expect(await runRegistration(settings(), authenticator(), { challenge: other })).toEqual(refusal('challenge-mismatch'));
  });

  it('refuses when the expected challenge is empty or not ours, even if the response matches it', async () => {
    const s = settings();
    const { options } = await registrationOptions(s, USER, []);
    for (const challenge of ['', 'abc']) {
      const response = authenticator().register(options, { challenge });
      expect(await verifyRegistration(s, response, { challenge, origin: ORIGIN, existing: [] }, { name: 'x', now: NOW })).toEqual(
        refusal('challenge-mismatch'),
      );
    }
  });

  it('refuses when the user presence flag is missing', async () => {
    expect(await runRegistration(settings(), authenticator(), { up: false })).toEqual(refusal('user-presence-missing'));
  });

  it('refuses a missing user verification when required, accepts it when preferred or discouraged', async () => {
    expect(await runRegistration(settings('required'), authenticator(), { uv: false })).toEqual(refusal('user-verification-missing'));
    expect(await runRegistration(settings('preferred'), authenticator(), { uv: false })).toMatchObject({ ok: true, userVerified: false });
    expect(await runRegistration(settings('discouraged'), authenticator(), { uv: false })).toMatchObject({ ok: true, userVerified: false });
    expect(await runRegistration(settings('required'), authenticator())).toMatchObject({ ok: true, userVerified: true });
  });

  it('refuses to register a credential id twice (the soft authenticator, like a real one, honours excludeCredentials)', async () => {
    const s = settings();
    const auth = authenticator();
    const credential = await enrol(s, auth);
    const { options } = await registrationOptions(s, USER, [credential]);
    expect(() => auth.register(options)).toThrow(SoftAuthenticatorError);
    expect(await runRegistration(s, auth, { ignoreCredentialLists: true }, [credential])).toEqual(refusal('already-registered'));
    // Another authenticator is still welcome.
    expect(await runRegistration(s, authenticator(), {}, [credential])).toMatchObject({ ok: true });
  });

  it('refuses an unsupported key algorithm (ES384)', async () => {
    expect(await runRegistration(settings(), authenticator('ES384'))).toEqual(refusal('unsupported'));
  });

  it('ignores attestation statements (attestation none): a packed statement with a bogus signature is accepted', async () => {
    const attStmt = new Map<string, Cbor>([
      ['alg', -7],
      ['sig', new Uint8Array(randomBytes(70))],
    ]);
    expect(await runRegistration(settings(), authenticator(), { attestation: { fmt: 'packed', attStmt } })).toMatchObject({ ok: true });
    expect(await runRegistration(settings(), authenticator(), { attestation: { fmt: 'bogus', attStmt: new Map() } })).toMatchObject({ ok: true });
  });

  it('refuses a response whose id is not the attested credential id', async () => {
    const otherId = authenticator().credentialId;
    const result = await runRegistration(settings(), authenticator(), {}, [], (r) => ({ ...r, id: otherId, rawId: otherId }));
    expect(result).toEqual(refusal('malformed'));
  });

  it('refuses an assertion presented as a registration', async () => {
    expect(await runRegistration(settings(), authenticator(), { type: 'webauthn.get' })).toEqual(refusal('malformed'));
  });

  it('refuses backup state without backup eligibility', async () => {
    expect(await runRegistration(settings(), authenticator('ES256', { be: false, bs: true }))).toEqual(refusal('malformed'));
  });

  it('refuses a key that is not on its curve', async () => {
    const result = await runRegistration(settings(), authenticator(), {}, [], (r) => {
      const att = isoCBOR.decodeFirst<Map<string, unknown>>(Buffer.from(inner(r).attestationObject as string, 'base64url'));
      const authData = Buffer.from(att.get('authData') as Uint8Array);
      // The COSE key is the tail; y is its last 32 bytes: replace it with garbage.
      randomBytes(32).copy(authData, authData.length - 32);
      att.set('authData', new Uint8Array(authData));
      inner(r).attestationObject = b64u(isoCBOR.encode(att as Cbor));
      return r;
    });
    expect(result).toEqual(refusal('malformed'));
  });

  const cbor = (value: Cbor) => b64u(isoCBOR.encode(value));
  const attestation = (authData: Cbor) =>
    cbor(new Map<string, Cbor>([['fmt', 'none'], ['attStmt', new Map<string, Cbor>()], ...(authData === undefined ? [] : [['authData', authData] as [string, Cbor]])]));
  const malformedRegistrations: [string, (r: Json) => unknown][] = [
    ['null', () => null],
    ['undefined', () => undefined],
    ['a number', () => 42],
    ['a string', () => 'hello'],
    ['an array', (r) => [r]],
    ['an empty object', () => ({})],
    ['no id', (r) => ({ ...r, id: undefined })],
    ['an empty id', (r) => ({ ...r, id: '', rawId: '' })],
    ['a numeric id', (r) => ({ ...r, id: 7 })],
    ['an oversized id', (r) => ({ ...r, id: 'A'.repeat(1028), rawId: 'A'.repeat(1028) })],
    ['a base64 (not url) id', (r) => ({ ...r, id: '+/+/', rawId: '+/+/' })],
    ['a padded id', (r) => ({ ...r, id: `${r.id as string}=`, rawId: `${r.id as string}=` })],
    ['a non-canonical id', (r) => ({ ...r, id: 'AB', rawId: 'AB' })],
    ['rawId differing from id', (r) => ({ ...r, rawId: b64u(randomBytes(32)) })],
    ['another type', (r) => ({ ...r, type: 'password' })],
    ['no response', (r) => ({ ...r, response: undefined })],
    ['a string response', (r) => ({ ...r, response: 'x' })],
    ['no clientDataJSON', patch({ clientDataJSON: undefined })],
    ['an oversized clientDataJSON', patch({ clientDataJSON: 'A'.repeat(65540) })],
    ['clientDataJSON that is not JSON', patch({ clientDataJSON: b64u('hello') })],
    ['clientDataJSON that is not UTF-8', patch({ clientDataJSON: b64u(Buffer.from([0x7b, 0xff, 0xfe, 0x7d])) })],
    ['clientDataJSON that is an array', patch({ clientDataJSON: b64u('[1,2]') })],
    ['clientDataJSON nested deeply', patch({ clientDataJSON: b64u('['.repeat(40000)) })],
    ['clientDataJSON without origin', clientData((d) => delete d.origin)],
    ['clientDataJSON with a numeric challenge', clientData((d) => (d.challenge = 5))],
    ['an odd token binding', clientData((d) => (d.tokenBinding = { status: 'weird' }))],
    ['an attestationObject that is not CBOR', patch({ attestationObject: b64u(Buffer.from([0xff, 0x00, 0x13])) })],
    ['an attestationObject that is a CBOR array', patch({ attestationObject: cbor([1, 2, 3]) })],
    ['an attestationObject without authData', patch({ attestationObject: attestation(undefined) })],
    ['an attestationObject whose authData is a string', patch({ attestationObject: attestation('x') })],
    ['an attestationObject with short authData', patch({ attestationObject: attestation(new Uint8Array(20)) })],
    ['an attestationObject nested deeply', patch({ attestationObject: b64u(Buffer.alloc(40000, 0x81)) })],
    ['an oversized attestationObject', patch({ attestationObject: 'A'.repeat(65540) })],
    ['transports that are not a list', patch({ transports: 'usb' })],
    ['too many transports', patch({ transports: Array.from({ length: 17 }, () => 'usb') })],
    ['an odd transport', patch({ transports: ['USB <script>'] })],
    ['an odd authenticatorAttachment', (r) => ({ ...r, authenticatorAttachment: 'usb' })],
    ['clientExtensionResults that is an array', (r) => ({ ...r, clientExtensionResults: [] })],
    ['only a __proto__ member', (r) => JSON.parse(`{"__proto__": ${JSON.stringify(r)}}`) as unknown],
  ];

  it.each(malformedRegistrations)('refuses %s as malformed, without throwing', async (_label, mutate) => {
    expect(await runRegistration(settings(), authenticator(), {}, [], mutate)).toEqual(refusal('malformed'));
  });

  it('refuses authenticator data without the attested credential, or with leftover bytes', async () => {
    const withAuthData = (change: (authData: Buffer) => Buffer) => (r: Json) => {
      const att = isoCBOR.decodeFirst<Map<string, unknown>>(Buffer.from(inner(r).attestationObject as string, 'base64url'));
      att.set('authData', new Uint8Array(change(Buffer.from(att.get('authData') as Uint8Array))));
      inner(r).attestationObject = b64u(isoCBOR.encode(att as Cbor));
      return r;
    };
    const noAt = withAuthData((a) => {
      a[32] = (a[32] ?? 0) & ~0x40;
      return a;
    });
    const leftover = withAuthData((a) => Buffer.concat([a, Buffer.from([1, 2, 3])]));
    expect(await runRegistration(settings(), authenticator(), {}, [], noAt)).toEqual(refusal('malformed'));
    expect(await runRegistration(settings(), authenticator(), {}, [], leftover)).toEqual(refusal('malformed'));
  });
});

describe('verifyAuthentication', () => {
  async function enrolled(algorithm: SoftAlgorithm = 'ES256', extra: Parameters<typeof authenticator>[1] = {}) {
    const s = settings();
    const auth = authenticator(algorithm, extra);
    return { s, auth, credential: await enrol(s, auth) };
  }

  it('refuses another origin and cross-origin frames', async () => {
    const { s, auth, credential } = await enrolled();
    expect(await runAuthentication(s, auth, [credential], { origin: 'https://evil.example' })).toEqual(refusal('wrong-origin'));
    expect(await runAuthentication(s, auth, [credential], { origin: 'http://gate.example.test' })).toEqual(refusal('wrong-origin'));
    expect(await runAuthentication(s, auth, [credential], { crossOrigin: true })).toEqual(refusal('wrong-origin'));
    expect(await runAuthentication(s, auth, [credential], { crossOrigin: true, topOrigin: 'https://evil.example' })).toEqual(refusal('wrong-origin'));
  });

  it('refuses another RP ID', async () => {
    const { s, auth, credential } = await enrolled();
    expect(await runAuthentication(s, auth, [credential], { rpId: 'example.test' })).toEqual(refusal('wrong-rp'));
  });

  it('refuses a response to another challenge', async () => {
    const { s, auth, credential } = await enrolled();
    expect(await runAuthentication(s, auth, [credential], { challenge: b64u(randomBytes(32)) })).toEqual(refusal('challenge-mismatch'));
  });

  it('refuses when the user presence flag is missing', async () => {
    const { s, auth, credential } = await enrolled();
    expect(await runAuthentication(s, auth, [credential], { up: false })).toEqual(refusal('user-presence-missing'));
  });

  it('refuses a missing user verification when required, accepts it otherwise', async () => {
    const { auth, credential } = await enrolled();
    expect(await runAuthentication(settings('required'), auth, [credential], { uv: false })).toEqual(refusal('user-verification-missing'));
    expect(await runAuthentication(settings('preferred'), auth, [credential], { uv: false })).toMatchObject({ ok: true, userVerified: false });
    expect(await runAuthentication(settings('discouraged'), auth, [credential], { uv: false })).toMatchObject({ ok: true, userVerified: false });
    expect(await runAuthentication(settings('required'), auth, [credential])).toMatchObject({ ok: true, userVerified: true });
  });

  it('refuses a credential that is not one of the user credentials', async () => {
    const { s, credential } = await enrolled();
    const stranger = authenticator();
    await enrol(s, stranger);
    expect(await runAuthentication(s, stranger, [credential], { ignoreCredentialLists: true })).toEqual(refusal('unknown-credential'));
    expect(await runAuthentication(s, stranger, [], {})).toEqual(refusal('unknown-credential'));
  });

  it('refuses a counter that does not increase (stored 5: new 5, 3 or 0), accepts 6', async () => {
    const { s, auth, credential } = await enrolled();
    const stored = { ...credential, counter: 5 };
    expect(await runAuthentication(s, auth, [stored], { counter: 5 })).toEqual(refusal('counter-regression'));
    expect(await runAuthentication(s, auth, [stored], { counter: 3 })).toEqual(refusal('counter-regression'));
    expect(await runAuthentication(s, auth, [stored], { counter: 0 })).toEqual(refusal('counter-regression'));
    expect(await runAuthentication(s, auth, [stored], { counter: 6 })).toMatchObject({ ok: true, newCounter: 6 });
  });

  it('accepts authenticators that do not count (0 then 0), and a first count after 0', async () => {
    const { s, auth, credential } = await enrolled('Ed25519', { counterStep: 0 });
    expect(credential.counter).toBe(0);
    const first = await runAuthentication(s, auth, [credential]);
    expect(first).toMatchObject({ ok: true, newCounter: 0 });
    if (!first.ok) return;
    expect(await runAuthentication(s, auth, [first.credential])).toMatchObject({ ok: true, newCounter: 0 });
    expect(await runAuthentication(s, auth, [first.credential], { counter: 7 })).toMatchObject({ ok: true, newCounter: 7 });
  });

  it('detects a cloned authenticator', async () => {
    const { s, auth, credential } = await enrolled();
    const clone = auth.clone();
    const original = await runAuthentication(s, auth, [credential]);
    expect(original).toMatchObject({ ok: true, newCounter: 2 });
    if (!original.ok) return;
    expect(await runAuthentication(s, clone, [original.credential])).toEqual(refusal('counter-regression'));
  });

  it('reports a forged assertion with a regressed counter as a bad signature, not a clone', async () => {
    const { s, auth, credential } = await enrolled();
    const stored = { ...credential, counter: 5 };
    const flip = (r: Json) => {
      const sig = Buffer.from(inner(r).signature as string, 'base64url');
      sig[sig.length - 1] = (sig[sig.length - 1] ?? 0) ^ 0x01;
      inner(r).signature = b64u(sig);
      return r;
    };
    expect(await runAuthentication(s, auth, [stored], { counter: 3 }, flip)).toEqual(refusal('bad-signature'));
  });

  describe.each(['ES256', 'Ed25519', 'RS256'] as const)('%s tampering', (algorithm) => {
    it('refuses a tampered signature', async () => {
      const { s, auth, credential } = await enrolled(algorithm);
      const flip = (r: Json) => {
        const sig = Buffer.from(inner(r).signature as string, 'base64url');
        sig[sig.length - 1] = (sig[sig.length - 1] ?? 0) ^ 0x01;
        inner(r).signature = b64u(sig);
        return r;
      };
      expect(await runAuthentication(s, auth, [credential], {}, flip)).toEqual(refusal('bad-signature'));
      const junk = (r: Json) => ({ ...r, response: { ...inner(r), signature: b64u(randomBytes(8)) } });
      expect(await runAuthentication(s, auth, [credential], {}, junk)).toEqual(refusal('bad-signature'));
    });

    it('refuses a tampered clientDataJSON (an extra member keeps type, challenge and origin)', async () => {
      const { s, auth, credential } = await enrolled(algorithm);
      const tamper = (r: Json) => {
        inner(r).clientDataJSON = editClientData(inner(r).clientDataJSON, (d) => (d.other = 'x'));
        return r;
      };
      expect(await runAuthentication(s, auth, [credential], {}, tamper)).toEqual(refusal('bad-signature'));
      // The same extra member, signed, is fine (browsers do add members).
      expect(await runAuthentication(s, auth, [credential], { extraClientData: { other: 'x' } })).toMatchObject({ ok: true });
    });

    it('refuses tampered authenticator data (a raised counter)', async () => {
      const { s, auth, credential } = await enrolled(algorithm);
      const raise = (r: Json) => {
        const data = Buffer.from(inner(r).authenticatorData as string, 'base64url');
        data.writeUInt32BE(1000, 33);
        inner(r).authenticatorData = b64u(data);
        return r;
      };
      expect(await runAuthentication(s, auth, [credential], {}, raise)).toEqual(refusal('bad-signature'));
    });

    it("refuses a signature by another authenticator's key for this credential id", async () => {
      const { s, credential } = await enrolled(algorithm);
      const impostor = authenticator(algorithm);
      const swap = (r: Json) => ({ ...r, id: credential.id, rawId: credential.id });
      expect(await runAuthentication(s, impostor, [credential], { ignoreCredentialLists: true }, swap)).toEqual(refusal('bad-signature'));
    });
  });

  it('refuses when the stored public key is unusable', async () => {
    const { s, auth, credential } = await enrolled();
    expect(await runAuthentication(s, auth, [{ ...credential, publicKey: '!!' }])).toEqual(refusal('unsupported'));
    expect(await runAuthentication(s, auth, [{ ...credential, publicKey: b64u(randomBytes(40)) }])).toEqual(refusal('bad-signature'));
  });

  const malformedAssertions: [string, (r: Json) => unknown][] = [
    ['null', () => null],
    ['undefined', () => undefined],
    ['true', () => true],
    ['a string', () => 'hello'],
    ['an array', (r) => [r]],
    ['an empty object', () => ({})],
    ['no id', (r) => ({ ...r, id: undefined })],
    ['a numeric id', (r) => ({ ...r, id: 1, rawId: 1 })],
    ['an oversized id', (r) => ({ ...r, id: 'A'.repeat(1028), rawId: 'A'.repeat(1028) })],
    ['an id with invalid characters', (r) => ({ ...r, id: 'a.b*c', rawId: 'a.b*c' })],
    ['rawId differing from id', (r) => ({ ...r, rawId: b64u(randomBytes(32)) })],
    ['another type', (r) => ({ ...r, type: 'otp' })],
    ['no response', (r) => ({ ...r, response: undefined })],
    ['a response that is an array', (r) => ({ ...r, response: [inner(r)] })],
    ['no signature', patch({ signature: undefined })],
    ['an empty signature', patch({ signature: '' })],
    ['an oversized signature', patch({ signature: 'A'.repeat(65540) })],
    ['a numeric signature', patch({ signature: 12 })],
    ['an oversized clientDataJSON', patch({ clientDataJSON: 'A'.repeat(65540) })],
    ['clientDataJSON that is not base64url', patch({ clientDataJSON: '{"type":"webauthn.get"}' })],
    ['clientDataJSON that is not JSON', patch({ clientDataJSON: b64u('not json') })],
    ['clientDataJSON that is null', patch({ clientDataJSON: b64u('null') })],
    ['clientDataJSON nested deeply', patch({ clientDataJSON: b64u(`${'{"a":'.repeat(7000)}1${'}'.repeat(7000)}`) })],
    ['a registration presented as an assertion', clientData((d) => (d.type = 'webauthn.create'))],
    ['a boolean-ish crossOrigin', clientData((d) => (d.crossOrigin = 'false'))],
    ['short authenticatorData', patch({ authenticatorData: b64u(randomBytes(12)) })],
    ['an oversized authenticatorData', patch({ authenticatorData: 'A'.repeat(65540) })],
    [
      'authenticatorData with leftover bytes',
      (r) => ({ ...r, response: { ...inner(r), authenticatorData: b64u(Buffer.concat([Buffer.from(inner(r).authenticatorData as string, 'base64url'), Buffer.from([0])])) } }),
    ],
    [
      'authenticatorData claiming attested credential data',
      (r) => {
        const data = Buffer.from(inner(r).authenticatorData as string, 'base64url');
        data[32] = (data[32] ?? 0) | 0x40;
        return { ...r, response: { ...inner(r), authenticatorData: b64u(data) } };
      },
    ],
    ['a numeric userHandle', patch({ userHandle: 5 })],
    ['an odd authenticatorAttachment', (r) => ({ ...r, authenticatorAttachment: 42 })],
    ['clientExtensionResults that is a string', (r) => ({ ...r, clientExtensionResults: 'x' })],
    ['only a __proto__ member', (r) => JSON.parse(`{"__proto__": ${JSON.stringify(r)}}`) as unknown],
  ];

  it.each(malformedAssertions)('refuses %s as malformed, without throwing', async (_label, mutate) => {
    const { s, auth, credential } = await enrolled();
    expect(await runAuthentication(s, auth, [credential], {}, mutate)).toEqual(refusal('malformed'));
  });

  it('accepts the optional members browsers send as null', async () => {
    const { s, auth, credential } = await enrolled();
    const nulls = (r: Json) => ({ ...r, authenticatorAttachment: null, response: { ...inner(r), userHandle: null } });
    expect(await runAuthentication(s, auth, [credential], {}, nulls)).toMatchObject({ ok: true });
  });
});
