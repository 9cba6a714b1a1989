/**
 * The route table (pure): compiled once per config, matched per request.
 */
import type { RouteConfig, RuleConfig } from '../config/index.js';
import { GatewayError } from '../errors/index.js';
import { isIpv4Hostname, type CanonicalHost } from './host.js';
import { normalizePathSegment } from './normalize-target.js';

/** The route (and rule inside it) that a request falls under. */
export interface RouteMatch {
  route: RouteConfig;
  /** The first matching rule of the route, or `undefined` when none matches (route policy applies). */
  rule: RuleConfig | undefined;
}

/** A compiled, immutable route table. */
export interface RouteTable {
  /**
   * The first route, in config order, whose host, path prefix and methods match; inside it, the
   * first matching rule. `segments` are the decoded segments from `normalizeTarget`.
   */
  match(host: CanonicalHost, segments: readonly string[], method: string): RouteMatch | undefined;
}

interface CompiledPrefix {
  segments: readonly string[];
}

interface CompiledRule extends CompiledPrefix {
  rule: RuleConfig;
  methods: ReadonlySet<string> | undefined;
}

interface CompiledRoute extends CompiledPrefix {
  index: number;
  route: RouteConfig;
  /** `undefined` matches any port. */
  port: number | undefined;
  methods: ReadonlySet<string> | undefined;
  rules: readonly CompiledRule[];
}

const NO_ROUTES: readonly CompiledRoute[] = [];

/**
 * Compiles routes into a table.
 *
 * Semantics (the whole list is first-match-wins in config order, exact and wildcard hosts alike):
 * - Host: exact name, or `*.suffix`, where `*` stands for exactly one non-empty label, as in TLS
 *   certificates (`*.example.com` matches `a.example.com`, not `example.com` nor `a.b.example.com`;
 *   never an IPv4 address). Compared case-insensitively, one trailing dot ignored.
 * - Port: a route host without a port matches any port; with one, only that port. A route port of 80
 *   or 443 also matches a request without a port (its canonical host dropped the scheme default).
 * - Path: the prefix matches whole decoded segments (`/api` matches `/api`, `/api/`, `/api/x`, never
 *   `/apix`); `/` matches everything; a trailing slash in the prefix is ignored; escapes in the prefix
 *   are decoded exactly as request paths are. Paths are case-sensitive.
 * - Methods: when set, the route only takes those methods (exact, case-sensitive; `GET` does not
 *   imply `HEAD`); a route that matches on host and path but not on method is skipped.
 * - Rules: the first rule whose prefix and (optional) methods match; none gives `rule: undefined`.
 *
 * @throws GatewayError `GW_ERR_CONFIG_INVALID` when a host or path prefix could never match a
 *   normalized request (e.g. a prefix with `%2F`, `..` or a malformed escape): such a rule would
 *   silently never apply.
 */
export function compileRoutes(routes: readonly RouteConfig[]): RouteTable {
  const exact = new Map<string, CompiledRoute[]>();
  const wildcard = new Map<string, CompiledRoute[]>();

  routes.forEach((route, index) => {
    const host = parseRouteHost(route.host, route.id);
    const compiled: CompiledRoute = {
      index,
      route,
      port: host.port,
      segments: parsePrefix(route.path, `route "${route.id}"`),
      methods: route.methods === undefined ? undefined : new Set(route.methods),
      rules: route.rules.map((rule, i) => ({
        rule,
        segments: parsePrefix(rule.path, `route "${route.id}" rule ${i}`),
        methods: rule.methods === undefined ? undefined : new Set(rule.methods),
      })),
    };
    const map = host.wildcard ? wildcard : exact;
    const list = map.get(host.name);
    if (list === undefined) map.set(host.name, [compiled]);
    else list.push(compiled);
  });

  return {
    match(host, segments, method) {
      const name = host.hostname;
      const exactList = exact.get(name) ?? NO_ROUTES;
      const dot = name.indexOf('.');
      const wildList =
        dot > 0 && !isIpv4Hostname(name) ? (wildcard.get(name.slice(dot + 1)) ?? NO_ROUTES) : NO_ROUTES;

      // Merge the two candidate lists (each already in config order) to keep first-match-wins.
      let i = 0;
      let j = 0;
      while (i < exactList.length || j < wildList.length) {
        const a = exactList[i];
        const b = wildList[j];
        let candidate: CompiledRoute;
        if (a !== undefined && (b === undefined || a.index < b.index)) {
          candidate = a;
          i++;
        } else if (b !== undefined) {
          candidate = b;
          j++;
        } else break;
        if (routeMatches(candidate, host.port, segments, method)) {
          return { route: candidate.route, rule: firstRule(candidate.rules, segments, method) };
        }
      }
      return undefined;
    },
  };
}

function routeMatches(r: CompiledRoute, port: number | undefined, segments: readonly string[], method: string): boolean {
  return (
    (r.port === undefined || r.port === port || (port === undefined && (r.port === 80 || r.port === 443))) &&
    prefixMatches(r.segments, segments) &&
    (r.methods === undefined || r.methods.has(method))
  );
}

function firstRule(rules: readonly CompiledRule[], segments: readonly string[], method: string): RuleConfig | undefined {
  for (const r of rules) {
    if (prefixMatches(r.segments, segments) && (r.methods === undefined || r.methods.has(method))) return r.rule;
  }
  return undefined;
}

function prefixMatches(prefix: readonly string[], segments: readonly string[]): boolean {
  if (prefix.length > segments.length) return false;
  for (let k = 0; k < prefix.length; k++) {
    if (prefix[k] !== segments[k]) return false;
  }
  return true;
}

interface RouteHost {
  wildcard: boolean;
  /** Exact: the whole name. Wildcard: the suffix after `*.`. */
  name: string;
  /** `undefined` = any port. 80 and 443 also match a request host without a port (the default). */
  port: number | undefined;
}

const HOST_LABEL = /^[a-z0-9_-]{1,63}$/;

function parseRouteHost(raw: string, routeId: string): RouteHost {
  const invalid = (): GatewayError =>
    new GatewayError('GW_ERR_CONFIG_INVALID', `route "${routeId}": host "${raw}" is not a valid host name`);
  let value = raw.toLowerCase();
  let port: number | undefined;
  const colon = value.lastIndexOf(':');
  if (colon >= 0) {
    const p = value.slice(colon + 1);
    if (!/^[0-9]{1,5}$/.test(p)) throw invalid();
    port = Number(p);
    if (port < 1 || port > 65535) throw invalid();
    value = value.slice(0, colon);
  }
  if (value.endsWith('.')) value = value.slice(0, -1);
  const wildcard = value.startsWith('*.');
  const name = wildcard ? value.slice(2) : value;
  if (name.length === 0 || !name.split('.').every((l) => HOST_LABEL.test(l))) throw invalid();
  return { wildcard, name, port };
}

function parsePrefix(raw: string, where: string): readonly string[] {
  if (!raw.startsWith('/')) {
    throw new GatewayError('GW_ERR_CONFIG_INVALID', `${where}: path prefix "${raw}" must start with /`);
  }
  const parts = raw.slice(1).split('/');
  if (parts[parts.length - 1] === '') parts.pop();
  return parts.map((part) => {
    const seg = normalizePathSegment(part);
    if (!seg.ok) {
      throw new GatewayError('GW_ERR_CONFIG_INVALID', `${where}: path prefix "${raw}" can never match a request (${seg.reason})`);
    }
    return seg.decoded;
  });
}
