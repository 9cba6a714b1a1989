/**
 * PostgreSQL v3 wire protocol pieces the gateway needs (pure: no sockets, no clock). The gateway
 * passes frames through untouched; this module reads only what it must — startup packets, the
 * frontend messages that start or name statements, and the few backend fields that audit records
 * need — and builds the handful of messages the gateway itself speaks (authentication requests,
 * errors, key data).
 *
 * Reference: https://www.postgresql.org/docs/current/protocol-message-formats.html
 */

/** Startup-packet request codes (the int32 after the length). */
export const STARTUP_CODES = {
  /** Protocol 3.0: major 3 in the high 16 bits. */
  protocol3: 3 << 16,
  ssl: 80877103,
  gssenc: 80877104,
  cancel: 80877102,
} as const;

/** The longest startup packet accepted (PostgreSQL's own limit is 10 000 bytes). */
export const MAX_STARTUP_PACKET = 10_000;

/** A parsed startup packet (the first thing a client sends, also after a TLS or GSS refusal). */
export type StartupPacket =
  | { readonly kind: 'ssl' }
  | { readonly kind: 'gssenc' }
  | { readonly kind: 'cancel'; readonly pid: number; readonly secret: number }
  | { readonly kind: 'startup'; readonly major: number; readonly minor: number; readonly params: ReadonlyMap<string, string> }
  | { readonly kind: 'invalid'; readonly reason: string };

/**
 * Parses a whole startup packet (length prefix included).
 *
 * Precondition: `packet.length` equals the int32 length at its start.
 */
export function parseStartupPacket(packet: Buffer): StartupPacket {
  if (packet.length < 8) return { kind: 'invalid', reason: 'startup packet too short' };
  const code = packet.readInt32BE(4);
  if (code === STARTUP_CODES.ssl) return packet.length === 8 ? { kind: 'ssl' } : { kind: 'invalid', reason: 'malformed SSLRequest' };
  if (code === STARTUP_CODES.gssenc) return packet.length === 8 ? { kind: 'gssenc' } : { kind: 'invalid', reason: 'malformed GSSENCRequest' };
  if (code === STARTUP_CODES.cancel) {
    if (packet.length !== 16) return { kind: 'invalid', reason: 'malformed CancelRequest' };
    return { kind: 'cancel', pid: packet.readInt32BE(8), secret: packet.readInt32BE(12) };
  }
  const major = code >>> 16;
  const minor = code & 0xffff;
  if (major !== 3) return { kind: 'invalid', reason: `unsupported frontend protocol ${major}.${minor}` };
  const params = new Map<string, string>();
  let at = 8;
  for (;;) {
    const end = packet.indexOf(0, at);
    if (end === -1) return { kind: 'invalid', reason: 'unterminated startup parameter' };
    if (end === at) break; // the final empty name
    const name = packet.toString('utf8', at, end);
    const valueEnd = packet.indexOf(0, end + 1);
    if (valueEnd === -1) return { kind: 'invalid', reason: `startup parameter ${name} has no value` };
    if (params.has(name)) return { kind: 'invalid', reason: `startup parameter ${name} given twice` };
    params.set(name, packet.toString('utf8', end + 1, valueEnd));
    at = valueEnd + 1;
  }
  if (at !== packet.length - 1) return { kind: 'invalid', reason: 'trailing bytes after startup parameters' };
  return { kind: 'startup', major, minor, params };
}

// ---------------------------------------------------------------------------------------------
// Frontend messages (client → server), read from a captured prefix of the body
// ---------------------------------------------------------------------------------------------

/** Frontend message type bytes the gateway reads. */
export const FE = {
  query: 0x51, // Q
  parse: 0x50, // P
  bind: 0x42, // B
  execute: 0x45, // E
  describe: 0x44, // D
  close: 0x43, // C
  sync: 0x53, // S
  flush: 0x48, // H
  terminate: 0x58, // X
  functionCall: 0x46, // F
  copyData: 0x64, // d
  copyDone: 0x63, // c
  copyFail: 0x66, // f
  password: 0x70, // p
} as const;

/** Backend message type bytes the gateway reads. */
export const BE = {
  authentication: 0x52, // R
  parameterStatus: 0x53, // S
  backendKeyData: 0x4b, // K
  readyForQuery: 0x5a, // Z
  commandComplete: 0x43, // C
  dataRow: 0x44, // D
  errorResponse: 0x45, // E
  noticeResponse: 0x4e, // N
  emptyQuery: 0x49, // I
  parseComplete: 0x31, // 1
  bindComplete: 0x32, // 2
  closeComplete: 0x33, // 3
  parameterDescription: 0x74, // t
  rowDescription: 0x54, // T
  noData: 0x6e, // n
  portalSuspended: 0x73, // s
  copyInResponse: 0x47, // G
  copyOutResponse: 0x48, // H
  copyBothResponse: 0x57, // W
  functionCallResponse: 0x56, // V
  negotiateProtocolVersion: 0x76, // v
} as const;

