/** A verified second-factor check: which factor, and when (epoch milliseconds). */
export interface MfaCheck {
  /** `recovery`: a one-time recovery code — enough to manage factors, never enough for a route's `mfa`. */
  readonly factor: 'webauthn' | 'totp' | 'recovery';
  readonly at: number;
  /** The credential used (a passkey's credential id, a TOTP authenticator's id). */
  readonly credential?: string;
}

/**
 * Who is asking, as verified by an identity provider. Produced by authentication, judged by policy,
 * forwarded to upstreams as identity headers and written into audit records.
 */
export interface Identity {
  readonly user: string;
  readonly email: string | undefined;
  readonly groups: readonly string[];
  readonly provider: string;
  /** `cookie` session, `bearer` IdP JWT, `cli` gateway-issued CLI token, `token` database password. */
  readonly auth: 'cookie' | 'bearer' | 'cli' | 'token';
  /**
   * Short hash of the session id (never the id itself), when the identity comes from a session (for a
   * CLI token: the browser session that authorized it).
   */
  readonly session: string | undefined;
  /** Epoch milliseconds of the primary sign-in. */
  readonly authTime: number;
  /** The most recent second-factor check, if any. */
  readonly mfa: MfaCheck | undefined;
  /** How the primary sign-in was made (RFC 8176 values such as `pwd`), when known. */
  readonly amr?: readonly string[];
  /**
   * For a bearer or CLI-token identity: base64url SHA-256 of the token, naming it in step-up grants (a browser
   * step-up confirms one token; the token itself is never stored).
   */
  readonly tokenRef?: string;
}
