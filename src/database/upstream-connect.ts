/**
 * Opens a connection to the upstream PostgreSQL server and signs in with the configured service
 * credentials (trust, cleartext, md5 or SCRAM-SHA-256, whatever the server asks for), up to its
 * first ReadyForQuery. Backend messages are parsed with `pg-protocol`; the frontend messages are
 * serialized with it too.
 */
import net from 'node:net';
import type { BackendMessage } from 'pg-protocol/dist/messages.js';
import { Parser } from 'pg-protocol/dist/parser.js';
import { serialize } from 'pg-protocol';
import { createScramClient, md5Password, ScramError, type SaltedPasswordCache } from './upstream-auth.js';

/** Where and as whom the gateway signs in upstream. */
export interface UpstreamTarget {
  readonly host: string;
  readonly port: number;
  readonly database: string;
  readonly user: string;
  readonly password: string;
}

/** A signed-in upstream connection, ready for queries. */
export interface UpstreamSession {
  readonly socket: net.Socket;
  /** ParameterStatus values the server reported at startup, in order. */
  readonly parameters: readonly (readonly [string, string])[];
  /** The backend's cancel key. */
  readonly key: { readonly pid: number; readonly secret: number } | undefined;
  /** The transaction status of the first ReadyForQuery. */
  readonly status: 'I' | 'T' | 'E';
}

/**
 * Why the upstream could not be used: `connect` (refused, unreachable), `timeout`, `auth` (the
 * service credentials were refused or the exchange failed), `refused` (the server sent another
 * error, e.g. too many connections or no such database), `protocol` (not a PostgreSQL server).
 */
export class UpstreamError extends Error {
  constructor(
    message: string,
    readonly kind: 'connect' | 'timeout' | 'auth' | 'refused' | 'protocol',
    readonly sqlstate?: string,
  ) {
    super(message);
    this.name = 'UpstreamError';
  }
}

/** Options for {@link connectUpstream}. */
export interface ConnectUpstreamOptions {
  /** Startup parameters passed on from the client (application_name, client_encoding, options …). */
  readonly params: Readonly<Record<string, string>>;
  readonly timeoutMs: number;
  /** A fresh SCRAM client nonce (printable, no commas). */
  readonly nonce: () => string;
  readonly saltCache?: SaltedPasswordCache;
}

function field<T>(msg: BackendMessage, name: string, guard: (v: unknown) => v is T): T | undefined {
  const v: unknown = (msg as unknown as Record<string, unknown>)[name];
  return guard(v) ? v : undefined;
}

const isString = (v: unknown): v is string => typeof v === 'string';
const isNumber = (v: unknown): v is number => typeof v === 'number';
const isBuffer = (v: unknown): v is Buffer => Buffer.isBuffer(v);
const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');

