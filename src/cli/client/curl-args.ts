/**
 * Reads a curl command line far enough to know the request's method and URL — what a DPoP proof
 * must name — and refuses, rather than guesses, whenever that is not certain: unknown options,
 * several URLs, URL globs, config files (`-K`), `--next`, or options that change what is sent where
 * (`--request-target`, `--location-trusted`, a caller's own `Authorization`).
 * Options with arguments and flags are curl 7.88's (`curl --help all`).
 */

/** The request a curl command line makes, and where its response headers would go. */
export interface CurlRequest {
  readonly method: string;
  readonly url: URL;
  /** `-o FILE` / `--output FILE` when given (the body goes there, not to stdout). */
  readonly output: string | undefined;
  /** `-D FILE` / `--dump-header FILE` when given. */
  readonly dumpHeader: string | undefined;
  /** `-f` / `--fail`: curl prints no body on HTTP errors. */
  readonly fail: boolean;
}

/** Why a command line was refused. */
export class CurlArgsError extends Error {
  override readonly name = 'CurlArgsError';
}

const LONG_WITH_ARG = new Set(
  (
    'abstract-unix-socket alt-svc aws-sigv4 cacert capath cert cert-type ciphers config connect-timeout connect-to continue-at cookie cookie-jar ' +
    'create-file-mode crlfile curves data data-ascii data-binary data-raw data-urlencode delegation dns-interface dns-ipv4-addr dns-ipv6-addr ' +
    'dns-servers doh-url dump-header egd-file engine etag-compare etag-save expect100-timeout form form-string ftp-account ftp-alternative-to-user ' +
    'ftp-method ftp-port ftp-ssl-ccc-mode happy-eyeballs-timeout-ms header hostpubmd5 hostpubsha256 hsts interface json keepalive-time key ' +
    'key-type krb libcurl limit-rate local-port login-options mail-auth mail-from mail-rcpt max-filesize max-redirs max-time netrc-file noproxy ' +
    'oauth2-bearer output output-dir parallel-max pass pinnedpubkey proto proto-default proto-redir proxy-cacert proxy-capath proxy-cert ' +
    'proxy-cert-type proxy-ciphers proxy-crlfile proxy-header proxy-key proxy-key-type proxy-pass proxy-pinnedpubkey proxy-service-name ' +
    'proxy-tls13-ciphers proxy-tlsauthtype proxy-tlspassword proxy-tlsuser proxy-user pubkey quote random-file range rate referer request ' +
    'request-target resolve retry retry-delay retry-max-time sasl-authzid service-name socks4 socks4a socks5 socks5-gssapi-service ' +
    'socks5-hostname speed-limit speed-time stderr telnet-option tftp-blksize time-cond tls-max tls13-ciphers tlsauthtype tlspassword tlsuser ' +
    'trace trace-ascii unix-socket upload-file url url-query user user-agent write-out proxy preproxy'
  ).split(' '),
);

const LONG_FLAGS = new Set(
  (
    'anyauth append basic cert-status compressed compressed-ssh create-dirs crlf digest disable disable-eprt disable-epsv ' +
    'disallow-username-in-url doh-cert-status doh-insecure fail fail-early fail-with-body false-start form-escape ftp-create-dirs ftp-pasv ' +
    'ftp-pret ftp-skip-pasv-ip ftp-ssl-ccc ftp-ssl-control get globoff haproxy-protocol head http0.9 http1.0 http1.1 http2 ' +
    'http2-prior-knowledge http3 http3-only ignore-content-length include insecure ipv4 ipv6 junk-session-cookies list-only location ' +
    'location-trusted mail-rcpt-allowfails manual metalink negotiate netrc netrc-optional next no-alpn no-buffer no-clobber no-keepalive ' +
    'no-npn no-progress-meter no-sessionid ntlm ntlm-wb parallel parallel-immediate path-as-is post301 post302 post303 progress-bar ' +
    'proxy-anyauth proxy-basic proxy-digest proxy-insecure proxy-negotiate proxy-ntlm proxy-ssl-allow-beast proxy-ssl-auto-client-cert ' +
    'proxy-tlsv1 proxy1.0 proxytunnel raw remote-header-name remote-name remote-name-all remote-time remove-on-error retry-all-errors ' +
    'retry-connrefused sasl-ir show-error silent socks5-basic socks5-gssapi socks5-gssapi-nec ssl ssl-allow-beast ssl-auto-client-cert ' +
    'ssl-no-revoke ssl-reqd ssl-revoke-best-effort sslv2 sslv3 styled-output suppress-connect-headers tcp-fastopen tcp-nodelay ' +
    'tftp-no-options tlsv1 tlsv1.0 tlsv1.1 tlsv1.2 tlsv1.3 tr-encoding trace-time use-ascii verbose version xattr'
  ).split(' '),
);

