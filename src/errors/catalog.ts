/**
 * Every error the gateway shows a client or an operator, by stable code. Tests assert codes, not
 * message text; `docs/errors.md` lists the same codes (a test keeps the two in sync).
 */
export const ERRORS = {
  GW_ERR_REQUEST_TARGET: { status: 400, expose: true, message: 'The request target is malformed or ambiguous.' },
  GW_ERR_REQUEST_HOST: { status: 400, expose: true, message: 'The Host header is missing, repeated or malformed.' },
  GW_ERR_REQUEST_HEADERS: { status: 400, expose: true, message: 'The request headers are malformed.' },
  GW_ERR_REQUEST_HEADERS_TOO_LARGE: { status: 431, expose: true, message: 'The request headers are too large.' },
  GW_ERR_REQUEST_BODY_TOO_LARGE: { status: 413, expose: true, message: 'The request body is too large.' },
  GW_ERR_REQUEST_TIMEOUT: { status: 408, expose: true, message: 'The request was not received in time.' },
  GW_ERR_ROUTE_NOT_FOUND: { status: 404, expose: true, message: 'No route matches this host and path.' },
  GW_ERR_AUTH_REQUIRED: { status: 401, expose: true, message: 'Sign-in is required.' },
  GW_ERR_POLICY_DENIED: { status: 403, expose: true, message: 'You are not allowed to use this route.' },
  GW_ERR_MFA_REQUIRED: { status: 401, expose: true, message: 'A fresh second factor is required.' },
  GW_ERR_WEBSOCKET_DISABLED: { status: 403, expose: true, message: 'WebSocket connections are not enabled on this route.' },
  GW_ERR_WEBSOCKET_ORIGIN: { status: 403, expose: true, message: 'WebSocket connections from another site are not allowed on this route.' },
  GW_ERR_DATABASE_NOT_FOUND: { status: 404, expose: true, message: 'No database with this id is served by this gateway.' },
  GW_ERR_DATABASE_DENIED: { status: 403, expose: true, message: 'You are not allowed to use this database.' },
  GW_ERR_UPSTREAM_UNAVAILABLE: { status: 502, expose: true, message: 'The upstream service refused the connection or failed.' },
  GW_ERR_UPSTREAM_TIMEOUT: { status: 504, expose: true, message: 'The upstream service did not answer in time.' },
  GW_ERR_STORE_UNAVAILABLE: { status: 503, expose: true, message: 'The gateway cannot reach its session store; try again shortly.' },
  GW_ERR_AUDIT_UNAVAILABLE: { status: 503, expose: true, message: 'The gateway cannot record this request in its audit log right now, so it does not forward it.' },
  GW_ERR_GATEWAY_INTERNAL: { status: 500, expose: false, message: 'The gateway failed to handle this request.' },
  GW_ERR_CONFIG_INVALID: { status: 500, expose: false, message: 'The configuration is invalid.' },
  GW_ERR_CONFIG_READ: { status: 500, expose: false, message: 'The configuration file could not be read.' },
} as const satisfies Record<string, { status: number; expose: boolean; message: string }>;

/** A stable error code from the catalog. */
export type ErrorCode = keyof typeof ERRORS;
