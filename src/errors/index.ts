export { ERRORS, type ErrorCode } from './catalog.js';
export { GatewayError, isGatewayError } from './gateway-error.js';
