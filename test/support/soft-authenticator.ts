/**
 * A software WebAuthn authenticator (plus the browser's part of the ceremony) for tests: it turns
 * the options JSON the gateway sends into the `RegistrationResponseJSON` / `AuthenticationResponseJSON`
 * that `@simplewebauthn/browser` would post back, signing with a node:crypto key.
 *
 * Behaves like a well-behaved authenticator by default (user present and verified, counter
 * incremented by one per ceremony, honours `excludeCredentials` / `allowCredentials`), and exposes
 * knobs to misbehave: another origin or RP ID, missing UP / UV flags, a chosen counter value (to
 * simulate regressions and clones), a foreign challenge, a cross-origin frame, another client data
 * type, or extra client data fields. It does not check `pubKeyCredParams` (so a test can offer an
 * algorithm the gateway does not support) and does not verify the user itself: the UV flag is a knob.
 *
 *   const auth = SoftAuthenticator.create({ origin: 'https://gate.example.test', algorithm: 'Ed25519' });
 *   const body = auth.register(optionsJSON);          // POST it as the registration response
 *   const body2 = auth.authenticate(requestOptionsJSON, { counter: 3 });
 */
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import type {
  AuthenticationResponseJSON,
  PublicKeyCredentialCreationOptionsJSON,
  PublicKeyCredentialRequestOptionsJSON,
  RegistrationResponseJSON,
} from '@simplewebauthn/server';
import { isoCBOR } from '@simplewebauthn/server/helpers';

/** Key types: the three the gateway supports, and ES384 (COSE -35), which it does not. */
export type SoftAlgorithm = 'ES256' | 'Ed25519' | 'RS256' | 'ES384';

type CborValue = Parameters<typeof isoCBOR.encode>[0];

/** Per-ceremony overrides; unset fields fall back to the authenticator's own settings. */
export interface CeremonyOverrides {
  /** The origin the "browser" puts in clientDataJSON. */
  readonly origin?: string;
  /** The RP ID whose hash goes into the authenticator data (default: the one in the options). */
  readonly rpId?: string;
  /** Sign this challenge instead of the one in the options. */
  readonly challenge?: string;
  readonly up?: boolean;
  readonly uv?: boolean;
  /** Backup eligible / backed up flags. */
  readonly be?: boolean;
  readonly bs?: boolean;
  /** Use exactly this signature counter (the authenticator then remembers it). */
  readonly counter?: number;
  /** clientDataJSON.type (default `webauthn.create` / `webauthn.get`). */
  readonly type?: string;
  readonly crossOrigin?: boolean;
  readonly topOrigin?: string;
  /** Extra members appended to clientDataJSON (browsers may add some; signatures cover them). */
  readonly extraClientData?: Readonly<Record<string, unknown>>;
  /** Register even when excluded / assert even when not allowed (a real authenticator would refuse). */
  readonly ignoreCredentialLists?: boolean;
  /** Attestation format and statement to send at registration (default `none`, empty statement). */
  readonly attestation?: { readonly fmt: string; readonly attStmt: Map<string, CborValue> };
}

export interface SoftAuthenticatorOptions {
  readonly algorithm?: SoftAlgorithm;
  /** The origin the "browser" is on, e.g. `https://gate.example.test`. */
  readonly origin: string;
  /** Length of the random credential id (default 32 bytes). */
  readonly credentialIdBytes?: number;
  readonly transports?: readonly string[];
  /** Counter reported by the first ceremony is `counter + counterStep` (defaults 0 and 1). */
  readonly counter?: number;
  /** How much the counter grows per ceremony; 0 makes an authenticator that does not count. */
  readonly counterStep?: number;
  readonly up?: boolean;
  readonly uv?: boolean;
  readonly be?: boolean;
  readonly bs?: boolean;
}

/** Thrown where a real authenticator / browser would refuse the ceremony. */
export class SoftAuthenticatorError extends Error {
  constructor(name: 'InvalidStateError' | 'NotAllowedError', message: string) {
    super(message);
    this.name = name;
  }
}

interface KeyMaterial {
  readonly privateKey: KeyObject;
  readonly cose: Uint8Array;
  readonly sign: (data: Buffer) => Buffer;
}

function b64u(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64url');
}

