/**
 * The configuration schema: the single source of truth for what `portcullis.yaml` may say.
 * Types, defaults, validation and the published JSON Schema (`portcullis config schema`) all derive
 * from it. Objects are strict: an unknown key is an error, never silently ignored.
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { normalizePathSegment } from '../routing/normalize-target.js';

const DURATION_RE = /^(\d+)(ms|s|m|h|d)$/;
const DURATION_UNITS_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** Parses `500ms`, `90s`, `10m`, `12h`, `7d` into milliseconds; returns undefined when malformed. */
export function parseDuration(text: string): number | undefined {
  const m = DURATION_RE.exec(text);
  if (!m) return undefined;
  const unit = m[2] as keyof typeof DURATION_UNITS_MS;
  const value = Number(m[1]) * DURATION_UNITS_MS[unit];
  return Number.isSafeInteger(value) ? value : undefined;
}

/**
 * Cross-field checks run even when other fields already failed, so every error in a file is reported
 * at once. Their input may therefore be partly invalid: they take `unknown` and check shapes first.
 */
const EVEN_WITH_OTHER_ERRORS = { when: (payload: { value: unknown }) => isRecord(payload.value) };

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function idOf(list: unknown, i: number): string {
  const item: unknown = Array.isArray(list) ? list[i] : undefined;
  return isRecord(item) && typeof item.id === 'string' ? item.id : '';
}

/** Yields `[index, index of the first item with the same id]` for each repeated string `id` in a list. */
function* duplicateIds(list: unknown): Generator<[number, number]> {
  if (!Array.isArray(list)) return;
  const seen = new Map<string, number>();
  for (let i = 0; i < list.length; i++) {
    const id = idOf(list, i);
    if (id === '') continue;
    const first = seen.get(id);
    if (first === undefined) seen.set(id, i);
    else yield [i, first];
  }
}

/** A duration written as `<integer><unit>` (ms, s, m, h, d); parsed into milliseconds. */
const DURATION_MESSAGE = 'expected a duration such as 500ms, 90s, 10m, 12h or 7d';
export const duration = z
  .string({ error: `${DURATION_MESSAGE} (a number needs a unit)` })
  .regex(DURATION_RE, DURATION_MESSAGE)
  .transform((text, ctx) => {
    const ms = parseDuration(text);
    if (ms === undefined) {
      ctx.addIssue({ code: 'custom', message: `duration ${text} is too large` });
      return z.NEVER;
    }
    return ms;
  })
  .meta({ description: 'Duration: an integer and a unit (ms, s, m, h, d), e.g. 90s, 10m, 12h' });

const SIZE_RE = /^(\d+)(B|KB|KiB|MB|MiB|GB|GiB)?$/;
const SIZE_UNITS = { B: 1, KB: 1e3, KiB: 1024, MB: 1e6, MiB: 1024 ** 2, GB: 1e9, GiB: 1024 ** 3 } as const;

/** A byte size such as `64KiB`, `10MB` or `1048576`; parsed into bytes. */
export const byteSize = z
  .union([z.int().nonnegative(), z.string().regex(SIZE_RE, 'expected a size such as 16KiB, 10MB or 1GiB')])
  .transform((v) => {
    if (typeof v === 'number') return v;
    const m = SIZE_RE.exec(v);
    const unit = (m?.[2] ?? 'B') as keyof typeof SIZE_UNITS;
    return Number(m?.[1] ?? 0) * SIZE_UNITS[unit];
  })
  .meta({ description: 'Byte size: an integer, optionally with a unit (B, KB, KiB, MB, MiB, GB, GiB)' });

/** `host:port`, `[v6]:port` or `:port`. */
export const listenAddress = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]*):\d{1,5}$/, 'expected host:port, e.g. 127.0.0.1:8080')
  .refine((s) => {
    // Only judges the port when the format matched; a malformed address already has its own error.
    const port = /:(\d{1,5})$/.exec(s)?.[1];
    return port === undefined || Number(port) <= 65535;
  }, 'port must be between 0 and 65535');

const cidr = z
  .string()
  .regex(/^([0-9.]+|[0-9a-fA-F:]+)(\/\d{1,3})?$/, 'expected an IP address or CIDR, e.g. 10.0.0.0/8')
  .refine((value) => {
    const [address = '', bits] = value.split('/');
    const family = isIP(address);
    if (family === 0) return false;
    return bits === undefined || Number(bits) <= (family === 4 ? 32 : 128);
  }, 'not a valid IP address or CIDR (IPv4 prefixes go up to /32, IPv6 up to /128)')