/** Short options that take an argument, and their long names. */
const SHORT_WITH_ARG: Readonly<Record<string, string>> = {
  E: 'cert', K: 'config', C: 'continue-at', b: 'cookie', c: 'cookie-jar', d: 'data', D: 'dump-header', F: 'form', P: 'ftp-port', H: 'header',
  m: 'max-time', o: 'output', Q: 'quote', r: 'range', e: 'referer', X: 'request', Y: 'speed-limit', y: 'speed-time', t: 'telnet-option',
  z: 'time-cond', T: 'upload-file', u: 'user', U: 'proxy-user', A: 'user-agent', w: 'write-out', x: 'proxy',
};

/** Short flags, and their long names. */
const SHORT_FLAGS: Readonly<Record<string, string>> = {
  a: 'append', q: 'disable', f: 'fail', G: 'get', g: 'globoff', I: 'head', '0': 'http1.0', i: 'include', k: 'insecure', '4': 'ipv4', '6': 'ipv6',
  j: 'junk-session-cookies', l: 'list-only', L: 'location', M: 'manual', n: 'netrc', ':': 'next', N: 'no-buffer', Z: 'parallel', '#': 'progress-bar',
  p: 'proxytunnel', J: 'remote-header-name', O: 'remote-name', R: 'remote-time', S: 'show-error', s: 'silent', '2': 'sslv2', '3': 'sslv3',
  '1': 'tlsv1', B: 'use-ascii', v: 'verbose', V: 'version', h: 'help',
};

const DATA_OPTIONS = new Set(['data', 'data-ascii', 'data-binary', 'data-raw', 'data-urlencode', 'form', 'form-string', 'json']);

/** Options refused outright, and why. */
const REFUSED: Readonly<Record<string, string>> = {
  config: 'a config file (-K) may hold URLs and options this command cannot see',
  next: '--next makes several requests; run one request per command',
  parallel: 'parallel transfers make several requests; run one request per command',
  'remote-name-all': 'it is meant for several URLs; run one request per command',
  'request-target': '--request-target changes the path the proof would have to name',
  'location-trusted': '--location-trusted would send your token to other hosts on redirects',
  'oauth2-bearer': 'portcullis curl sends the token itself',
  'url-query': '--url-query changes the URL after it is read; put the query in the URL',
  help: 'use curl --help',
  version: 'use curl --version',
  manual: 'use curl --manual',
};

/**
 * Parses `args` (curl's own arguments). Rejects with {@link CurlArgsError} when the method or URL
 * cannot be told for certain.
 */
