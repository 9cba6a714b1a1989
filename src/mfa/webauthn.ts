/**
 * The WebAuthn (passkey / security key) ceremonies on the server, wrapping `@simplewebauthn/server`.
 *
 * - `registrationOptions` / `authenticationOptions` build the JSON the page hands to
 *   `@simplewebauthn/browser`'s `startRegistration({ optionsJSON })` / `startAuthentication({ optionsJSON })`,
 *   together with the challenge (base64url of 32 random bytes) the caller keeps server-side.
 * - `verifyRegistration` / `verifyAuthentication` take the browser's response straight from a request
 *   body (`unknown`), validate its shape and sizes with zod, then check every condition whose failure
 *   has a named reason (client data type / challenge / origin, RP ID hash, UP / UV flags, credential
 *   ids, key algorithm, signature counter) themselves, so the reasons reported do not depend on the
 *   library's error messages. They never throw: anything unexpected is `{ ok: false, reason: 'malformed' }`.
 *
 * Attestation: we ask for `attestation: 'none'` and do NOT verify attestation statements or their
 * certificate chains. Whatever statement a client sends anyway is discarded: the attestation object
 * is re-encoded as `fmt: 'none'` before the library sees it, so no attacker-supplied certificate is
 * ever parsed and no CRL is ever fetched. A registration is therefore only as trustworthy as the
 * session that performs it (the caller must require a signed-in, recently authenticated user).
 *
 * Signature counter: the library refuses a non-increasing counter before it checks the signature.
 * We hand it a stored counter of 0 (which disables its check) and compare the counters ourselves
 * after the signature verified, so `counter-regression` is only ever reported for a genuinely signed
 * assertion (evidence of a cloned authenticator), never for a forgery.
 *
 * Credential ids are unique per user here (`already-registered`); the caller must repeat that check
 * inside its atomic store update, where concurrent registrations are serialized.
 */
import { createHash, createPublicKey, randomBytes, type JsonWebKey } from 'node:crypto';
import {
  generateAuthenticationOptions,
  generateRegistrationOptions,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
  type AuthenticationResponseJSON,
  type PublicKeyCredentialCreationOptionsJSON,
  type PublicKeyCredentialRequestOptionsJSON,
  type RegistrationResponseJSON,
} from '@simplewebauthn/server';
import { isoCBOR, parseAuthenticatorData } from '@simplewebauthn/server/helpers';
import { z } from 'zod';
import type { WebAuthnCredential } from './factors.js';

export type {
  AuthenticationResponseJSON,
  PublicKeyCredentialCreationOptionsJSON,
  PublicKeyCredentialRequestOptionsJSON,
  RegistrationResponseJSON,
} from '@simplewebauthn/server';

/** The relying party as configured. `rpId` must be an ASCII (punycode) domain. */
export interface WebAuthnSettings {
  readonly rpId: string;
  readonly rpName: string;
  readonly userVerification: 'required' | 'preferred' | 'discouraged';
}

/** Why a ceremony was refused. */
export type WebAuthnFailure =
  | 'malformed'
  | 'unknown-credential'
  | 'challenge-mismatch'
  | 'wrong-origin'
  | 'wrong-rp'
  | 'user-presence-missing'
  | 'user-verification-missing'
  | 'counter-regression'
  | 'bad-signature'
  | 'already-registered'
  | 'unsupported';

/** A refusal: a reason for the audit log / metrics and a short human message (never echoes the input). */
export interface WebAuthnRefusal {
  readonly ok: false;
  readonly reason: WebAuthnFailure;
  readonly detail: string;
}

export type RegistrationResult =
  | { readonly ok: true; readonly credential: WebAuthnCredential; readonly userVerified: boolean }
  | WebAuthnRefusal;

export type AuthenticationResult =
  | {
      readonly ok: true;
      readonly credentialId: string;
      readonly newCounter: number;
      readonly userVerified: boolean;
      /** The stored credential with `counter` = newCounter and `lastUsedAt` = now, ready to store. */
      readonly credential: WebAuthnCredential;
    }
  | WebAuthnRefusal;

