/**
 * The PostgreSQL side of `portcullis tunnel --database ID`: a local TCP listener that signs each
 * client connection in to the gateway's database listener with a password from
 * `/.portcullis/connect/<id>`, so that `psql -h 127.0.0.1 -p PORT` works without one.
 *
 * Per connection: SSLRequest/GSSENCRequest are answered `N` (the local hop is loopback), the
 * StartupMessage is read, a password is fetched (and cached until shortly before it expires), the
 * gateway's listener is dialled (TLS when `sslmode` says so), the StartupMessage is sent with `user`
 * set to the token's user, the gateway's AuthenticationCleartextPassword is answered, and from
 * AuthenticationOk on bytes are relayed both ways untouched. A CancelRequest is passed on as is.
 */
import net from 'node:net';
import tls from 'node:tls';
import { BE, errorResponse, MAX_STARTUP_PACKET, parseStartupPacket, STARTUP_CODES, type StartupPacket } from '../../database/protocol.js';
import { listenOn } from './listen.js';

/** What `/.portcullis/connect/<id>` answered (the fields the tunnel uses). */
export interface DatabaseLogin {
  readonly database: string;
  readonly user: string;
  readonly password: string;
  /** Epoch ms. */
  readonly expiresAt: number;
  readonly host: string;
  readonly port: number;
  readonly sslmode: string;
}

/** Reads a connect answer; undefined when fields are missing. */
export function readDatabaseLogin(v: Record<string, unknown>): DatabaseLogin | undefined {
  const { database, user, password, expires_at: expires, host, port, sslmode } = v;
  if (typeof database !== 'string' || typeof user !== 'string' || typeof password !== 'string' || typeof expires !== 'string') return undefined;
  if (typeof host !== 'string' || typeof port !== 'number') return undefined;
  const expiresAt = Date.parse(expires);
  if (Number.isNaN(expiresAt)) return undefined;
  return { database, user, password, expiresAt, host, port, sslmode: typeof sslmode === 'string' ? sslmode : 'prefer' };
}

/**
 * The StartupMessage to send the gateway: the client's, with `user` set to the token's user, and
 * `database` set to the database id when the client asked for none or for libpq's default (its own
 * user name).
 */
export function rewriteStartup(packet: Extract<StartupPacket, { kind: 'startup' }>, login: Pick<DatabaseLogin, 'user' | 'database'>): Buffer {
  const params = new Map(packet.params);
  const clientUser = params.get('user');
  const db = params.get('database');
  if (db === undefined || db === '' || db === clientUser) params.set('database', login.database);
  params.set('user', login.user);
  const body = Buffer.from([...params].map(([k, v]) => `${k}\0${v}\0`).join('') + '\0', 'utf8');
  const out = Buffer.allocUnsafe(8 + body.length);
  out.writeInt32BE(8 + body.length, 0);
  out.writeInt32BE((packet.major << 16) | packet.minor, 4);
  body.copy(out, 8);
  return out;
}

