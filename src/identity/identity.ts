/** A verified second-factor check: which factor, and when (epoch milliseconds). */
export interface MfaCheck {
  readonly factor: 'webauthn' | 'totp';
  readonly at: number;
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
  readonly auth: 'cookie' | 'bearer' | 'token';
  /** Short hash of the session id (never the id itself), when the identity comes from a session. */
  readonly session: string | undefined;
  /** Epoch milliseconds of the primary sign-in. */
  readonly authTime: number;
  /** The most recent second-factor check, if any. */
  readonly mfa: MfaCheck | undefined;
  /** How the primary sign-in was made (RFC 8176 values such as `pwd`), when known. */
  readonly amr?: readonly string[];
}