/** COSE algorithms offered and accepted, in order of preference: Ed25519 (-8), ES256 (-7), RS256 (-257). */
export const SUPPORTED_ALGORITHMS: readonly number[] = Object.freeze([-8, -7, -257]);

/** Upper bounds on what a response may carry (in base64url characters). */
export const LIMITS = Object.freeze({ id: 1024, blob: 64 * 1024, transports: 16, credentialIdBytes: 1023 });

const CHALLENGE_BYTES = 32;
const FLAG_UP = 0x01;
const FLAG_UV = 0x04;
const FLAG_BE = 0x08;
const FLAG_BS = 0x10;
const FLAG_AT = 0x40;

// ---------------------------------------------------------------------------------------------------
// Options

/** Options for `navigator.credentials.create()`, excluding the user's existing credentials. */
export async function registrationOptions(
  s: WebAuthnSettings,
  user: { name: string; displayName: string; handle: string },
  existing: readonly WebAuthnCredential[],
): Promise<{ options: PublicKeyCredentialCreationOptionsJSON; challenge: string }> {
  const handle = decodeBase64Url(user.handle);
  if (handle === undefined || handle.length === 0 || handle.length > 64) {
    throw new TypeError('the WebAuthn user handle must be base64url of 1 to 64 bytes');
  }
  const challenge = randomBytes(CHALLENGE_BYTES);
  const options = await generateRegistrationOptions({
    rpName: s.rpName,
    rpID: s.rpId,
    userName: user.name,
    userDisplayName: user.displayName,
    userID: new Uint8Array(handle),
    // A string challenge would be taken as UTF-8 text and encoded again: pass the bytes.
    challenge: new Uint8Array(challenge),
    attestationType: 'none',
    excludeCredentials: existing.map((c) => ({ id: c.id, transports: [...c.transports] })),
    authenticatorSelection: { residentKey: 'preferred', userVerification: s.userVerification },
    supportedAlgorithmIDs: [...SUPPORTED_ALGORITHMS],
  });
  return { options, challenge: challenge.toString('base64url') };
}

/** Options for `navigator.credentials.get()`, allowing exactly the user's credentials. */
export async function authenticationOptions(
  s: WebAuthnSettings,
  credentials: readonly WebAuthnCredential[],
): Promise<{ options: PublicKeyCredentialRequestOptionsJSON; challenge: string }> {
  const challenge = randomBytes(CHALLENGE_BYTES);
  const options = await generateAuthenticationOptions({
    rpID: s.rpId,
    allowCredentials: credentials.map((c) => ({ id: c.id, transports: [...c.transports] })),
    challenge: new Uint8Array(challenge),
    userVerification: s.userVerification,
  });
  return { options, challenge: challenge.toString('base64url') };
}

// ---------------------------------------------------------------------------------------------------
// Shapes of what the browser sends

const BASE64URL = /^[A-Za-z0-9_-]*$/;

/** Canonical unpadded base64url (what browsers and @simplewebauthn/browser produce), else undefined. */
function decodeBase64Url(s: string): Buffer | undefined {
  if (!BASE64URL.test(s) || s.length % 4 === 1) return undefined;
  const bytes = Buffer.from(s, 'base64url');
  // Refuse non-canonical encodings (stray trailing bits): two spellings of one id must not exist.
  return bytes.toString('base64url') === s ? bytes : undefined;
}

const b64url = (max: number) =>
  z
    .string()
    .max(max)
    .refine((v) => decodeBase64Url(v) !== undefined, 'not canonical base64url');
const idSchema = b64url(LIMITS.id).min(1);
const blobSchema = b64url(LIMITS.blob).min(1);
const transportsSchema = z.array(z.string().regex(/^[a-z][a-z0-9-]{0,31}$/)).max(LIMITS.transports);
const extensionResultsSchema = z.looseObject({}).optional();
const attachmentSchema = z.enum(['platform', 'cross-platform']).nullable().optional();

