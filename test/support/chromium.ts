/**
 * A real browser for tests: Debian's chromium driven by playwright-core, with a CDP virtual
 * authenticator for WebAuthn (FIELD-NOTES: add it before the page calls WebAuthn; it belongs to
 * that tab). `scripts/ensure-deps.sh` installs chromium when it is missing.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser, type BrowserContext, type CDPSession, type Page } from 'playwright-core';

export const CHROMIUM_PATH = process.env.PORTCULLIS_CHROMIUM ?? '/usr/bin/chromium';

/** Launches headless chromium; throws with the install command when it is absent. */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) throw new Error(`chromium not found at ${CHROMIUM_PATH}: run scripts/ensure-deps.sh (apt-get install -y chromium)`);
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
}

/** A virtual authenticator attached to one tab. */
export interface VirtualAuthenticator {
  readonly cdp: CDPSession;
  readonly id: string;
  /** Credentials the authenticator holds (id, sign count …). */
  credentials(): Promise<{ credentialId: string; signCount: number; rpId?: string; privateKey: string; userHandle?: string; isResidentCredential: boolean }[]>;
  /** Overwrites a held credential (e.g. to roll its sign count back, as a cloned key would). */
  setCredential(c: { credentialId: string; signCount: number; rpId?: string; privateKey: string; userHandle?: string; isResidentCredential: boolean }): Promise<void>;
  /** Whether the authenticator reports user verification. */
  setUserVerified(verified: boolean): Promise<void>;
}

/** Adds a CTAP2 platform authenticator (resident keys, user verification, automatic presence) to `page`. */
export async function addVirtualAuthenticator(context: BrowserContext, page: Page, opts: { userVerification?: boolean } = {}): Promise<VirtualAuthenticator> {
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable', { enableUI: false });
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport: 'internal',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: opts.userVerification ?? true,
      automaticPresenceSimulation: true,
    },
  });
  return {
    cdp,
    id: authenticatorId,
    async credentials() {
      const r = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
      return r.credentials;
    },
    async setCredential(c) {
      await cdp.send('WebAuthn.removeCredential', { authenticatorId, credentialId: c.credentialId });
      await cdp.send('WebAuthn.addCredential', { authenticatorId, credential: c });
    },
    async setUserVerified(verified) {
      await cdp.send('WebAuthn.setUserVerified', { authenticatorId, isUserVerified: verified });
    },
  };
}
