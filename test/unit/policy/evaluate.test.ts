import { describe, expect, it } from 'vitest';
import { configSchema, type RouteConfig } from '../../../src/config/index.js';
import type { Identity } from '../../../src/identity/index.js';
import { evaluatePolicy } from '../../../src/policy/index.js';

const NOW = 1_800_000_000_000;

function route(r: Record<string, unknown>): RouteConfig {
  const cfg = configSchema.parse({ routes: [{ id: 'r', host: 'a.localhost', upstream: 'http://127.0.0.1:1', ...r }] });
  const first = cfg.routes[0];
  if (first === undefined) throw new Error('no route');
  return first;
}

const alice: Identity = { user: 'alice', email: 'alice@example.com', groups: ['eng'], provider: 'local', auth: 'cookie', session: 'abcd', authTime: NOW - 1000, mfa: undefined };
const withMfa = (factor: 'webauthn' | 'totp', ageS: number): Identity => ({ ...alice, mfa: { factor, at: NOW - ageS * 1000 } });

describe('evaluatePolicy', () => {
  const eng = route({ allow: { groups: ['eng'] } });
  const admin = route({
    allow: { groups: ['eng'] },
    rules: [{ path: '/api/admin', methods: ['POST'], allow: { groups: ['sre'] }, mfa: { factors: ['webauthn'], max_age: '10m' } }],
  });
  const mfaRoute = route({ allow: { users: ['ALICE@example.com'] }, mfa: { factors: ['webauthn', 'totp'], max_age: '1h' } });
  const cases: [string, RouteConfig, number | undefined, Identity | undefined, string, string][] = [
    ['allows everyone on a public route', route({ public: true }), undefined, undefined, 'allow', 'public-route'],
    ['asks for sign-in when there is no identity', eng, undefined, undefined, 'unauthenticated', 'user-unauthenticated'],
    ['allows a member of an allowed group', eng, undefined, alice, 'allow', 'group-ok'],
    ['denies a user outside the allow list', eng, undefined, { ...alice, groups: ['ops'] }, 'deny', 'not-in-allow-list'],
    ['denies when the route has no allow list (closed by default)', route({}), undefined, alice, 'deny', 'no-allow-list'],
    ['uses the rule allow list over the route one', admin, 0, alice, 'deny', 'not-in-allow-list'],
    ['asks for step-up when the rule needs a factor the session lacks', admin, 0, { ...alice, groups: ['sre'] }, 'step_up', 'mfa-missing'],
    ['asks for step-up when the last WebAuthn check is older than max_age', admin, 0, { ...withMfa('webauthn', 601), groups: ['sre'] }, 'step_up', 'mfa-stale'],
    ['allows a fresh WebAuthn check within max_age', admin, 0, { ...withMfa('webauthn', 599), groups: ['sre'] }, 'allow', 'group-ok'],
    ['refuses a factor the rule does not accept', admin, 0, { ...withMfa('totp', 1), groups: ['sre'] }, 'step_up', 'mfa-factor-not-allowed'],
    ['matches allowed users by e-mail case-insensitively', mfaRoute, undefined, withMfa('totp', 30), 'allow', 'user-ok'],
    ['allows a listed e-mail address case-insensitively', route({ allow: { emails: ['Alice@Example.com'] } }), undefined, alice, 'allow', 'email-ok'],
    ['allows a listed e-mail domain', route({ allow: { email_domains: ['example.com'] } }), undefined, alice, 'allow', 'email-domain-ok'],
    ['refuses a look-alike e-mail domain', route({ allow: { email_domains: ['ample.com'] } }), undefined, alice, 'deny', 'not-in-allow-list'],
    ['refuses an identity without e-mail on an e-mail domain rule', route({ allow: { email_domains: ['example.com'] } }), undefined, { ...alice, email: undefined }, 'deny', 'not-in-allow-list'],
    ['refuses a second factor dated in the future', mfaRoute, undefined, withMfa('totp', -3600), 'step_up', 'mfa-stale'],
  ];
  it.each(cases)('%s', (_name, r, ruleIndex, identity, effect, reason) => {
    const d = evaluatePolicy({ route: r, rule: ruleIndex === undefined ? undefined : r.rules[ruleIndex] }, identity, NOW);
    expect(d.effect).toBe(effect);
    expect(d.reason).toBe(reason);
  });

  it('reports the requirement that was not met on step_up', () => {
    const d = evaluatePolicy({ route: admin, rule: admin.rules[0] }, { ...alice, groups: ['sre'] }, NOW);
    expect(d.effect === 'step_up' && d.requirement.max_age).toBe(600_000);
  });
});
