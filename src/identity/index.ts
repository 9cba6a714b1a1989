export type { Identity, MfaCheck } from './identity.js';
export { hashPassword, verifyPassword, dummyVerify, isPasswordHash, generatePassword, DEFAULT_SCRYPT_COST, type ScryptCost } from './password-hash.js';
export {
  createLocalUserDirectory,
  ensureUsersFile,
  addUser,
  loadUsersText,
  UsersFileError,
  type LocalUser,
  type LocalUserDirectory,
  type NewLocalUser,
  type EnsureUsersFileResult,
} from './local-users.js';
export { createAssertionSigner, ASSERTION_LIFETIME_S, type AssertionSigner, type AssertionAlgorithm } from './assertion-signer.js';
export { createOidcClient, OidcLoginError, type OidcClient, type OidcLoginResult, type PendingLogin, type OidcProviderConfig } from './oidc-client.js';
export { createBearerVerifier, DEFAULT_BEARER_ALGORITHMS, type BearerVerifier, type BearerResult, type BearerClaims } from './bearer-verifier.js';
export { createSessionManager, sessionReference, type SessionManager, type Session, type SessionRecord } from './sessions.js';
export { createAuthenticator } from './authenticator.js';
export { createIdentityRuntime, type IdentityRuntime } from './runtime.js';