const httpUrl = (what: string) =>
  z.url({ protocol: /^https?$/, error: `expected an http:// or https:// URL for ${what}` });

const redisUrl = z.string().regex(/^rediss?:\/\//, 'expected a redis:// or rediss:// URL');

/** `host:port` of a Redis node or sentinel (`[v6]:port` for IPv6). */
const redisNode = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+):\d{1,5}$/, 'expected host:port, e.g. redis-0:6379 (IPv6: [::1]:6379)')
  .refine((v) => Number(/:(\d+)$/.exec(v)?.[1] ?? 0) <= 65535, 'the port must be at most 65535');

/** Sentinel: the sentinels tell the gateway which node is the current master, and follow failovers. */
const redisSentinel = z.strictObject({
  name: z.string().min(1).meta({ description: 'The master group name the sentinels monitor (sentinel monitor <name> …)' }),
  nodes: z.array(redisNode).min(1).meta({ description: 'Sentinels, host:port (usually 26379); give all of them' }),
  username: z.string().min(1).optional().meta({ description: 'ACL user on the data nodes' }),
  password: z.string().min(1).optional().meta({ description: 'Password on the data nodes (use ${ENV} substitution)' }),
  sentinel_username: z.string().min(1).optional(),
  sentinel_password: z.string().min(1).optional(),
  db: z.int().min(0).max(15).default(0),
  tls: z.boolean().default(false).meta({ description: 'TLS to the sentinels and the data nodes (system CAs)' }),
});

/** Cluster: seed nodes; the gateway learns the slot map from them and follows MOVED/failovers. */
const redisCluster = z.strictObject({
  nodes: z.array(redisNode).min(1).meta({ description: 'Seed nodes, host:port; one reachable node is enough, give several' }),
  username: z.string().min(1).optional(),
  password: z.string().min(1).optional().meta({ description: 'Use ${ENV} substitution' }),
  tls: z.boolean().default(false).meta({ description: 'TLS to every node (system CAs)' }),
});

/**
 * How to reach Redis, shared by `store.redis` and a redis `audit.sink`: exactly one of `url` (one node;
 * the default, redis://127.0.0.1:6379/0, when none is given), `sentinel` or `cluster`.
 */
const redisConnectionShape = {
  url: redisUrl.optional().meta({ description: 'One Redis node: redis://[user:pass@]host:port/db or rediss:// (TLS). Default redis://127.0.0.1:6379/0 when neither sentinel nor cluster is given' }),
  sentinel: redisSentinel.optional().meta({ description: 'Redis Sentinel (instead of url or cluster)' }),
  cluster: redisCluster.optional().meta({ description: 'Redis Cluster (instead of url or sentinel)' }),
};

/** Reports a second (or third) of url/sentinel/cluster at its own place in the file. */
const oneRedisConnection = (v: unknown, ctx: z.RefinementCtx): void => {
  if (!isRecord(v)) return;
  const given = (['url', 'sentinel', 'cluster'] as const).filter((k) => v[k] !== undefined);
  for (const extra of given.slice(1)) {
    ctx.addIssue({ code: 'custom', path: [extra], message: `give only one of url, sentinel and cluster (${given[0] ?? ''} is already given)` });
  }
};

const identifier = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'expected a lower-case id: letters, digits, - and _, at most 63 characters');

/** Route host: an exact name or `*.suffix`, optionally with `:port`. Case-insensitive. */
const routeHost = z
  .string()
  .regex(
    /^(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?(:\d{1,5})?$/,
    'expected a host name such as app.example.com or *.example.com, optionally with :port',
  )
  .refine((h) => {
    const port = /:(\d+)$/.exec(h)?.[1];
    return port === undefined || (Number(port) >= 1 && Number(port) <= 65535);
  }, 'the port must be between 1 and 65535');

/** A path prefix, matched on whole segments: `/`, `/api`, `/api/admin`. */
const PATH_PREFIX_RE = /^\/([A-Za-z0-9._~!$&'()*+,=:@%-]+(\/[A-Za-z0-9._~!$&'()*+,=:@%-]+)*\/?)?$/;

