/**
 * The database gateway's public surface: PostgreSQL listeners with identity, per-statement audit and
 * revocable short-lived tokens (SPEC §2 `databases`, §3 `connect/<id>`, §7).
 */
export { createDatabaseGateway, type DatabaseGateway, type DatabaseGatewayDeps } from './database-gateway.js';
export { createDatabaseTokens, tokenIdentity, MAX_TOKEN_TTL_MS, type DatabaseTokens, type DatabaseTokenRecord, type SessionLiveness, type TokenRefusal } from './tokens.js';
export { databasePolicyTarget } from './policy-target.js';
export type { DatabaseAuditLog } from './client-connection.js';
