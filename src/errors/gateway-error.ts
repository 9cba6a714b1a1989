import { ERRORS, type ErrorCode } from './catalog.js';

/**
 * The one error type the gateway throws or returns. `code` is stable; `status` is the HTTP status a
 * client sees; `expose` says whether `message` may be shown to the client.
 */
export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly expose: boolean;

  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown }) {
    const entry = ERRORS[code];
    super(message ?? entry.message, options);
    this.name = 'GatewayError';
    this.code = code;
    this.status = entry.status;
    this.expose = entry.expose;
  }
}

/** True when `err` is a GatewayError, optionally with the given code. */
export function isGatewayError(err: unknown, code?: ErrorCode): err is GatewayError {
  return err instanceof GatewayError && (code === undefined || err.code === code);
}