const registrationSchema = z.object({
  id: idSchema,
  rawId: idSchema,
  type: z.literal('public-key'),
  response: z.object({
    clientDataJSON: blobSchema,
    attestationObject: blobSchema,
    // Sent by newer browsers; unused (everything is read from the attestation object).
    authenticatorData: blobSchema.nullable().optional(),
    publicKey: blobSchema.nullable().optional(),
    publicKeyAlgorithm: z.number().int().nullable().optional(),
    transports: transportsSchema.optional(),
  }),
  authenticatorAttachment: attachmentSchema,
  clientExtensionResults: extensionResultsSchema,
});

const authenticationSchema = z.object({
  id: idSchema,
  rawId: idSchema,
  type: z.literal('public-key'),
  response: z.object({
    clientDataJSON: blobSchema,
    authenticatorData: blobSchema,
    signature: blobSchema,
    userHandle: b64url(LIMITS.id).nullable().optional(),
  }),
  authenticatorAttachment: attachmentSchema,
  clientExtensionResults: extensionResultsSchema,
});

const clientDataSchema = z.object({
  type: z.string().max(64),
  challenge: z.string().max(1024),
  origin: z.string().max(2048),
  crossOrigin: z.boolean().optional(),
  topOrigin: z.string().max(2048).optional(),
  tokenBinding: z.object({ status: z.enum(['present', 'supported']) }).optional(),
});

// ---------------------------------------------------------------------------------------------------
// Checks

function refuse(reason: WebAuthnFailure, detail: string): WebAuthnRefusal {
  return { ok: false, reason, detail };
}

interface Expected {
  readonly challenge: string;
  readonly origin: string;
}

/** Decodes clientDataJSON and compares type, challenge and origin with what we expect. */
function checkClientData(encoded: string, type: 'webauthn.create' | 'webauthn.get', expected: Expected): WebAuthnRefusal | undefined {
  const bytes = decodeBase64Url(encoded);
  if (bytes === undefined) return refuse('malformed', 'clientDataJSON is not base64url');
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    return refuse('malformed', 'clientDataJSON is not UTF-8 JSON');
  }
  const parsed = clientDataSchema.safeParse(json);
  if (!parsed.success) return refuse('malformed', 'clientDataJSON does not have the expected members');
  const data = parsed.data;
  if (data.type !== type) return refuse('malformed', `clientDataJSON.type is not ${type}`);
  if (decodeBase64Url(expected.challenge)?.length !== CHALLENGE_BYTES || data.challenge !== expected.challenge) {
    return refuse('challenge-mismatch', 'the response is for another challenge');
  }
  if (expected.origin === '' || data.origin !== expected.origin) {
    return refuse('wrong-origin', 'the response was made for another origin');
  }
  if (data.crossOrigin === true || data.topOrigin !== undefined) {
    return refuse('wrong-origin', 'the ceremony ran in a cross-origin frame');
  }
  return undefined;
}

/** Checks the fixed part of authenticator data: RP ID hash and flags. */
function checkAuthenticatorData(
  authData: Uint8Array,
  s: WebAuthnSettings,
  ceremony: 'registration' | 'authentication',
): WebAuthnRefusal | undefined {
  if (authData.length < 37) return refuse('malformed', 'authenticator data is too short');
  const rpIdHash = createHash('sha256').update(s.rpId, 'utf8').digest();
  if (!rpIdHash.equals(authData.subarray(0, 32))) {
    return refuse('wrong-rp', 'the credential is scoped to another relying party');
  }
  const flags = authData[32] ?? 0;
  if ((flags & FLAG_UP) === 0) return refuse('user-presence-missing', 'the authenticator did not confirm user presence');
  if (s.userVerification === 'required' && (flags & FLAG_UV) === 0) {
    return refuse('user-verification-missing', 'the authenticator did not verify the user');
  }
  if ((flags & FLAG_BS) !== 0 && (flags & FLAG_BE) === 0) {
    return refuse('malformed', 'authenticator data claims a backup of a single-device credential');
  }
  const attested = (flags & FLAG_AT) !== 0;
  if (ceremony === 'registration' && !attested) return refuse('malformed', 'authenticator data lacks the new credential');
  if (ceremony === 'authentication' && attested) return refuse('malformed', 'unexpected attested credential data in an assertion');
  return undefined;
}