const pathPrefix = z
  .string()
  .regex(PATH_PREFIX_RE, 'expected a path prefix such as / or /api/admin')
  .refine((p) => !p.split('/').some((s) => s === '.' || s === '..'), 'a path prefix may not contain . or .. segments')
  .superRefine((p, ctx) => {
    if (!PATH_PREFIX_RE.test(p)) return; // already reported by the regex
    for (const part of p.slice(1).split('/')) {
      if (part === '') continue;
      const seg = normalizePathSegment(part);
      if (!seg.ok) ctx.addIssue({ code: 'custom', message: `path prefix segment "${part}" can never match a request (${seg.reason})` });
    }
  });

const httpMethod = z
  .string()
  .regex(/^[A-Z]+$/, 'expected an upper-case HTTP method such as GET or POST');

const mfaFactor = z.enum(['webauthn', 'totp']);

const allow = z
  .strictObject({
    groups: z.array(z.string().min(1)).default([]),
    users: z.array(z.string().min(1)).default([]),
    emails: z.array(z.email({ error: 'expected an e-mail address' })).default([]),
    email_domains: z
      .array(z.string().regex(/^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+$/, 'expected a domain such as example.com'))
      .default([]),
  })
  .meta({ description: 'Who may pass: any one listed user, group, e-mail address or e-mail domain grants access' });

const mfaRequirement = z.strictObject({
  factors: z.array(mfaFactor).min(1).default(['webauthn', 'totp']),
  max_age: duration.meta({ description: 'How long a second-factor check stays fresh' }),
});

const rule = z.strictObject({
  path: pathPrefix.default('/'),
  methods: z.array(httpMethod).min(1).optional(),
  allow: allow.optional(),
  mfa: mfaRequirement.optional(),
});

const routeTimeouts = z.strictObject({
  connect: duration.optional(),
  response: duration.optional(),
});