/** A frontend message as far as the gateway reads it. */
export type FrontendMessage =
  | { readonly t: 'query'; readonly sql: string }
  | { readonly t: 'parse'; readonly name: string; readonly sql: string }
  | { readonly t: 'bind'; readonly portal: string; readonly statement: string; readonly params: number | undefined }
  | { readonly t: 'execute'; readonly portal: string }
  | { readonly t: 'describe' }
  | { readonly t: 'close'; readonly target: 'statement' | 'portal'; readonly name: string }
  | { readonly t: 'sync' }
  | { readonly t: 'flush' }
  | { readonly t: 'terminate' }
  | { readonly t: 'function'; readonly oid: number | undefined }
  | { readonly t: 'copy' }
  | { readonly t: 'other'; readonly type: number };

/** How many body bytes of each frontend message type the gateway captures (`-1`: none, not reported). */
export function frontendCapture(type: number, sqlBytes: number): number {
  switch (type) {
    case FE.query:
    case FE.parse:
      // Parse carries the statement name (≤ 64 bytes in practice) before the text.
      return sqlBytes + 256;
    case FE.bind:
      return 2048;
    case FE.execute:
    case FE.close:
      return 512;
    case FE.functionCall:
      return 4;
    case FE.copyData:
      return -1;
    default:
      return 0;
  }
}

/** A NUL-terminated string at `at`, or the rest of the buffer when it was cut; and where it ends. */
function cstring(buf: Buffer, at: number): { text: string; next: number; whole: boolean } {
  const end = buf.indexOf(0, at);
  if (end === -1) return { text: buf.toString('utf8', Math.min(at, buf.length)), next: buf.length, whole: false };
  return { text: buf.toString('utf8', at, end), next: end + 1, whole: true };
}

/**
 * Reads a frontend message from its type and a captured prefix of its body. SQL text cut by the
 * capture is returned as far as it goes; a Bind whose parameter count lies beyond it has `params`
 * undefined.
 */
export function readFrontendMessage(type: number, head: Buffer): FrontendMessage {
  switch (type) {
    case FE.query:
      return { t: 'query', sql: cstring(head, 0).text };
    case FE.parse: {
      const name = cstring(head, 0);
      return { t: 'parse', name: name.text, sql: name.whole ? cstring(head, name.next).text : '' };
    }
    case FE.bind: {
      const portal = cstring(head, 0);
      const statement = cstring(head, portal.next);
      return { t: 'bind', portal: portal.text, statement: statement.text, params: statement.whole ? bindParamCount(head, statement.next) : undefined };
    }
    case FE.execute:
      return { t: 'execute', portal: cstring(head, 0).text };
    case FE.describe:
      return { t: 'describe' };
    case FE.close: {
      const kind = head[0];
      return { t: 'close', target: kind === 0x50 ? 'portal' : 'statement', name: cstring(head, 1).text };
    }
    case FE.sync:
      return { t: 'sync' };
    case FE.flush:
      return { t: 'flush' };
    case FE.terminate:
      return { t: 'terminate' };
    case FE.functionCall:
      return { t: 'function', oid: head.length >= 4 ? head.readUInt32BE(0) : undefined };
    case FE.copyData:
    case FE.copyDone:
    case FE.copyFail:
      return { t: 'copy' };
    default:
      return { t: 'other', type };
  }
}

/** Bind: int16 format-code count, the codes, then int16 parameter count. */
function bindParamCount(head: Buffer, at: number): number | undefined {
  if (at + 2 > head.length) return undefined;
  const formats = head.readUInt16BE(at);
  const countAt = at + 2 + formats * 2;
  if (countAt + 2 > head.length) return undefined;
  return head.readUInt16BE(countAt);
}

/** The password in a PasswordMessage body (NUL-terminated), or undefined when malformed. */
export function readPassword(body: Buffer): string | undefined {
  if (body.length === 0 || body[body.length - 1] !== 0) return undefined;
  const text = body.toString('utf8', 0, body.length - 1);
  return text.includes('\0') ? undefined : text;
}

// ---------------------------------------------------------------------------------------------
// Backend message fields
// ---------------------------------------------------------------------------------------------