function jwkBytes(value: string | undefined): Uint8Array {
  if (value === undefined) throw new Error('incomplete JWK');
  return new Uint8Array(Buffer.from(value, 'base64url'));
}

function makeKey(algorithm: SoftAlgorithm): KeyMaterial {
  switch (algorithm) {
    case 'ES256':
    case 'ES384': {
      const [curve, crv, alg, hash] = algorithm === 'ES256' ? (['P-256', 1, -7, 'sha256'] as const) : (['P-384', 2, -35, 'sha384'] as const);
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: curve });
      const jwk = publicKey.export({ format: 'jwk' });
      const cose = isoCBOR.encode(
        new Map<number, CborValue>([
          [1, 2],
          [3, alg],
          [-1, crv],
          [-2, jwkBytes(jwk.x)],
          [-3, jwkBytes(jwk.y)],
        ]),
      );
      return { privateKey, cose, sign: (data) => sign(hash, data, { key: privateKey, dsaEncoding: 'der' }) };
    }
    case 'Ed25519': {
      const { privateKey, publicKey } = generateKeyPairSync('ed25519');
      const jwk = publicKey.export({ format: 'jwk' });
      const cose = isoCBOR.encode(
        new Map<number, CborValue>([
          [1, 1],
          [3, -8],
          [-1, 6],
          [-2, jwkBytes(jwk.x)],
        ]),
      );
      return { privateKey, cose, sign: (data) => sign(null, data, privateKey) };
    }
    case 'RS256': {
      const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const jwk = publicKey.export({ format: 'jwk' });
      const cose = isoCBOR.encode(
        new Map<number, CborValue>([
          [1, 3],
          [3, -257],
          [-1, jwkBytes(jwk.n)],
          [-2, jwkBytes(jwk.e)],
        ]),
      );
      return { privateKey, cose, sign: (data) => sign('sha256', data, privateKey) };
    }
  }
}

export class SoftAuthenticator {
  /** The credential id (base64url). */
  readonly credentialId: string;
  readonly algorithm: SoftAlgorithm;
  /** COSE public key bytes, as the gateway will store them (base64url). */
  readonly publicKey: string;
  origin: string;
  /** The current signature counter; set it to simulate a regression. */
  counter: number;
  counterStep: number;
  up: boolean;
  uv: boolean;
  be: boolean;
  bs: boolean;
  transports: readonly string[];
  /** The user handle received at registration, returned in assertions. */
  userHandle: string | undefined;
  private readonly key: KeyMaterial;
  private readonly rawId: Buffer;

  /** A fresh authenticator with a new key and credential id. */
  static create(options: SoftAuthenticatorOptions): SoftAuthenticator {
    return new SoftAuthenticator(options, undefined);
  }

  private constructor(options: SoftAuthenticatorOptions, shared: { key: KeyMaterial; rawId: Buffer; algorithm: SoftAlgorithm } | undefined) {
    this.algorithm = shared?.algorithm ?? options.algorithm ?? 'ES256';
    this.key = shared?.key ?? makeKey(this.algorithm);
    this.rawId = shared?.rawId ?? randomBytes(options.credentialIdBytes ?? 32);
    this.credentialId = this.rawId.toString('base64url');
    this.publicKey = b64u(this.key.cose);
    this.origin = options.origin;
    this.counter = options.counter ?? 0;
    this.counterStep = options.counterStep ?? 1;
    this.up = options.up ?? true;
    this.uv = options.uv ?? true;
    this.be = options.be ?? false;
    this.bs = options.bs ?? false;
    this.transports = options.transports ?? ['internal'];
    this.userHandle = undefined;
  }

  /** A second authenticator holding the same key and counter: a clone. */
  clone(): SoftAuthenticator {
    const copy = new SoftAuthenticator(
      { origin: this.origin, counter: this.counter, counterStep: this.counterStep, up: this.up, uv: this.uv, be: this.be, bs: this.bs, transports: this.transports },
      { key: this.key, rawId: this.rawId, algorithm: this.algorithm },
    );
    copy.userHandle = this.userHandle;
    return copy;
  }