type Parsed = ReturnType<typeof parseAuthenticatorData>;

function parseAuthData(authData: Uint8Array): Parsed | undefined {
  try {
    // The library may patch and restore one byte in place: give it a private copy.
    return parseAuthenticatorData(new Uint8Array(authData));
  } catch {
    return undefined;
  }
}

/** Checks that a COSE public key uses a supported algorithm and is a valid key for it. */
function checkPublicKey(cose: Uint8Array): WebAuthnRefusal | undefined {
  let key: unknown;
  try {
    key = isoCBOR.decodeFirst<unknown>(new Uint8Array(cose));
  } catch {
    return refuse('malformed', 'the credential public key is not CBOR');
  }
  if (!(key instanceof Map)) return refuse('malformed', 'the credential public key is not a COSE key');
  const cose_ = key as Map<unknown, unknown>;
  // Only called after `length(label)` matched, so the empty string is never used.
  const bytes = (label: number): string => {
    const v = cose_.get(label);
    return v instanceof Uint8Array ? Buffer.from(v).toString('base64url') : '';
  };
  const length = (label: number): number => {
    const v = cose_.get(label);
    return v instanceof Uint8Array ? v.length : -1;
  };
  const kty = cose_.get(1);
  const alg = cose_.get(3);
  const crv = cose_.get(-1);
  let jwk: JsonWebKey;
  if (alg === -8 && kty === 1 && crv === 6 && length(-2) === 32) {
    jwk = { kty: 'OKP', crv: 'Ed25519', x: bytes(-2) };
  } else if (alg === -7 && kty === 2 && crv === 1 && length(-2) === 32 && length(-3) === 32) {
    jwk = { kty: 'EC', crv: 'P-256', x: bytes(-2), y: bytes(-3) };
  } else if (alg === -257 && kty === 3 && length(-1) >= 256 && length(-2) >= 1 && length(-2) <= 8) {
    jwk = { kty: 'RSA', n: bytes(-1), e: bytes(-2) };
  } else if (typeof alg === 'number' && !SUPPORTED_ALGORITHMS.includes(alg)) {
    return refuse('unsupported', 'the credential uses an unsupported signature algorithm');
  } else {
    return refuse('unsupported', 'the credential public key has unsupported parameters');
  }
  try {
    createPublicKey({ key: jwk, format: 'jwk' });
  } catch {
    return refuse('malformed', 'the credential public key is not a valid key');
  }
  return undefined;
}

/** Decodes an attestation object; returns its authData, or undefined when it is not one. */
function attestedAuthData(attestationObject: Uint8Array): Uint8Array | undefined {
  let decoded: unknown;
  try {
    decoded = isoCBOR.decodeFirst<unknown>(new Uint8Array(attestationObject));
  } catch {
    return undefined;
  }
  if (!(decoded instanceof Map)) return undefined;
  const map = decoded as Map<unknown, unknown>;
  const authData = map.get('authData');
  if (typeof map.get('fmt') !== 'string' || !(map.get('attStmt') instanceof Map) || !(authData instanceof Uint8Array)) {
    return undefined;
  }
  return authData;
}

/** A user-chosen credential name: no control or bidi-override characters, trimmed, 1..64 code points. */
function credentialName(name: string): string {
  const cleaned = Array.from(
    name
      .normalize('NFC')
      .replace(/[\p{Cc}\u2028\u2029\u202a-\u202e\u2066-\u2069]/gu, '')
      .trim(),
  )
    .slice(0, 64)
    .join('')
    .trim();
  return cleaned === '' ? 'Passkey' : cleaned;
}

// ---------------------------------------------------------------------------------------------------
// Registration