/** A PasswordMessage. */
export function passwordMessage(password: string): Buffer {
  const body = Buffer.from(`${password}\0`, 'utf8');
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = 0x70;
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

/** Reads whole startup packets from a socket (length-prefixed). */
class PacketReader {
  private buf: Buffer = Buffer.alloc(0);
  push(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
  }
  /** The next startup packet, undefined when incomplete; throws when oversized. */
  startup(): Buffer | undefined {
    if (this.buf.length < 4) return undefined;
    const len = this.buf.readInt32BE(0);
    if (len < 8 || len > MAX_STARTUP_PACKET) throw new Error(`invalid startup packet length ${len}`);
    if (this.buf.length < len) return undefined;
    const p = this.buf.subarray(0, len);
    this.buf = this.buf.subarray(len);
    return p;
  }
  /** The next typed message (type byte + int32 length), undefined when incomplete. */
  message(): { type: number; body: Buffer; raw: Buffer } | undefined {
    if (this.buf.length < 5) return undefined;
    const len = this.buf.readInt32BE(1);
    if (len < 4) throw new Error(`invalid message length ${len}`);
    if (this.buf.length < 1 + len) return undefined;
    const raw = this.buf.subarray(0, 1 + len);
    this.buf = this.buf.subarray(1 + len);
    return { type: raw[0] ?? 0, body: raw.subarray(5), raw };
  }
  rest(): Buffer {
    const r = this.buf;
    this.buf = Buffer.alloc(0);
    return r;
  }
}

/** Options for {@link startPgTunnel}. */
export interface PgTunnelOptions {
  readonly host: string;
  readonly port: number;
  /** A password (cached by the caller); `stale` asks for a new one (the gateway refused the last). */
  readonly login: (stale?: DatabaseLogin) => Promise<DatabaseLogin>;
  /** Reports a connection's problem (to stderr). */
  readonly log: (line: string) => void;
  /** CA for verify-ca / verify-full (PEM), else the system's. */
  readonly ca?: string;
}

/** A running database tunnel. */
export interface PgTunnel {
  readonly port: number;
  close(): Promise<void>;
}

const SSL_REQUEST = (() => {
  const b = Buffer.alloc(8);
  b.writeInt32BE(8, 0);
  b.writeInt32BE(STARTUP_CODES.ssl, 4);
  return b;
})();

/** Dials the gateway's listener, with TLS when `sslmode` asks for it. */
async function dial(login: DatabaseLogin, ca: string | undefined): Promise<net.Socket> {
  const socket = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({ host: login.host, port: login.port });
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
  socket.setNoDelay(true);
  const mode = login.sslmode;
  if (mode === 'disable' || mode === 'allow') return socket;
  const answer = await new Promise<string>((resolve, reject) => {
    socket.once('data', (c: Buffer) => resolve(c.subarray(0, 1).toString('latin1')));
    socket.once('error', reject);
    socket.once('close', () => reject(new Error('the gateway closed the connection')));
    socket.write(SSL_REQUEST);
  });
  socket.removeAllListeners('error');
  socket.removeAllListeners('close');
  if (answer !== 'S') {
    if (mode === 'prefer') return socket;
    socket.destroy();
    throw new Error(`the gateway's listener ${login.host}:${login.port} does not offer TLS, but sslmode is ${mode}`);
  }
  const verify = mode === 'verify-ca' || mode === 'verify-full';
  return new Promise<net.Socket>((resolve, reject) => {
    const t = tls.connect({
      socket,
      servername: net.isIP(login.host) === 0 ? login.host : undefined,
      rejectUnauthorized: verify,
      ALPNProtocols: ['postgresql'],
      ...(ca === undefined ? {} : { ca }),
      ...(mode === 'verify-ca' ? { checkServerIdentity: () => undefined } : {}),
    });
    t.once('secureConnect', () => {
      t.off('error', reject);
      resolve(t);
    });
    t.once('error', reject);
  });
}

/** Starts the listener. */
export async function startPgTunnel(opts: PgTunnelOptions): Promise<PgTunnel> {
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  };

  function fatal(client: net.Socket, code: string, message: string, hint?: string): void {
    client.end(errorResponse({ severity: 'FATAL', code, message, ...(hint === undefined ? {} : { hint }) }));
  }

  function serve(client: net.Socket): void {
    track(client);
    client.setNoDelay(true);
    client.on('error', () => client.destroy());
    const reader = new PacketReader();
    let started = false;
    const onData = (chunk: Buffer) => {
      if (started) {
        reader.push(chunk);
        return;
      }
      reader.push(chunk);
      let raw: Buffer | undefined;
      try {
        raw = reader.startup();
      } catch (err) {
        fatal(client, '08P01', `portcullis tunnel: ${err instanceof Error ? err.message : String(err)}`);
        return;
      }
      if (raw === undefined) return;
      const packet = parseStartupPacket(raw);
      switch (packet.kind) {
        case 'ssl':
        case 'gssenc':
          client.write('N');
          onData(Buffer.alloc(0));
          return;
        case 'invalid':
          fatal(client, '08P01', `portcullis tunnel: ${packet.reason}`);
          return;
        case 'cancel':
          started = true;
          client.pause();
          void forwardCancel(raw).finally(() => client.destroy());
          return;
        case 'startup':
          started = true;
          client.pause();
          void connect(client, packet, reader).catch((err: unknown) => {
            const message = err instanceof Error ? err.message : String(err);
            opts.log(`connection refused: ${message}`);
            fatal(client, '08001', `portcullis tunnel: ${message}`);
          });
          return;
      }
    };
    client.on('data', onData);
  }

  async function forwardCancel(raw: Buffer): Promise<void> {
    const login = await opts.login();
    const upstream = await dial(login, opts.ca);
    track(upstream);
    upstream.on('error', () => upstream.destroy());
    upstream.end(raw);
  }

  async function connect(client: net.Socket, packet: Extract<StartupPacket, { kind: 'startup' }>, clientReader: PacketReader): Promise<void> {
    let login = await opts.login();
    for (let attempt = 0; ; attempt++) {
      const outcome = await signIn(client, packet, clientReader, login);
      if (outcome !== 'password-refused' || attempt > 0) return;
      // The cached password was refused (revoked, or the gateway restarted): fetch a new one once.
      login = await opts.login(login);
    }
  }

  /** Signs in; relays from AuthenticationOk on. Resolves 'password-refused' when the gateway said 28P01 before anything reached the client. */
  async function signIn(client: net.Socket, packet: Extract<StartupPacket, { kind: 'startup' }>, clientReader: PacketReader, login: DatabaseLogin): Promise<'done' | 'password-refused'> {
    const upstream = await dial(login, opts.ca);
    track(upstream);
    const reader = new PacketReader();
    return new Promise((resolve) => {
      let forwarded = false;
      let settled = false;
      const finish = (how: 'done' | 'password-refused') => {
        settled = true;
        upstream.off('data', onData);
        resolve(how);
      };
      const onData = (chunk: Buffer) => {
        reader.push(chunk);
        for (;;) {
          let m;
          try {
            m = reader.message();
          } catch (err) {
            fatal(client, '08P01', `portcullis tunnel: ${err instanceof Error ? err.message : String(err)}`);
            upstream.destroy();
            finish('done');
            return;
          }
          if (m === undefined) return;
          if (m.type === BE.authentication) {
            const kind = m.body.length >= 4 ? m.body.readInt32BE(0) : -1;
            if (kind === 3) {
              upstream.write(passwordMessage(login.password));
              continue;
            }
            if (kind === 0) {
              client.write(m.raw);
              relay(client, upstream, clientReader.rest(), reader.rest());
              finish('done');
              return;
            }
            fatal(client, '08P01', `portcullis tunnel: the gateway asked for authentication method ${kind}, expected a cleartext password`);
            upstream.destroy();
            finish('done');
            return;
          }
          if (m.type === BE.errorResponse && !forwarded && m.raw.includes(Buffer.from('C28P01\0'))) {
            upstream.destroy();
            finish('password-refused');
            return;
          }
          forwarded = true;
          client.write(m.raw);
          if (m.type === BE.errorResponse) {
            client.end();
            upstream.destroy();
            finish('done');
            return;
          }
        }
      };
      upstream.on('data', onData);
      upstream.on('error', () => upstream.destroy());
      upstream.once('close', () => {
        if (settled) return;
        if (!client.destroyed) fatal(client, '08006', 'portcullis tunnel: the gateway closed the connection during sign-in');
        finish('done');
      });
      upstream.write(rewriteStartup(packet, login));
    });
  }

  function relay(client: net.Socket, upstream: net.Socket, fromClient: Buffer, fromUpstream: Buffer): void {
    if (fromUpstream.length > 0) client.write(fromUpstream);
    if (fromClient.length > 0) upstream.write(fromClient);
    client.removeAllListeners('data');
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.resume();
  }

  const server = net.createServer(serve);
  const port = await listenOn(server, opts.port, opts.host);
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}