  /** `navigator.credentials.create()` followed by @simplewebauthn/browser's JSON encoding. */
  register(options: PublicKeyCredentialCreationOptionsJSON, o: CeremonyOverrides = {}): RegistrationResponseJSON {
    if (!o.ignoreCredentialLists && (options.excludeCredentials ?? []).some((c) => c.id === this.credentialId)) {
      throw new SoftAuthenticatorError('InvalidStateError', 'this authenticator already holds an excluded credential');
    }
    const clientDataJSON = this.clientData(o.type ?? 'webauthn.create', o.challenge ?? options.challenge, o);
    const rpId = o.rpId ?? options.rp.id ?? new URL(this.origin).hostname;
    const idLength = Buffer.alloc(2);
    idLength.writeUInt16BE(this.rawId.length);
    const attested = Buffer.concat([Buffer.alloc(16), idLength, this.rawId, this.key.cose]);
    const authData = this.authenticatorData(rpId, o, attested);
    this.userHandle = options.user.id;
    const attestation = o.attestation ?? { fmt: 'none', attStmt: new Map<string, CborValue>() };
    const attestationObject = isoCBOR.encode(
      new Map<string, CborValue>([
        ['fmt', attestation.fmt],
        ['attStmt', attestation.attStmt],
        ['authData', new Uint8Array(authData)],
      ]),
    );
    return {
      id: this.credentialId,
      rawId: this.credentialId,
      type: 'public-key',
      response: {
        clientDataJSON: b64u(clientDataJSON),
        attestationObject: b64u(attestationObject),
        authenticatorData: b64u(authData),
        transports: [...this.transports],
        publicKeyAlgorithm: { ES256: -7, ES384: -35, Ed25519: -8, RS256: -257 }[this.algorithm],
      },
      authenticatorAttachment: 'platform',
      clientExtensionResults: { credProps: { rk: true } },
    };
  }

  /** `navigator.credentials.get()` followed by @simplewebauthn/browser's JSON encoding. */
  authenticate(options: PublicKeyCredentialRequestOptionsJSON, o: CeremonyOverrides = {}): AuthenticationResponseJSON {
    const allowed = options.allowCredentials ?? [];
    if (!o.ignoreCredentialLists && allowed.length > 0 && !allowed.some((c) => c.id === this.credentialId)) {
      throw new SoftAuthenticatorError('NotAllowedError', 'this authenticator holds none of the allowed credentials');
    }
    const clientDataJSON = this.clientData(o.type ?? 'webauthn.get', o.challenge ?? options.challenge, o);
    const rpId = o.rpId ?? options.rpId ?? new URL(this.origin).hostname;
    const authData = this.authenticatorData(rpId, o, undefined);
    const signature = this.key.sign(Buffer.concat([authData, createHash('sha256').update(clientDataJSON).digest()]));
    return {
      id: this.credentialId,
      rawId: this.credentialId,
      type: 'public-key',
      response: {
        clientDataJSON: b64u(clientDataJSON),
        authenticatorData: b64u(authData),
        signature: b64u(signature),
        ...(this.userHandle === undefined ? {} : { userHandle: this.userHandle }),
      },
      authenticatorAttachment: 'platform',
      clientExtensionResults: {},
    };
  }

  private clientData(type: string, challenge: string, o: CeremonyOverrides): Buffer {
    const data: Record<string, unknown> = { type, challenge, origin: o.origin ?? this.origin, crossOrigin: o.crossOrigin ?? false };
    if (o.topOrigin !== undefined) data.topOrigin = o.topOrigin;
    Object.assign(data, o.extraClientData);
    return Buffer.from(JSON.stringify(data), 'utf8');
  }

  private authenticatorData(rpId: string, o: CeremonyOverrides, attested: Buffer | undefined): Buffer {
    this.counter = o.counter ?? this.counter + this.counterStep;
    const flags =
      ((o.up ?? this.up) ? 0x01 : 0) |
      ((o.uv ?? this.uv) ? 0x04 : 0) |
      ((o.be ?? this.be) ? 0x08 : 0) |
      ((o.bs ?? this.bs) ? 0x10 : 0) |
      (attested ? 0x40 : 0);
    const counter = Buffer.alloc(4);
    counter.writeUInt32BE(this.counter);
    return Buffer.concat([createHash('sha256').update(rpId).digest(), Buffer.from([flags]), counter, attested ?? Buffer.alloc(0)]);
  }
}