/**
 * Verifies a registration response against the challenge issued by `registrationOptions` and the
 * expected origin (e.g. `https://gate.example.com`). `expected.existing` are the user's credentials:
 * re-registering one of them is refused. Never throws.
 */
export async function verifyRegistration(
  s: WebAuthnSettings,
  response: unknown,
  expected: { challenge: string; origin: string; existing: readonly WebAuthnCredential[] },
  meta: { name: string; now: number },
): Promise<RegistrationResult> {
  try {
    return await registration(s, response, expected, meta);
  } catch {
    return refuse('malformed', 'the registration response could not be processed');
  }
}

async function registration(
  s: WebAuthnSettings,
  response: unknown,
  expected: { challenge: string; origin: string; existing: readonly WebAuthnCredential[] },
  meta: { name: string; now: number },
): Promise<RegistrationResult> {
  const parsed = registrationSchema.safeParse(response);
  if (!parsed.success) return refuse('malformed', 'the registration response does not have the expected shape');
  const r = parsed.data;
  if (r.id !== r.rawId) return refuse('malformed', 'id and rawId differ');

  const clientData = checkClientData(r.response.clientDataJSON, 'webauthn.create', expected);
  if (clientData) return clientData;

  const attestationObject = decodeBase64Url(r.response.attestationObject);
  const authData = attestationObject && attestedAuthData(attestationObject);
  if (authData === undefined) return refuse('malformed', 'attestationObject is not a CBOR attestation object');
  const flagsRefusal = checkAuthenticatorData(authData, s, 'registration');
  if (flagsRefusal) return flagsRefusal;
  const info = parseAuthData(authData);
  if (info?.credentialID === undefined || info.credentialPublicKey === undefined || info.aaguid === undefined) {
    return refuse('malformed', 'authenticator data could not be parsed');
  }
  const credentialId = Buffer.from(info.credentialID);
  if (credentialId.length === 0 || credentialId.length > LIMITS.credentialIdBytes) {
    return refuse('malformed', 'the credential id has an invalid length');
  }
  if (credentialId.toString('base64url') !== r.id) {
    return refuse('malformed', 'the response id is not the id of the attested credential');
  }
  if (expected.existing.some((c) => c.id === r.id)) {
    return refuse('already-registered', 'this credential is already registered');
  }
  const keyRefusal = checkPublicKey(info.credentialPublicKey);
  if (keyRefusal) return keyRefusal;

  // Attestation 'none': whatever statement came is dropped (see the file header).
  const noneAttestation = isoCBOR.encode(
    new Map<string, Parameters<typeof isoCBOR.encode>[0]>([
      ['fmt', 'none'],
      ['attStmt', new Map()],
      ['authData', new Uint8Array(authData)],
    ]),
  );
  const libraryResponse: RegistrationResponseJSON = {
    id: r.id,
    rawId: r.rawId,
    type: 'public-key',
    response: {
      clientDataJSON: r.response.clientDataJSON,
      attestationObject: Buffer.from(noneAttestation).toString('base64url'),
    },
    clientExtensionResults: {},
  };
  let verified: Awaited<ReturnType<typeof verifyRegistrationResponse>>;
  try {
    verified = await verifyRegistrationResponse({
      response: libraryResponse,
      expectedChallenge: expected.challenge,
      expectedOrigin: expected.origin,
      expectedRPID: s.rpId,
      expectedType: 'webauthn.create',
      requireUserPresence: true,
      requireUserVerification: s.userVerification === 'required',
      supportedAlgorithmIDs: [...SUPPORTED_ALGORITHMS],
    });
  } catch {
    return refuse('malformed', 'the registration response was refused by the verifier');
  }
  if (!verified.verified) return refuse('malformed', 'the registration response was refused by the verifier');
  const ri = verified.registrationInfo;
  if (ri.credential.id !== r.id) return refuse('malformed', 'the response id is not the id of the attested credential');

  const credential: WebAuthnCredential = {
    id: r.id,
    name: credentialName(meta.name),
    publicKey: Buffer.from(ri.credential.publicKey).toString('base64url'),
    counter: ri.credential.counter,
    transports: [...new Set(r.response.transports ?? [])],
    backedUp: ri.credentialDeviceType === 'multiDevice',
    createdAt: meta.now,
    lastUsedAt: undefined,
  };
  return { ok: true, credential, userVerified: ri.userVerified };
}