const route = z
  .strictObject({
    id: identifier,
    host: routeHost,
    path: pathPrefix.default('/'),
    methods: z.array(httpMethod).min(1).optional(),
    upstream: httpUrl('the upstream'),
    websocket: z.boolean().default(false),
    websocket_origins: z
      .array(z.string().regex(/^https?:\/\/[^/?#@\s]+$/, 'expected an origin: http(s)://host[:port], without a path'))
      .default([])
      .meta({ description: 'Other origins whose pages may open WebSockets on this route with the session cookie (the route\'s own origin always may)' }),
    public: z.boolean().default(false),
    preserve_host: z
      .boolean()
      .default(false)
      .meta({ description: 'Send the client Host header upstream instead of the upstream URL host' }),
    allow: allow.optional(),
    mfa: mfaRequirement.optional(),
    audit: z.strictObject({ strict: z.boolean().default(false) }).prefault({}),
    timeouts: routeTimeouts.optional(),
    rules: z.array(rule).default([]),
  })
  .superRefine((r: unknown, ctx) => {
    if (!isRecord(r) || r.public !== true) return;
    const hasRules = Array.isArray(r.rules) && r.rules.length > 0;
    if (r.allow !== undefined || r.mfa !== undefined || hasRules) {
      ctx.addIssue({
        code: 'custom',
        path: ['public'],
        message: 'a public route cannot also have allow, mfa or rules; remove public: true or the policy',
      });
    }
  }, EVEN_WITH_OTHER_ERRORS);

const database = z.strictObject({
  id: identifier,
  type: z.literal('postgres'),
  listen: listenAddress,
  connect_host: z
    .string()
    .regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/, 'expected a host name or address, optionally with :port')
    .optional()
    .meta({ description: 'The host[:port] clients connect to, shown on the connect page; default: the listen address (public_url host when listening on all interfaces)' }),
  tls: z
    .strictObject({ cert: z.string().min(1), key: z.string().min(1) })
    .optional()
    .meta({ description: 'Certificate and key (PEM files) for client connections that ask for TLS (sslmode=require)' }),
  allow_cleartext_without_tls: z
    .boolean()
    .default(false)
    .meta({ description: 'Accept tokens over unencrypted connections from non-loopback clients (refused by default)' }),
  token_ttl: duration
    .prefault('1h')
    .refine((ms) => ms >= 1000 && ms <= 3_600_000, 'token_ttl must be between 1s and 1h')
    .meta({ description: 'How long an issued database token (and connections made with it) lives; at most 1h' }),
  recheck_every: duration
    .prefault('5s')
    .refine((ms) => ms >= 100 && ms <= 60_000, 'recheck_every must be between 100ms and 60s')
    .meta({ description: 'How often open connections re-check their token and web session (closed with FATAL when revoked or expired)' }),
  upstream: z.strictObject({
    host: z.string().min(1),
    port: z.int().min(1).max(65535).default(5432),
    database: z.string().min(1),
    user: z.string().min(1),
    password: z.string().default(''),
    connect_timeout: duration.prefault('5s'),
  }),
  audit: z
    .strictObject({
      max_sql: z
        .int()
        .min(64)
        .max(65_536)
        .default(4096)
        .meta({ description: 'Statement text kept per audit record, in characters (longer text is cut and marked)' }),
      intents: z
        .boolean()
        .default(true)
        .meta({ description: 'Spool each statement before forwarding it, so that a crash leaves a record of every statement the database may have run (false: forward at once; lower latency, but a crash can lose the records of statements in flight)' }),
    })
    .prefault({}),
  allow: allow.optional(),
  mfa: mfaRequirement.optional(),
});

const localProvider = z.strictObject({
  id: identifier,
  type: z.literal('local'),
  users_file: z.string().min(1).default('config/users.yaml'),
});

const oidcProvider = z.strictObject({
  id: identifier,
  type: z.literal('oidc'),
  issuer: httpUrl('the issuer'),
  client_id: z.string().min(1),
  client_secret: z.string().optional(),
  scopes: z.array(z.string().min(1)).default(['openid', 'email', 'profile']),
  claims: z
    .strictObject({ user: z.string().default('email'), groups: z.string().default('groups') })
    .prefault({}),
});

const bearerIssuer = z.strictObject({
  issuer: httpUrl('the issuer'),
  audience: z.string().min(1),
  jwks_uri: httpUrl('jwks_uri').optional(),
  algorithms: z.array(z.enum(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'])).optional(),
});

const server = z.strictObject({
  listen: listenAddress.default('127.0.0.1:8080'),
  public_url: httpUrl('public_url').default('http://localhost:8080'),
  admin_listen: listenAddress.default('127.0.0.1:9090'),
  tls: z.strictObject({ cert: z.string().min(1), key: z.string().min(1) }).optional(),
  trusted_proxies: z.array(cidr).default([]),
  instance_id: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'expected an instance id: letters, digits, ., - and _')
    .optional()
    .meta({ description: "Names this instance's audit log; defaults to the host name" }),
  limits: z
    .strictObject({
      max_body: byteSize.prefault('100MiB'),
      max_header: byteSize.prefault('16KiB'),
    })
    .prefault({}),
  timeouts: z
    .strictObject({
      upstream_connect: duration.prefault('5s'),
      upstream_response: duration.prefault('60s'),
      request_headers: duration.prefault('30s'),
      request_body: duration.prefault('30s').meta({ description: 'The longest silence while a client sends a request body (then 408)' }),
      keep_alive: duration.prefault('5s'),
      shutdown_grace: duration.prefault('30s'),
      drain_delay: duration
        .prefault('0s')
        .meta({ description: 'After SIGTERM, keep accepting this long (with /readyz 503 and Connection: close on every response) before closing the listener, so load balancers stop sending first' }),
    })
    .prefault({}),
});

const store = z.strictObject({
  type: z.enum(['memory', 'redis']).default('memory'),
  redis: z
    .strictObject({ ...redisConnectionShape, key_prefix: z.string().default('portcullis:') })
    .superRefine(oneRedisConnection)
    .optional(),
});

const identity = z.strictObject({
  providers: z
    .array(z.discriminatedUnion('type', [localProvider, oidcProvider]))
    .default([{ id: 'local', type: 'local', users_file: 'config/users.yaml' }]),
  bearer: z.array(bearerIssuer).default([]),
  session: z
    .strictObject({
      idle_timeout: duration.prefault('1h'),
      max_lifetime: duration.prefault('12h'),
      recheck_every: duration
        .prefault('10s')
        .refine((ms) => ms >= 100 && ms <= 300_000, 'recheck_every must be between 100ms and 5m')
        .meta({ description: 'How often open WebSockets re-check their session or token and the route policy (closed when revoked, expired or no longer allowed)' }),
    })
    .prefault({}),
  assertion: z
    .strictObject({
      key_file: z.string().min(1).default('data/assertion-keys.json'),
      algorithm: z.enum(['ES256', 'EdDSA']).default('ES256'),
      rotate_after: duration.prefault('30d'),
    })
    .prefault({})
    .meta({ description: 'The key ring that signs X-Portcullis-Assertion (JWKS at /.portcullis/jwks.json); share the file between replicas' }),
  login_limits: z
    .strictObject({
      per_user: z.int().positive().default(5),
      per_ip: z.int().positive().default(20),
      window: duration.prefault('15m'),
    })
    .prefault({})
    .meta({ description: 'Failed sign-ins allowed per user and per client IP within the window before further attempts are refused' }),
  cli_tokens: z
    .strictObject({
      enabled: z.boolean().default(true),
      ttl: duration
        .prefault('12h')
        .refine((ms) => ms >= 60_000 && ms <= 12 * 3_600_000, 'cli_tokens.ttl must be between 1m and 12h')
        .meta({ description: 'Lifetime of a CLI access token (at most 12h); refresh gives a new one while the authorizing browser session lives' }),
      require_binding: z.boolean().default(false).meta({ description: 'Refuse tokens not bound to a key with DPoP (RFC 9449)' }),
      mfa: mfaRequirement.optional().meta({ description: 'A second factor this fresh is required before a CLI token is issued' }),
    })
    .prefault({})
    .meta({ description: 'Gateway-issued tokens for the portcullis command line (docs/cli-protocol.md)' }),
});

const mfa = z.strictObject({
  webauthn: z
    .strictObject({
      rp_name: z.string().default('Portcullis'),
      rp_id: z
        .string()
        .regex(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/, 'expected a lower-case host name such as example.com')
        .optional()
        .meta({ description: "WebAuthn relying party id; default: public_url's host name. Every route host must be it or a subdomain of it" }),
      user_verification: z.enum(['required', 'preferred', 'discouraged']).default('preferred'),
    })
    .prefault({}),
  totp: z
    .strictObject({
      issuer: z.string().default('Portcullis'),
      attempts: z
        .strictObject({ per_user: z.int().positive().default(5), window: duration.prefault('15m') })
        .prefault({})
        .meta({ description: 'Wrong TOTP or recovery codes allowed per user within the window before further attempts are refused' }),
    })
    .prefault({}),
  enroll_within: duration.prefault('5m').meta({ description: 'A first factor may be enrolled only this soon after a sign-in; further factors (and removals) only this soon after a step-up' }),
  credentials_file: z
    .string()
    .min(1)
    .default('data/mfa/credentials.json')
    .meta({ description: 'Where enrolled factors are kept when store.type is memory (with store.type redis they live in Redis)' }),
  secret_key_file: z
    .string()
    .min(1)
    .default('data/mfa/secret.key')
    .meta({ description: 'AES-256-GCM key that encrypts TOTP secrets at rest; created on first start (mode 0600). Replicas must share it' }),
});

const auditSink = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('file'), dir: z.string().min(1).default('data/audit') }),
  z.strictObject({
    type: z.literal('redis'),
    ...redisConnectionShape,
    stream: z.string().min(1).default('portcullis:audit'),
  }).superRefine(oneRedisConnection),
]);

