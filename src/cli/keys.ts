/** `portcullis keys generate --out FILE [--name ORIGIN]`: writes a new Ed25519 signing key. */
import { loadConfigFile } from '../config/index.js';
import { generateSealKey, SealKeyError, writeSealKey } from '../audit/seal-key.js';
import { isValidKeyName, vkeyOf } from '../audit/signed-note.js';
import { configPath, parseCommand, type CliIo } from './io.js';

const DEFAULT_NAME = 'portcullis.example/audit';

const USAGE = `Usage: portcullis keys generate --out FILE [--name ORIGIN]

Writes a new Ed25519 signing key to FILE (PKCS#8 PEM, mode 0600; an existing file is never
overwritten), then prints its public key: the PEM public key, and the signed-note verifier key
line <name>+<key id>+<key> for ORIGIN. Either one, saved to a file, is accepted by
audit verify --public-key.

Options:
  --out FILE      where to write the private key (required)
  --name ORIGIN   key name for the verifier key line; default: audit.seal.origin in
                  $PORTCULLIS_CONFIG (else config/portcullis.yaml), else ${DEFAULT_NAME}

Exit status: 0 written, 1 not written (file exists, cannot write), 2 bad command line.
`;

/**
 * Runs `keys generate`. `args` are the words after `keys generate`.
 * @returns 0 when written, 1 when refused or not writable, 2 on a usage error.
 */
export async function runKeysGenerate(args: readonly string[], io: CliIo): Promise<number> {
  const parsed = parseCommand(args, { out: { type: 'string' }, name: { type: 'string' } }, USAGE, io);
  if (typeof parsed === 'number') return parsed;
  const { out, name: givenName } = parsed.values;
  if (out === undefined || out === '') {
    io.stderr(`keys generate needs --out FILE\n\n${USAGE}`);
    return 2;
  }
  if (givenName !== undefined && !isValidKeyName(givenName)) {
    io.stderr(`invalid --name ${JSON.stringify(givenName)}: it must be non-empty, without spaces or '+'\n\n${USAGE}`);
    return 2;
  }
  const name = givenName ?? (await originFromConfig(io));

  const { privateKey, publicKey } = generateSealKey();
  try {
    await writeSealKey(out, privateKey);
  } catch (err) {
    io.stderr(err instanceof SealKeyError ? `portcullis: ${err.message}\n` : `portcullis: cannot write ${out}: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  io.stderr(`wrote Ed25519 signing key to ${out} (PKCS#8 PEM, mode 0600); its public key:\n`);
  io.stdout(publicKey.export({ format: 'pem', type: 'spki' }).toString());
  io.stdout(`${vkeyOf(name, publicKey)}\n`);
  return 0;
}

/** audit.seal.origin of the configuration, if it loads; else the default origin. */
async function originFromConfig(io: CliIo): Promise<string> {
  const configFile = configPath(undefined, io);
  const loaded = await loadConfigFile(configFile, io.env);
  if (loaded.ok) {
    const origin = loaded.config.audit.seal.origin;
    if (isValidKeyName(origin)) return origin;
    io.stderr(`note: audit.seal.origin ${JSON.stringify(origin)} is not a valid key name; using ${DEFAULT_NAME} (pass --name to choose)\n`);
  } else if (io.env.PORTCULLIS_CONFIG !== undefined || loaded.issues.some((i) => !i.message.includes('does not exist'))) {
    io.stderr(`note: ${configFile} did not load, so audit.seal.origin is unknown; using ${DEFAULT_NAME} (pass --name to choose)\n`);
  }
  return DEFAULT_NAME;
}