// ---------------------------------------------------------------------------------------------------
// Authentication

/**
 * Verifies an authentication (assertion) response against the challenge issued by
 * `authenticationOptions`, the expected origin and the user's credentials. On success the caller
 * must store `credential` (new counter, last use). Never throws.
 */
export async function verifyAuthentication(
  s: WebAuthnSettings,
  response: unknown,
  expected: { challenge: string; origin: string },
  credentials: readonly WebAuthnCredential[],
  now: number,
): Promise<AuthenticationResult> {
  try {
    return await authentication(s, response, expected, credentials, now);
  } catch {
    return refuse('malformed', 'the authentication response could not be processed');
  }
}

async function authentication(
  s: WebAuthnSettings,
  response: unknown,
  expected: { challenge: string; origin: string },
  credentials: readonly WebAuthnCredential[],
  now: number,
): Promise<AuthenticationResult> {
  const parsed = authenticationSchema.safeParse(response);
  if (!parsed.success) return refuse('malformed', 'the authentication response does not have the expected shape');
  const r = parsed.data;
  if (r.id !== r.rawId) return refuse('malformed', 'id and rawId differ');
  const stored = credentials.find((c) => c.id === r.id);
  if (stored === undefined) return refuse('unknown-credential', 'this credential is not registered to the user');

  const clientData = checkClientData(r.response.clientDataJSON, 'webauthn.get', expected);
  if (clientData) return clientData;

  const authData = decodeBase64Url(r.response.authenticatorData);
  if (authData === undefined) return refuse('malformed', 'authenticatorData is not base64url');
  const flagsRefusal = checkAuthenticatorData(authData, s, 'authentication');
  if (flagsRefusal) return flagsRefusal;
  const info = parseAuthData(authData);
  if (info === undefined) return refuse('malformed', 'authenticator data could not be parsed');

  const publicKey = decodeBase64Url(stored.publicKey);
  if (publicKey === undefined) return refuse('unsupported', 'the stored public key of this credential is unreadable');

  const libraryResponse: AuthenticationResponseJSON = {
    id: r.id,
    rawId: r.rawId,
    type: 'public-key',
    response: {
      clientDataJSON: r.response.clientDataJSON,
      authenticatorData: r.response.authenticatorData,
      signature: r.response.signature,
    },
    clientExtensionResults: {},
  };
  let verified: Awaited<ReturnType<typeof verifyAuthenticationResponse>>;
  try {
    verified = await verifyAuthenticationResponse({
      response: libraryResponse,
      expectedChallenge: expected.challenge,
      expectedOrigin: expected.origin,
      expectedRPID: s.rpId,
      expectedType: 'webauthn.get',
      // Counter 0 disables the library's counter check, which runs before the signature check:
      // ours runs after it (see the file header).
      credential: { id: stored.id, publicKey: new Uint8Array(publicKey), counter: 0, transports: [...stored.transports] },
      requireUserVerification: s.userVerification === 'required',
    });
  } catch {
    return refuse('bad-signature', 'the signature could not be verified');
  }
  if (!verified.verified) return refuse('bad-signature', 'the signature is not valid');

  const newCounter = info.counter;
  if ((stored.counter > 0 || newCounter > 0) && newCounter <= stored.counter) {
    return refuse('counter-regression', 'the signature counter did not increase: the authenticator may have been cloned');
  }
  const userVerified = verified.authenticationInfo.userVerified;
  return {
    ok: true,
    credentialId: stored.id,
    newCounter,
    userVerified,
    credential: { ...stored, counter: newCounter, lastUsedAt: now },
  };
}
