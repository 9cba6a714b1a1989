export type { Identity, MfaCheck } from './identity.js';