const audit = z.strictObject({
  sink: auditSink.prefault({ type: 'file' }),
  on_failure: z.enum(['spool', 'reject']).default('spool'),
  spool_dir: z.string().min(1).default('data/spool'),
  redact: z
    .strictObject({
      query_params: z.array(z.string()).default(['token', 'password', 'code', 'access_token', 'id_token', 'state']),
      headers: z.array(z.string()).default(['authorization', 'cookie', 'proxy-authorization']),
    })
    .prefault({}),
  seal: z
    .strictObject({
      every: duration.prefault('10s'),
      max_records: z.int().positive().default(1000),
      key_file: z.string().min(1).default('data/seal.key'),
      previous_key_file: z
        .string()
        .min(1)
        .optional()
        .meta({ description: 'During a key rotation: the old key, so that checkpoints are signed by both and verifiers learn the new key' }),
      origin: z.string().min(1).default('portcullis.example/audit'),
      witness_dir: z.string().min(1).default('data/checkpoints'),
    })
    .prefault({}),
  viewer: z
    .strictObject({
      allow: allow.prefault({ groups: ['sre'] }),
      mfa: mfaRequirement
        .nullable()
        .prefault({ factors: ['webauthn'], max_age: '15m' })
        .meta({ description: 'The second factor the viewer needs, and how fresh; null: none (not recommended)' }),
    })
    .prefault({})
    .meta({ description: 'Who may open the audit viewer (/.portcullis/audit) and its live feed; applies on reload' }),
});