/** The fields of an ErrorResponse or NoticeResponse body, by field type character. */
export function readErrorFields(body: Buffer): Map<string, string> {
  const fields = new Map<string, string>();
  let at = 0;
  while (at < body.length) {
    const code = body[at];
    if (code === undefined || code === 0) break;
    const value = cstring(body, at + 1);
    fields.set(String.fromCharCode(code), value.text);
    at = value.next;
  }
  return fields;
}

/** A CommandComplete tag split into its command and row count (`INSERT 0 5` → INSERT, 5). */
export function parseCommandTag(tag: string): { command: string; rows: number | undefined } {
  const m = /^(.*?)((?: \d+)+)?$/.exec(tag);
  const command = (m?.[1] ?? tag).trim();
  const numbers = (m?.[2] ?? '').trim().split(' ').filter((s) => s !== '');
  const last = numbers.at(-1);
  // Only tags that report rows end in a count; `INSERT oid rows` has two numbers.
  return { command, rows: last === undefined ? undefined : Number(last) };
}

/**
 * The command as a bounded metric label: upper-case words from the server's fixed set of tags, else
 * `OTHER`.
 */
export function commandLabel(command: string | undefined): string {
  if (command === undefined || command === '') return 'OTHER';
  return /^[A-Z][A-Z ]{0,31}$/.test(command) ? command : 'OTHER';
}

// ---------------------------------------------------------------------------------------------
// Backend messages the gateway builds (server → client)
// ---------------------------------------------------------------------------------------------

function message(type: number, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = type;
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

function int32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeInt32BE(n, 0);
  return b;
}

/** AuthenticationCleartextPassword. */
export function authenticationCleartext(): Buffer {
  return message(BE.authentication, int32(3));
}

/** AuthenticationOk. */
export function authenticationOk(): Buffer {
  return message(BE.authentication, int32(0));
}

/** BackendKeyData with the gateway's own key for this client. */
export function backendKeyData(pid: number, secret: number): Buffer {
  return message(BE.backendKeyData, Buffer.concat([int32(pid), int32(secret)]));
}

/** ParameterStatus. */
export function parameterStatus(name: string, value: string): Buffer {
  return message(BE.parameterStatus, Buffer.from(`${name}\0${value}\0`, 'utf8'));
}

/** ReadyForQuery with a transaction status (`I` idle, `T` in a transaction, `E` failed transaction). */
export function readyForQuery(status: 'I' | 'T' | 'E'): Buffer {
  return message(BE.readyForQuery, Buffer.from(status, 'latin1'));
}

/** NegotiateProtocolVersion: the newest minor version supported, and the `_pq_.` options not recognised. */
export function negotiateProtocolVersion(minor: number, unrecognized: readonly string[]): Buffer {
  return message(BE.negotiateProtocolVersion, Buffer.concat([int32(minor), int32(unrecognized.length), ...unrecognized.map((o) => Buffer.from(`${o}\0`, 'utf8'))]));
}

/** What an ErrorResponse the gateway sends says. */
export interface ErrorFields {
  readonly severity: 'ERROR' | 'FATAL';
  /** SQLSTATE, five characters. */
  readonly code: string;
  readonly message: string;
  readonly detail?: string;
  readonly hint?: string;
}

/** An ErrorResponse (fields S, V, C, M, D, H). NULs in the text are dropped. */
export function errorResponse(e: ErrorFields): Buffer {
  const parts: string[] = [`S${e.severity}`, `V${e.severity}`, `C${e.code}`, `M${e.message}`];
  if (e.detail !== undefined) parts.push(`D${e.detail}`);
  if (e.hint !== undefined) parts.push(`H${e.hint}`);
  const body = `${parts.map((p) => p.replaceAll('\0', '')).join('\0')}\0\0`;
  return message(BE.errorResponse, Buffer.from(body, 'utf8'));
}

// ---------------------------------------------------------------------------------------------
// Frontend messages the gateway sends upstream
// ---------------------------------------------------------------------------------------------

/** A CancelRequest packet for an upstream backend. */
export function cancelRequest(pid: number, secret: number): Buffer {
  const b = Buffer.allocUnsafe(16);
  b.writeInt32BE(16, 0);
  b.writeInt32BE(STARTUP_CODES.cancel, 4);
  b.writeInt32BE(pid, 8);
  b.writeInt32BE(secret, 12);
  return b;
}

/** A Terminate message. */
export function terminateMessage(): Buffer {
  const b = Buffer.allocUnsafe(5);
  b[0] = FE.terminate;
  b.writeInt32BE(4, 1);
  return b;
}
