/**
 * Builds the identity module from configuration: sessions on the store, local user directories, OIDC
 * clients (discovered lazily, retried after a failure), the bearer verifier and the assertion signer.
 * Provider-dependent parts are rebuilt when a reload changes them; sessions and keys persist.
 */
import type { Logger } from 'pino';
import type { Config } from '../config/index.js';
import type { Store } from '../store/store.js';
import { createAssertionSigner, type AssertionSigner } from './assertion-signer.js';
import { createBearerVerifier, type BearerVerifier } from './bearer-verifier.js';
import { createLocalUserDirectory, type LocalUserDirectory } from './local-users.js';
import { createOidcClient, type OidcClient, type OidcProviderConfig } from './oidc-client.js';
import { createSessionManager, type SessionManager } from './sessions.js';

/** What the identity module offers the app. */
export interface IdentityRuntime {
  readonly sessions: SessionManager;
  readonly signer: AssertionSigner;
  /** Local user directories by provider id (the same Map object across reloads). */
  readonly localUsers: ReadonlyMap<string, LocalUserDirectory>;
  bearer(): BearerVerifier | undefined;
  oidc(providerId: string): Promise<OidcClient | undefined>;
  /** Rebuilds provider-dependent parts for a new configuration. */
  applyConfig(config: Readonly<Config>): void;
}

/** Options that are not configuration. */
export interface IdentityRuntimeOptions {
  readonly store: Store;
  readonly logger: Logger;
  readonly now: () => number;
  /** Lets OIDC talk to an http:// issuer. Only tests set this; production requires https. */
  readonly allowInsecureOidc?: boolean;
}

/** Creates the identity runtime (reads or creates the assertion key ring). */
export async function createIdentityRuntime(config: Readonly<Config>, opts: IdentityRuntimeOptions): Promise<IdentityRuntime> {
  const sessions = createSessionManager({
    store: opts.store,
    idleTimeoutMs: config.identity.session.idle_timeout,
    maxLifetimeMs: config.identity.session.max_lifetime,
    now: opts.now,
  });
  const a = config.identity.assertion;
  const signer = await createAssertionSigner({
    keyFile: a.key_file,
    algorithm: a.algorithm,
    rotateAfterMs: a.rotate_after,
    issuer: config.server.public_url,
    now: opts.now,
    localProviders: config.identity.providers.filter((p) => p.type === 'local').map((p) => p.id),
    onError: (err: unknown) => opts.logger.error({ err }, 'assertion key ring problem'),
  });
  const localUsers = new Map<string, LocalUserDirectory>();
  let bearer: BearerVerifier | undefined;
  let oidcConfigs = new Map<string, OidcProviderConfig>();
  let redirectUri = '';
  const oidcClients = new Map<string, { key: string; client: Promise<OidcClient> }>();

  function apply(c: Readonly<Config>): void {
    localUsers.clear();
    for (const p of c.identity.providers) if (p.type === 'local') localUsers.set(p.id, createLocalUserDirectory(p.users_file, { onReloadError: (err: unknown) => opts.logger.error({ err, file: p.users_file }, 'users file could not be read; keeping the previous users') }));
    bearer = c.identity.bearer.length === 0 ? undefined : createBearerVerifier(c.identity.bearer, { now: opts.now });
    oidcConfigs = new Map(c.identity.providers.filter((p): p is OidcProviderConfig => p.type === 'oidc').map((p) => [p.id, p]));
    redirectUri = new URL('/.portcullis/callback', c.server.public_url).href;
  }
  apply(config);

  return {
    sessions,
    signer,
    localUsers,
    bearer: () => bearer,
    async oidc(providerId) {
      const cfg = oidcConfigs.get(providerId);
      if (cfg === undefined) return undefined;
      const key = JSON.stringify([cfg, redirectUri]);
      let entry = oidcClients.get(providerId);
      if (entry?.key !== key) {
        const client = createOidcClient(cfg, { redirectUri, ...(opts.allowInsecureOidc === true ? { allowInsecureRequests: true } : {}) });
        entry = { key, client };
        oidcClients.set(providerId, entry);
        // A failed discovery is not cached: the next sign-in tries again.
        client.catch((err: unknown) => {
          opts.logger.error({ err, provider: providerId }, 'OIDC discovery failed');
          if (oidcClients.get(providerId) === entry) oidcClients.delete(providerId);
        });
      }
      return entry.client;
    },
    applyConfig: apply,
  };
}