/** The whole configuration file. */
export const configSchema = z
  .strictObject({
    server: server.prefault({}),
    store: store.prefault({}),
    identity: identity.prefault({}),
    mfa: mfa.prefault({}),
    audit: audit.prefault({}),
    routes: z.array(route).default([]),
    databases: z.array(database).default([]),
  })
  .superRefine((c: unknown, ctx) => {
    if (!isRecord(c)) return;
    const addIssue = (path: PropertyKey[], message: string) => {
      ctx.addIssue({ code: 'custom', path, message });
    };
    for (const [i, first] of duplicateIds(c.routes)) {
      addIssue(['routes', i, 'id'], `route id "${idOf(c.routes, i)}" is already used by routes[${first}]`);
    }
    for (const [i, first] of duplicateIds(c.databases)) {
      addIssue(['databases', i, 'id'], `database id "${idOf(c.databases, i)}" is already used by databases[${first}]`);
    }
    const providers = isRecord(c.identity) ? c.identity.providers : undefined;
    for (const [i, first] of duplicateIds(providers)) {
      addIssue(['identity', 'providers', i, 'id'], `provider id "${idOf(providers, i)}" is already used by identity.providers[${first}]`);
    }
    if (isRecord(c.store) && c.store.type === 'redis' && c.store.redis === undefined) {
      addIssue(['store', 'type'], 'redis needs a store.redis block, e.g. redis: {url: redis://127.0.0.1:6379/0}');
    }
    for (const [path, message] of passkeyHostProblems(c)) addIssue(path, message);
  }, EVEN_WITH_OTHER_ERRORS);

/**
 * Routes that accept passkeys must be served on the WebAuthn relying party id or a subdomain of it
 * (browsers refuse the ceremony elsewhere): each one that is not is a config error, not a step-up
 * page that can never succeed.
 */
function passkeyHostProblems(c: Record<string, unknown>): [PropertyKey[], string][] {
  const server = isRecord(c.server) ? c.server : {};
  const webauthn = isRecord(c.mfa) && isRecord(c.mfa.webauthn) ? c.mfa.webauthn : {};
  let rpId: string;
  if (typeof webauthn.rp_id === 'string') rpId = webauthn.rp_id;
  else {
    try {
      rpId = new URL(typeof server.public_url === 'string' ? server.public_url : 'http://localhost:8080').hostname;
    } catch {
      return [];
    }
  }
  const usesPasskeys = (m: unknown): boolean => isRecord(m) && (!Array.isArray(m.factors) || m.factors.includes('webauthn'));
  const problems: [PropertyKey[], string][] = [];
  const routes = Array.isArray(c.routes) ? (c.routes as unknown[]) : [];
  routes.forEach((r, i) => {
    if (!isRecord(r) || typeof r.host !== 'string') return;
    const rules = Array.isArray(r.rules) ? (r.rules as unknown[]) : [];
    if (!usesPasskeys(r.mfa) && !rules.some((rule) => isRecord(rule) && usesPasskeys(rule.mfa))) return;
    const host = r.host.toLowerCase().replace(/:\d+$/, '').replace(/^\*\./, '').replace(/\.$/, '');
    if (host !== rpId && !host.endsWith(`.${rpId}`)) {
      problems.push([
        ['routes', i, 'host'],
        `passkeys (mfa factor webauthn) cannot work on ${r.host}: the WebAuthn relying party id is ${rpId}${typeof webauthn.rp_id === 'string' ? '' : " (public_url's host)"}; set mfa.webauthn.rp_id to a domain that both are part of, or allow only totp here`,
      ]);
    }
  });
  return problems;
}

/** The validated, defaulted configuration. */
export type Config = z.output<typeof configSchema>;
/** One route as configured. */
export type RouteConfig = Config['routes'][number];
/** One rule inside a route. */
export type RuleConfig = RouteConfig['rules'][number];
/** An `allow` block. */
export type AllowConfig = z.output<typeof allow>;
/** An `mfa` requirement. */
export type MfaRequirementConfig = z.output<typeof mfaRequirement>;
/** One database as configured. */
export type DatabaseConfig = Config['databases'][number];
