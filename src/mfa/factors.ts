/**
 * What the gateway remembers about a user's second factors: WebAuthn passkeys, TOTP authenticators
 * and one-time recovery codes. Stored per user behind the {@link CredentialStore} port; unlike the
 * session store, nothing here expires on its own.
 */

/** One registered passkey / security key. */
export interface WebAuthnCredential {
  /** The credential id (base64url), as the authenticator reported it. */
  readonly id: string;
  /** A name the user chose ("laptop", "YubiKey"), capped at 64 characters. */
  readonly name: string;
  /** COSE public key, base64url. */
  readonly publicKey: string;
  /** The last signature counter seen (0 when the authenticator does not count). */
  readonly counter: number;
  /** Transports the browser reported (`internal`, `usb`, `hybrid` …). */
  readonly transports: readonly string[];
  /** Whether the credential may be synced (backup eligible), as reported at registration. */
  readonly backedUp: boolean;
  /** Epoch ms. */
  readonly createdAt: number;
  /** Epoch ms of the last successful use. */
  readonly lastUsedAt: number | undefined;
}

/** One TOTP authenticator. */
export interface TotpCredential {
  /** Random id (base64url, 16 bytes) naming this authenticator in the UI and the audit log. */
  readonly id: string;
  readonly name: string;
  /** The shared secret, encrypted at rest (see secret-box.ts): never the plain base32 secret. */
  readonly secret: string;
  /** Epoch ms. */
  readonly createdAt: number;
  /** The highest time step (floor(unix seconds / 30)) a code was accepted for: codes for it or earlier are refused (replay). */
  readonly lastStep: number;
  readonly lastUsedAt: number | undefined;
}

/** One recovery code: only its hash is kept. */
export interface RecoveryCode {
  /** Hex SHA-256 of the normalized code (codes carry 80 bits of entropy, so a fast hash is enough). */
  readonly hash: string;
  /** Epoch ms when it was used; undefined while unused. */
  readonly usedAt: number | undefined;
}

/** Everything about one user's second factors. */
export interface UserFactors {
  /** Random WebAuthn user handle (base64url, 32 bytes), created with the first passkey; never the user name. */
  readonly userHandle: string | undefined;
  readonly webauthn: readonly WebAuthnCredential[];
  readonly totp: readonly TotpCredential[];
  readonly recovery: readonly RecoveryCode[];
}

/** The state of a user who never enrolled anything. */
export const NO_FACTORS: UserFactors = Object.freeze({ userHandle: undefined, webauthn: Object.freeze([]), totp: Object.freeze([]), recovery: Object.freeze([]) });

/** True when the user has at least one usable factor (recovery codes alone do not count). */
export function hasFactors(f: UserFactors): boolean {
  return f.webauthn.length > 0 || f.totp.length > 0;
}

/**
 * The credential store port. Adapters: `memory` (tests), `file` (the embedded default: one JSON file,
 * mode 0600, atomic replacement) and `redis` (shared by replicas). Every adapter passes the contract
 * suite in test/contract/credential-store.contract.ts.
 *
 * `update` is an atomic read-modify-write of one user's factors: `change` receives the current value
 * (NO_FACTORS when absent) and returns the new one (or throws, and nothing is written). Concurrent
 * updates of the same user never lose one another (they are serialized or retried); `change` may
 * therefore run more than once and must be pure. Storing a value equal to NO_FACTORS removes the user.
 *
 * Failure: methods reject when the backing service is unavailable; callers fail closed.
 */
export interface CredentialStore {
  readonly kind: 'memory' | 'file' | 'redis';
  /** The user's factors (NO_FACTORS when none). */
  get(user: string): Promise<UserFactors>;
  /** Atomically replaces the user's factors by `change(current)`; resolves to what was stored. */
  update(user: string, change: (current: UserFactors) => UserFactors): Promise<UserFactors>;
  close(): Promise<void>;
}