/** Connects and signs in; rejects with {@link UpstreamError}. */
export function connectUpstream(target: UpstreamTarget, opts: ConnectUpstreamOptions): Promise<UpstreamSession> {
  return new Promise<UpstreamSession>((resolve, reject) => {
    const socket = net.connect({ host: target.host, port: target.port });
    socket.setNoDelay(true);
    const parser = new Parser();
    const parameters: [string, string][] = [];
    let key: UpstreamSession['key'];
    let scram: ReturnType<typeof createScramClient> | undefined;
    let settled = false;
    let connected = false;
    /** Serializes message handling across the asynchronous SCRAM step. */
    let chain: Promise<void> = Promise.resolve();

    const fail = (err: UpstreamError) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    const timer = setTimeout(() => fail(new UpstreamError(`no answer from ${target.host}:${target.port} within ${opts.timeoutMs} ms`, 'timeout')), opts.timeoutMs);

    async function handle(msg: BackendMessage): Promise<void> {
      switch (msg.name) {
        case 'authenticationOk':
          return;
        case 'authenticationCleartextPassword':
          socket.write(serialize.password(target.password));
          return;
        case 'authenticationMD5Password': {
          const salt = field(msg, 'salt', isBuffer);
          if (salt === undefined) throw new UpstreamError('malformed md5 request', 'protocol');
          socket.write(serialize.password(md5Password(target.user, target.password, salt)));
          return;
        }
        case 'authenticationSASL': {
          const mechanisms = field(msg, 'mechanisms', isStringArray) ?? [];
          if (!mechanisms.includes('SCRAM-SHA-256')) throw new UpstreamError(`the server offers no supported SASL mechanism (${mechanisms.join(', ')})`, 'auth');
          scram = createScramClient(target.password, opts.nonce(), opts.saltCache === undefined ? {} : { cache: opts.saltCache });
          socket.write(serialize.sendSASLInitialResponseMessage('SCRAM-SHA-256', scram.clientFirst()));
          return;
        }
        case 'authenticationSASLContinue': {
          const data = field(msg, 'data', isString);
          if (scram === undefined || data === undefined) throw new UpstreamError('unexpected SASL continue', 'protocol');
          socket.write(serialize.sendSCRAMClientFinalMessage(await scram.clientFinal(data)));
          return;
        }
        case 'authenticationSASLFinal': {
          const data = field(msg, 'data', isString);
          if (scram === undefined || data === undefined) throw new UpstreamError('unexpected SASL final', 'protocol');
          scram.verifyServerFinal(data);
          return;
        }
        case 'parameterStatus': {
          const name = field(msg, 'parameterName', isString);
          const value = field(msg, 'parameterValue', isString);
          if (name !== undefined && value !== undefined) parameters.push([name, value]);
          return;
        }
        case 'backendKeyData': {
          const pid = field(msg, 'processID', isNumber);
          const secret = field(msg, 'secretKey', isNumber);
          if (pid !== undefined && secret !== undefined) key = { pid, secret };
          return;
        }
        case 'notice':
          return;
        case 'error': {
          const code = field(msg, 'code', isString);
          const text = msg instanceof Error ? msg.message : 'error';
          const auth = code !== undefined && code.startsWith('28');
          throw new UpstreamError(text, auth ? 'auth' : code === undefined ? 'protocol' : 'refused', code);
        }
        case 'readyForQuery': {
          const status = field(msg, 'status', isString);
          settled = true;
          clearTimeout(timer);
          socket.pause();
          socket.removeAllListeners('data');
          socket.removeListener('error', onError);
          // Until the caller attaches its own: an error is followed by 'close', which it will see.
          socket.on('error', () => undefined);
          socket.removeListener('close', onClose);
          resolve({ socket, parameters, key, status: status === 'T' || status === 'E' ? status : 'I' });
          return;
        }
        default:
          throw new UpstreamError(`unexpected ${msg.name} during startup`, 'protocol');
      }
    }

    const onError = (err: NodeJS.ErrnoException) => {
      fail(new UpstreamError(`${target.host}:${target.port}: ${err.code ?? err.message}`, connected ? 'protocol' : 'connect'));
    };
    const onClose = () => fail(new UpstreamError(`${target.host}:${target.port} closed the connection during startup`, connected ? 'protocol' : 'connect'));
    socket.on('error', onError);
    socket.on('close', onClose);
    socket.on('connect', () => {
      connected = true;
      socket.write(serialize.startup({ ...opts.params, user: target.user, database: target.database }));
    });
    socket.on('data', (chunk: Buffer) => {
      try {
        parser.parse(chunk, (msg) => {
          chain = chain.then(() => (settled ? undefined : handle(msg))).catch((err: unknown) => {
            if (err instanceof UpstreamError) fail(err);
            else if (err instanceof ScramError) fail(new UpstreamError(`SCRAM: ${err.message}`, 'auth'));
            else fail(new UpstreamError(err instanceof Error ? err.message : String(err), 'protocol'));
          });
        });
      } catch (err) {
        fail(new UpstreamError(err instanceof Error ? err.message : String(err), 'protocol'));
      }
    });
  });
}