export function parseCurlArgs(args: readonly string[]): CurlRequest {
  // One object, so that the option handler's changes are seen below.
  const st: { method: string | undefined; head: boolean; data: boolean; get: boolean; upload: boolean; globoff: boolean; fail: boolean; output: string | undefined; dumpHeader: string | undefined } = {
    method: undefined,
    head: false,
    data: false,
    get: false,
    upload: false,
    globoff: false,
    fail: false,
    output: undefined,
    dumpHeader: undefined,
  };
  const urls: string[] = [];

  const option = (long: string, value: string | undefined) => {
    if (long in REFUSED) throw new CurlArgsError(`portcullis curl does not take --${long}: ${REFUSED[long] ?? ''}`);
    switch (long) {
      case 'request':
        st.method = value;
        break;
      case 'head':
        st.head = true;
        break;
      case 'get':
        st.get = true;
        break;
      case 'upload-file':
        st.upload = true;
        break;
      case 'globoff':
        st.globoff = true;
        break;
      case 'fail':
      case 'fail-with-body':
        st.fail = long === 'fail';
        break;
      case 'url':
        if (value !== undefined) urls.push(value);
        break;
      case 'output':
        st.output = value;
        break;
      case 'dump-header':
        st.dumpHeader = value;
        break;
      case 'header':
      case 'proxy-header':
        if (long === 'header' && value !== undefined && /^\s*(authorization|dpop)\s*:/i.test(value)) {
          throw new CurlArgsError(`portcullis curl sets the ${value.split(':')[0]?.trim() ?? ''} header itself; remove your -H ${JSON.stringify(value.split(':')[0])}`);
        }
        if (value?.startsWith('@') === true) throw new CurlArgsError('-H @FILE reads headers this command cannot check; give them on the command line');
        break;
      default:
        if (DATA_OPTIONS.has(long)) st.data = true;
    }
  };

  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? '';
    if (arg === '--') {
      throw new CurlArgsError('a second "--" in the curl arguments is ambiguous');
    }
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      // curl has no --opt=value syntax; such a word is an unknown option to it too.
      let long = arg.slice(2);
      if (eq !== -1) throw new CurlArgsError(`curl does not understand ${JSON.stringify(arg)}: write --${arg.slice(2, eq)} VALUE`);
      if (LONG_WITH_ARG.has(long)) {
        const value = args[i + 1];
        if (value === undefined) throw new CurlArgsError(`--${long} needs a value`);
        i += 1;
        option(long, value);
        continue;
      }
      if (!LONG_FLAGS.has(long) && long.startsWith('no-') && LONG_FLAGS.has(long.slice(3))) {
        long = long.slice(3);
        if (long === 'globoff') st.globoff = false;
        if (long === 'fail') st.fail = false;
        if (long === 'head') st.head = false;
        if (long === 'get') st.get = false;
        continue;
      }
      if (!LONG_FLAGS.has(long)) throw new CurlArgsError(`unknown curl option ${arg}: portcullis curl must know every option to tell the request's method and URL for certain`);
      option(long, undefined);
      continue;
    }
    if (arg.startsWith('-') && arg.length > 1) {
      for (let j = 1; j < arg.length; j++) {
        const c = arg[j] ?? '';
        const withArg = SHORT_WITH_ARG[c];
        if (withArg !== undefined) {
          let value = arg.slice(j + 1);
          if (value === '') {
            const next = args[i + 1];
            if (next === undefined) throw new CurlArgsError(`-${c} needs a value`);
            value = next;
            i += 1;
          }
          option(withArg, value);
          break;
        }
        const flag = SHORT_FLAGS[c];
        if (flag === undefined) throw new CurlArgsError(`unknown curl option -${c} (in ${JSON.stringify(arg)})`);
        option(flag, undefined);
      }
      continue;
    }
    urls.push(arg);
  }

  if (urls.length === 0) throw new CurlArgsError('no URL in the curl arguments');
  if (urls.length > 1) throw new CurlArgsError(`several URLs (${urls.join(', ')}): run one request per command`);
  const raw = urls[0] ?? '';
  if (!st.globoff && /[{}[\]]/.test(raw)) throw new CurlArgsError(`the URL ${JSON.stringify(raw)} contains {} or [], which curl expands into several URLs; pass -g (--globoff) to send it as is`);
  if (!/^https?:\/\//i.test(raw)) throw new CurlArgsError(`give the full URL with its scheme (http:// or https://), not ${JSON.stringify(raw)}`);
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new CurlArgsError(`not a URL: ${JSON.stringify(raw)}`);
  }
  if (url.username !== '' || url.password !== '') throw new CurlArgsError('the URL must not carry a user name or password');

  let method: string;
  if (st.method !== undefined) {
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(st.method)) throw new CurlArgsError(`not an HTTP method: ${JSON.stringify(st.method)}`);
    method = st.method;
  } else if (st.head) method = 'HEAD';
  else if (st.get) method = 'GET';
  else if (st.upload) method = 'PUT';
  else if (st.data) method = 'POST';
  else method = 'GET';
  return { method, url, output: st.output, dumpHeader: st.dumpHeader, fail: st.fail };
}
